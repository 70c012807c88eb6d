"""The token commands as a process: `get | introspect -` works as a pipe, and when a call
fails, no secret read from a file or environment variable (nor the token) appears in
anything the process writes (stdout, stderr: messages, warnings, tracebacks)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.authserver.fixtures import AuthServer
from tests.integration.cli_helpers import flags, jwt_manifest, write

pytestmark = pytest.mark.authserver

REPO = Path(__file__).resolve().parents[2]
# Wrong, but plausible, credentials: each must stay out of the output.
WRONG_SECRET = "wr0ng-s3cret:that/must+never%appear"
ENV_SECRET = "env-s3cret:that/must+never%appear"


def cli(
    *argv: str, env: dict[str, str] | None = None, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CLI_TEST_")}
    return subprocess.run(
        [sys.executable, "-m", "oauth2_token_operator.cli", *argv],
        input=stdin,
        capture_output=True,
        text=True,
        env={**environment, **(env or {})},
        cwd=REPO,
        timeout=60,
        check=False,
    )


def assert_not_leaked(result: subprocess.CompletedProcess[str], *secrets: str) -> None:
    output = result.stdout + result.stderr
    for secret in secrets:
        assert secret not in output
        # Nor any sizeable piece of it (a PEM body line, half a secret).
        for line in secret.splitlines():
            if len(line) >= 16 and not line.startswith("-----"):
                assert line not in output


def unregistered_key() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_get_pipes_into_introspect(authserver: AuthServer, tmp_path: Path) -> None:
    client = authserver.clients["client_secret_basic"]
    secret_file = write(tmp_path / "secret", str(client.client_secret))
    args = [*flags(authserver, client), "--client-secret-file", str(secret_file)]
    got = cli("get", *args, "--scope", "read", "--resource", authserver.resource)
    assert got.returncode == 0, got.stderr
    introspected = cli("introspect", "-", *args, stdin=got.stdout)
    assert introspected.returncode == 0, introspected.stderr
    assert json.loads(introspected.stdout)["scope"] == "read"
    assert_not_leaked(got, str(client.client_secret))
    assert_not_leaked(introspected, str(client.client_secret), got.stdout.strip())


def test_a_wrong_client_secret_from_a_file_is_not_shown(
    authserver: AuthServer, tmp_path: Path
) -> None:
    client = authserver.clients["client_secret_basic"]
    secret_file = write(tmp_path / "secret", WRONG_SECRET)
    for command in (["get"], ["introspect", "-"], ["revoke", "-"]):
        result = cli(
            *command,
            *flags(authserver, client),
            "--client-secret-file",
            str(secret_file),
            stdin="a-token-that-is-also-a-secret",
        )
        assert result.returncode == 1, result.stderr
        assert "invalid_client" in result.stderr
        assert_not_leaked(result, WRONG_SECRET, "a-token-that-is-also-a-secret")


def test_a_wrong_client_secret_from_the_environment_is_not_shown(
    authserver: AuthServer, tmp_path: Path
) -> None:
    """client_secret_jwt: the secret signs an assertion the server refuses."""
    path = jwt_manifest(tmp_path / "client.yaml", authserver, "jwt")
    result = cli(
        "get",
        "--client-manifest",
        str(path),
        "--secret-env",
        "jwt/secret=CLI_SECRET",
        env={"CLI_SECRET": ENV_SECRET},
    )
    assert result.returncode == 1, result.stderr
    assert "invalid_client" in result.stderr
    assert_not_leaked(result, ENV_SECRET)


def test_an_unregistered_private_key_is_not_shown(authserver: AuthServer, tmp_path: Path) -> None:
    client = authserver.clients["private_key_jwt"]
    key = unregistered_key()
    result = cli(
        "get", *flags(authserver, client), "--private-key-env", "CLI_KEY", env={"CLI_KEY": key}
    )
    assert result.returncode == 1, result.stderr
    assert "invalid_client" in result.stderr
    assert_not_leaked(result, key)


def test_a_malformed_private_key_is_not_shown(authserver: AuthServer, tmp_path: Path) -> None:
    client = authserver.clients["private_key_jwt"]
    body = "TUlJRXZRSUJBREFOQmdrcWhraUc5dzBCQVFFRkFBU0NCS2N3Z2dTakFnRUFBb0lCQVFD"
    key_file = write(tmp_path / "key.pem", f"-----BEGIN PRIVATE KEY-----\n{body}\n")
    result = cli("get", *flags(authserver, client), "--private-key-file", str(key_file))
    assert result.returncode == 1
    assert "private key for client 'pk-jwt' cannot be loaded" in result.stderr
    assert_not_leaked(result, body)


def test_an_unreachable_server_does_not_show_the_secret(tmp_path: Path) -> None:
    secret_file = write(tmp_path / "secret", WRONG_SECRET)
    result = cli(
        "get",
        "--issuer",
        f"https://127.0.0.1:{free_port()}",
        "--client-id",
        "nobody",
        "--client-secret-file",
        str(secret_file),
    )
    assert result.returncode == 1
    assert "error:" in result.stderr
    assert_not_leaked(result, WRONG_SECRET)


def test_a_secret_for_the_wrong_method_is_a_usage_error_that_does_not_show_it(
    authserver: AuthServer, tmp_path: Path
) -> None:
    client = authserver.clients["client_secret_basic"]
    result = cli(
        "get",
        *flags(authserver, client),
        "--private-key-env",
        "CLI_KEY",
        env={"CLI_KEY": ENV_SECRET},
    )
    assert result.returncode == 2
    assert "--private-key-* does not apply to --auth-method client_secret_basic" in result.stderr
    assert_not_leaked(result, ENV_SECRET)


def test_a_secret_given_as_a_flag_value_is_refused_without_repeating_it(
    authserver: AuthServer,
) -> None:
    client = authserver.clients["client_secret_basic"]
    for spelling in (["--client-secret", WRONG_SECRET], [f"--client-secret={WRONG_SECRET}"]):
        result = cli("get", *flags(authserver, client), *spelling)
        assert result.returncode == 2
        assert "unrecognized arguments --client-secret" in result.stderr
        assert_not_leaked(result, WRONG_SECRET)
