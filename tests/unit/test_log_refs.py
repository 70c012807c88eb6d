"""Log lines about one object carry it as fields (issue 25): kopf's JSON format writes
`object` with kind, namespace and name; its text format prefixes `[namespace/name]`."""

from __future__ import annotations

import json
import logging
from typing import Literal

import kopf
import pytest

from oauth2_token_operator.controller.process.run import configure_logging
from oauth2_token_operator.controller.shared.config import OperatorConfig
from oauth2_token_operator.controller.shared.log_refs import about_client, about_request


def emitted(capsys: pytest.CaptureFixture[str], log_format: Literal["json", "text"]) -> str:
    configure_logging(OperatorConfig(log_format=log_format))
    try:
        logging.getLogger("oauth2_token_operator.controller.request.reconciler").warning(
            "InvalidClient (the server refused)", extra=about_request(("team-a", "billing"))
        )
        logging.getLogger("oauth2_token_operator.controller.client.reconciler").warning(
            "discovery failed", extra=about_client(("team-a", "idp"))
        )
    finally:
        kopf.configure(log_format=kopf.LogFormat.FULL)
    return capsys.readouterr().err


def test_json_logs_name_the_object_in_fields(capsys: pytest.CaptureFixture[str]) -> None:
    lines = [json.loads(line) for line in emitted(capsys, "json").splitlines() if line]
    request, client = lines[-2:]
    assert request["message"] == "InvalidClient (the server refused)"
    assert request["object"] == {
        "apiVersion": "oauth2.token-operator.io/v1alpha1",
        "kind": "AccessTokenRequest",
        "namespace": "team-a",
        "name": "billing",
    }
    assert (client["object"]["kind"], client["object"]["name"]) == ("OAuth2Client", "idp")


def test_text_logs_prefix_the_object(capsys: pytest.CaptureFixture[str]) -> None:
    text = emitted(capsys, "text")
    assert "[team-a/billing] InvalidClient (the server refused)" in text
