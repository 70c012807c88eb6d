"""`oauth2-token-operator discover` against the real server."""

from __future__ import annotations

import json

import pytest

from oauth2_token_operator.cli.main import main
from tests.authserver.fixtures import AuthServer

pytestmark = pytest.mark.authserver


def test_discover_prints_validated_metadata(
    authserver: AuthServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["discover", authserver.issuer, "--ca-file", str(authserver.ca_bundle)]) == 0
    metadata = json.loads(capsys.readouterr().out)
    assert metadata["issuer"] == authserver.issuer
    assert metadata["token_endpoint"] == f"{authserver.issuer}/token"


def test_discover_explains_a_refusal(
    authserver: AuthServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["discover", authserver.http_issuer]) == 1
    err = capsys.readouterr().err
    assert "plain http" in err
    # The flag that allows it, not the library's parameter (issue 23: it said the latter).
    assert "(--allow-insecure-http)" in err
    assert "allow_insecure_http" not in err
    assert main(["discover", authserver.http_issuer, "--allow-insecure-http"]) == 0
    assert json.loads(capsys.readouterr().out)["issuer"] == authserver.http_issuer
