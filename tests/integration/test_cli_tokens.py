"""`oauth2-token-operator get | introspect | revoke` against the real oidc-provider, for a
client given as flags and as an OAuth2Client manifest."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from oauth2_token_operator.cli.main import main
from tests.authserver.fixtures import AuthServer
from tests.integration.cli_helpers import flags, jwt_manifest, manifest, write

pytestmark = pytest.mark.authserver


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def introspect(
    capsys: pytest.CaptureFixture[str], authserver: AuthServer, token: str
) -> dict[str, Any]:
    """The token's introspection by another confidential client (oidc-provider lets any
    confidential client introspect any token), through the CLI with flags."""
    client = authserver.clients["client_secret_post"]
    assert client.client_secret is not None
    code, out, _ = run(
        capsys,
        "introspect",
        *flags(authserver, client),
        "--client-secret-env",
        "CLI_TEST_POST_SECRET",
        "--",  # a token may begin with "-"
        token,
    )
    assert code == 0
    answer: dict[str, Any] = json.loads(out)
    return answer


@pytest.fixture(autouse=True)
def _post_secret_env(monkeypatch: pytest.MonkeyPatch, authserver: AuthServer) -> None:
    secret = authserver.clients["client_secret_post"].client_secret
    assert secret is not None
    monkeypatch.setenv("CLI_TEST_POST_SECRET", secret)


def test_get_with_flags_prints_the_token_alone_and_introspect_confirms_it(
    authserver: AuthServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    client = authserver.clients["client_secret_basic"]
    # `echo "$SECRET" > file`: the final newline is not part of the secret.
    secret_file = write(tmp_path / "secret", f"{client.client_secret}\n")
    code, out, err = run(
        capsys,
        "get",
        *flags(authserver, client),
        "--client-secret-file",
        str(secret_file),
        "--scope",
        "read",
        "--resource",
        authserver.resource,
    )
    assert code == 0
    token = out.removesuffix("\n")
    assert token
    assert "\n" not in token
    assert " " not in token
    assert "token_type: Bearer" in err
    assert "scope: read" in err
    assert token not in err
    answer = introspect(capsys, authserver, token)
    assert answer["active"] is True
    assert answer["client_id"] == client.client_id
    assert answer["scope"] == "read"


def test_get_with_a_manifest_prints_the_token_response_as_json(
    authserver: AuthServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """client_secret_post from a manifest; the manifest's defaultScopes are requested."""
    client = authserver.clients["client_secret_post"]
    path = manifest(
        tmp_path / "client.yaml",
        authserver,
        client,
        authentication={
            "method": "client_secret_post",
            "clientSecretRef": {"name": "post-client", "key": "secret"},
        },
        defaultScopes=["read", "write"],
    )
    code, out, err = run(
        capsys,
        "get",
        "--client-manifest",
        str(path),
        "--secret-env",
        "post-client/secret=CLI_TEST_POST_SECRET",
        "--resource",
        authserver.resource,
        "--json",
    )
    assert code == 0, err
    response = json.loads(out)
    assert response["token_type"] == "Bearer"
    assert response["scope"] == "read write"
    assert 0 < response["expires_in"] <= 3600
    assert response["expires_at"].endswith("Z")
    assert introspect(capsys, authserver, response["access_token"])["active"] is True
    # --scope replaces the manifest's defaultScopes.
    code, out, err = run(
        capsys,
        "get",
        "--client-manifest",
        str(path),
        "--secret-env",
        "post-client/secret=CLI_TEST_POST_SECRET",
        "--resource",
        authserver.resource,
        "--scope",
        "read",
        "--json",
    )
    assert code == 0, err
    assert json.loads(out)["scope"] == "read"


def test_introspect_with_a_manifest_reads_the_token_from_stdin(
    authserver: AuthServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """client_secret_jwt from a manifest, its secret from a file; the token was issued to
    another client, outside the CLI."""
    issued = authserver.token_request(
        authserver.clients["client_secret_basic"],
        {
            "grant_type": "client_credentials",
            "scope": "read write",
            "resource": authserver.resource,
        },
    )
    client = authserver.clients["client_secret_jwt"]
    path = jwt_manifest(tmp_path / "client.yaml", authserver, "jwt-client")
    secret_file = write(tmp_path / "jwt-secret", str(client.client_secret))
    monkeypatch.setattr("sys.stdin", io.StringIO(issued["access_token"] + "\n"))
    code, out, err = run(
        capsys,
        "introspect",
        "-",
        "--client-manifest",
        str(path),
        "--secret-file",
        f"jwt-client/secret={secret_file}",
    )
    assert code == 0, err
    answer = json.loads(out)
    assert answer["active"] is True
    assert answer["client_id"] == "cs-basic"
    assert answer["scope"] == "read write"
    assert isinstance(answer["exp"], int)
    assert answer["iss"] == authserver.issuer


def test_revoke_with_flags(
    authserver: AuthServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """private_key_jwt from flags; only the client a token was issued to may revoke it."""
    client = authserver.clients["private_key_jwt"]
    issued = authserver.token_request(client, {"grant_type": "client_credentials"})
    token = issued["access_token"]
    assert introspect(capsys, authserver, token)["active"] is True
    key_file = write(tmp_path / "key.pem", client.private_keys["ES256"])
    code, out, err = run(
        capsys,
        "revoke",
        *flags(authserver, client),
        "--private-key-file",
        str(key_file),
        "--signing-alg",
        "ES256",
        "--key-id",
        client.kids["ES256"],
        "--",
        token,
    )
    assert (code, out) == (0, ""), err
    assert introspect(capsys, authserver, token) == {"active": False}


def test_get_then_revoke_with_a_manifest_for_tls_client_auth(
    authserver: AuthServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """tls_client_auth (the server's mTLS aliases); certificate, key and the CA bundle
    (a ConfigMap key) from files."""
    client = authserver.clients["tls_client_auth"]
    assert client.cert_file is not None
    assert client.key_file is not None
    path = manifest(
        tmp_path / "client.yaml",
        authserver,
        client,
        authentication={"method": "tls_client_auth", "tlsSecretRef": {"name": "client-tls"}},
        tls={"caBundleFrom": {"kind": "ConfigMap", "name": "ca", "key": "ca.crt"}},
    )
    sources = [
        "--secret-file",
        f"client-tls/tls.crt={client.cert_file}",
        "--secret-file",
        f"client-tls/tls.key={client.key_file}",
        "--secret-file",
        f"ca/ca.crt={authserver.ca_bundle}",
    ]
    code, out, err = run(capsys, "get", "--client-manifest", str(path), *sources, "-q")
    assert (code, err) == (0, "")
    token = out.strip()
    assert introspect(capsys, authserver, token)["client_id"] == client.client_id

    monkeypatch.setattr("sys.stdin", io.StringIO(token))
    code, _, err = run(capsys, "revoke", "-", "--client-manifest", str(path), *sources)
    assert code == 0, err
    assert introspect(capsys, authserver, token) == {"active": False}


def test_revoke_a_refresh_token_with_the_hint(
    authserver: AuthServer, capsys: pytest.CaptureFixture[str]
) -> None:
    client = authserver.clients["client_secret_post"]
    refresh_token = authserver.password_grant(client, ["openid", "offline_access"])["refresh_token"]
    assert introspect(capsys, authserver, refresh_token)["active"] is True
    code, _, err = run(
        capsys,
        "revoke",
        "--hint",
        "refresh_token",
        *flags(authserver, client),
        "--client-secret-env",
        "CLI_TEST_POST_SECRET",
        "--",
        refresh_token,
    )
    assert code == 0, err
    assert introspect(capsys, authserver, refresh_token) == {"active": False}


def test_an_oauth2_error_exits_1_with_the_reason(
    authserver: AuthServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    client = authserver.clients["client_secret_basic"]
    secret_file = write(tmp_path / "secret", "not-the-secret")
    code, out, err = run(
        capsys, "get", *flags(authserver, client), "--client-secret-file", str(secret_file)
    )
    assert (code, out) == (1, "")
    assert "invalid_client" in err


def test_introspecting_an_unknown_token_says_inactive(
    authserver: AuthServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert introspect(capsys, authserver, "no-such-token") == {"active": False}


def test_the_token_to_revoke_comes_from_stdin_by_default_or_a_file(
    authserver: AuthServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Issue 22: a token on the command line is in the process list (`ps`): stdin is the
    default, --token-file the alternative, and the command line is warned about."""
    client = authserver.clients["client_secret_post"]
    assert client.client_secret is not None
    monkeypatch.setenv("CLI_TEST_POST_SECRET", client.client_secret)
    secret_flags = [*flags(authserver, client), "--client-secret-env", "CLI_TEST_POST_SECRET"]
    tokens = []
    for _ in range(3):
        code, out, _ = run(capsys, "get", *secret_flags, "-q")
        assert code == 0
        tokens.append(out.strip())

    monkeypatch.setattr("sys.stdin", io.StringIO(tokens[0] + "\n"))
    code, _, err = run(capsys, "revoke", *secret_flags)  # no token argument: stdin
    assert (code, "warning" in err) == (0, False), err
    (tmp_path / "token").write_text(tokens[1] + "\n")
    code, _, err = run(capsys, "revoke", *secret_flags, "--token-file", str(tmp_path / "token"))
    assert (code, "warning" in err) == (0, False), err
    code, _, err = run(capsys, "revoke", *secret_flags, "--", tokens[2])
    assert code == 0
    assert "visible in the process list" in err
    for token in tokens:
        assert introspect(capsys, authserver, token) == {"active": False}
    code, _, err = run(capsys, "revoke", *secret_flags, "--token-file", str(tmp_path / "none"))
    assert code != 0
    assert "cannot read" in err
