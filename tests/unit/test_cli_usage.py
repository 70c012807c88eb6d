"""Usage errors of the token commands (exit code 2) and their output formats: nothing here
reaches a server."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest
import yaml

from oauth2_token_operator.cli.main import build_parser, main, parse_arguments
from oauth2_token_operator.cli.run import operator_config
from oauth2_token_operator.cli.tokens import (
    introspection_json,
    replace_file,
    token_json,
    token_summary,
)
from oauth2_token_operator.controller.shared.config import OperatorConfig
from oauth2_token_operator.oauth2 import Introspection
from oauth2_token_operator.oauth2.egress import DEFAULT_DENIED
from oauth2_token_operator.oauth2.responses import TokenResponse
from tests.api.cases import VALID_CLIENT

ISSUER = ["--issuer", "https://login.example.com", "--client-id", "billing"]


def write_manifest(path: Path, spec: dict[str, object], kind: str = "OAuth2Client") -> Path:
    document = {"apiVersion": "oauth2.token-operator.io/v1alpha1", "kind": kind, "spec": spec}
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Runs the CLI, expects exit code 2 and nothing on stdout; returns stderr."""
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's own errors
        code = exc.code  # type: ignore[assignment]
    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    return err


def test_a_client_from_a_manifest_and_from_flags_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_manifest(tmp_path / "c.yaml", VALID_CLIENT)
    err = usage_error(capsys, "get", "--client-manifest", str(path), *ISSUER)
    assert "not allowed with argument" in err
    err = usage_error(capsys, "get", "--client-manifest", str(path), "--client-id", "x")
    assert "--client-id cannot be combined with --client-manifest" in err


def test_no_client_at_all(capsys: pytest.CaptureFixture[str]) -> None:
    assert "one of the arguments --client-manifest --issuer is required" in usage_error(
        capsys, "get"
    )
    assert "--issuer needs --client-id" in usage_error(
        capsys, "get", "--issuer", "https://login.example.com"
    )


def test_a_manifest_secret_without_a_source_names_the_flags_to_give(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_manifest(tmp_path / "c.yaml", VALID_CLIENT)
    err = usage_error(capsys, "get", "--client-manifest", str(path))
    assert "Secret 'billing-client' key 'client-secret'" in err
    assert "--secret-file billing-client/client-secret=PATH" in err
    assert "--secret-env billing-client/client-secret=VAR" in err


def test_secret_sources_the_manifest_does_not_reference(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLI_SECRET", "x")
    path = write_manifest(tmp_path / "c.yaml", VALID_CLIENT)
    given = ["--secret-env", "billing-client/client-secret=CLI_SECRET"]
    err = usage_error(
        capsys, "get", "--client-manifest", str(path), *given, "--secret-env", "other/key=X"
    )
    assert "references no Secret or ConfigMap key other/key" in err
    err = usage_error(capsys, "get", *ISSUER, "--secret-env", "billing-client/client-secret=X")
    assert "--secret-file and --secret-env apply to --client-manifest only" in err
    err = usage_error(capsys, "get", "--client-manifest", str(path), "--secret-env", "nokey=X")
    assert "--secret-env takes NAME/KEY=VAR" in err


def test_an_unset_variable_or_unreadable_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CLI_UNSET", raising=False)
    err = usage_error(capsys, "get", *ISSUER, "--client-secret-env", "CLI_UNSET")
    assert "--client-secret-env: the environment variable CLI_UNSET is not set or empty" in err
    missing = tmp_path / "missing"
    err = usage_error(capsys, "get", *ISSUER, "--client-secret-file", str(missing))
    assert f"--client-secret-file: cannot read {missing}: No such file or directory" in err


def test_a_missing_credential_names_the_field(capsys: pytest.CaptureFixture[str]) -> None:
    err = usage_error(capsys, "get", *ISSUER)
    assert "client_secret_basic needs a client secret" in err


def test_invalid_manifests(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    http = write_manifest(tmp_path / "http.yaml", {**VALID_CLIENT, "issuer": "http://x.test"})
    err = usage_error(capsys, "get", "--client-manifest", str(http))
    assert "must use https unless allowInsecureHTTP is true" in err
    request = write_manifest(tmp_path / "r.yaml", VALID_CLIENT, kind="AccessTokenRequest")
    err = usage_error(capsys, "get", "--client-manifest", str(request))
    assert "holds 0 OAuth2Client objects, not one" in err
    broken = tmp_path / "broken.yaml"
    broken.write_text("spec: [unclosed\n", encoding="utf-8")
    assert "is not valid YAML (line 2" in usage_error(
        capsys, "get", "--client-manifest", str(broken)
    )


def test_an_invalid_scope_and_an_empty_token(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "invalid scope token" in usage_error(capsys, "get", *ISSUER, "--scope", 'a"b')
    monkeypatch.setenv("CLI_SECRET", "x")
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("\n"))
    err = usage_error(capsys, "introspect", "-", *ISSUER, "--client-secret-env", "CLI_SECRET")
    assert "the token is empty (nothing on stdin)" in err


TOKEN = TokenResponse(
    access_token="the-token",
    token_type="Bearer",
    issued_at=1_800_000_000.0,
    expires_at=1_800_000_300.0,
    scopes=frozenset({"write", "read"}),
    scope_echoed=True,
)


def test_token_formats() -> None:
    assert token_json(TOKEN, now=1_800_000_100.0) == {
        "access_token": "the-token",
        "token_type": "Bearer",
        "scope": "read write",
        "expires_in": 200,
        "expires_at": "2027-01-15T08:05:00Z",
    }
    summary = token_summary(TOKEN)
    assert summary == "token_type: Bearer  expires_at: 2027-01-15T08:05:00Z  scope: read write"
    assert "the-token" not in summary


def test_the_json_of_a_token_is_the_whole_response() -> None:
    """Issue 23: `--json` promises the whole token response; Keycloak's own members (and a
    refresh token, which a rotating server's refresh hands out once) are part of it. A
    server's `expires_at` does not replace ours."""
    response = dataclasses.replace(
        TOKEN,
        refresh_token="the-refresh-token",
        extra={"refresh_expires_in": 1800, "not-before-policy": 0, "session_state": "s-1",
               "expires_at": "the server's"},
    )  # fmt: skip
    assert token_json(response, now=1_800_000_000.0) == {
        "access_token": "the-token",
        "token_type": "Bearer",
        "scope": "read write",
        "expires_in": 300,
        "expires_at": "2027-01-15T08:05:00Z",
        "refresh_token": "the-refresh-token",
        "refresh_expires_in": 1800,
        "not-before-policy": 0,
        "session_state": "s-1",
    }
    assert "the-refresh-token" not in token_summary(response)


def test_refresh_never_takes_the_refresh_token_from_the_command_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The process list shows argv: no place for a refresh token there. From stdin, only
    with --json (a rotated successor has nowhere else to go)."""
    monkeypatch.setenv("CLI_SECRET", "x")
    client = [*ISSUER, "--client-secret-env", "CLI_SECRET"]
    err = usage_error(capsys, "refresh", *client, "--json", "the-refresh-token")
    assert "unrecognized arguments (values not shown)" in err
    assert "the-refresh-token" not in err
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("the-refresh-token\n"))
    err = usage_error(capsys, "refresh", *client)
    assert "a refresh token read from stdin needs --json" in err
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("\n"))
    err = usage_error(capsys, "refresh", *client, "--json")
    assert "the refresh token is empty (nothing on stdin)" in err
    empty = tmp_path / "refresh-token"
    empty.write_text("\n")
    err = usage_error(capsys, "refresh", *client, "--refresh-token-file", str(empty))
    assert f"the refresh token is empty (in {empty})" in err


@pytest.mark.parametrize(("old", "mode"), [("old-token\n", 0o600), ("old-token", 0o640)])
def test_a_rotated_refresh_token_replaces_the_file_whole(
    tmp_path: Path, old: str, mode: int
) -> None:
    path = tmp_path / "refresh-token"
    path.write_text(old)
    path.chmod(mode)
    replace_file(path, "new-token")
    assert path.read_text() == "new-token" + ("\n" if old.endswith("\n") else "")
    assert path.stat().st_mode & 0o777 == mode
    assert [p.name for p in tmp_path.iterdir()] == ["refresh-token"]


def test_introspection_format() -> None:
    answer = Introspection(
        active=True,
        scopes=frozenset({"b", "a"}),
        client_id="billing",
        exp=1_800_000_300.0,
        aud=["x"],
        extra={"cnf": {"x5t#S256": "abc"}},
    )
    assert introspection_json(answer) == {
        "active": True,
        "scope": "a b",
        "client_id": "billing",
        "exp": 1_800_000_300,
        "aud": ["x"],
        "cnf": {"x5t#S256": "abc"},
    }
    assert introspection_json(Introspection(active=False)) == {"active": False}


def test_a_token_that_begins_with_a_dash_goes_after_the_double_dash(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """base64url tokens begin with "-" one time in 64: as the first argument such a token
    reads as an option; after `--` it is the token."""
    usage_error(capsys, "introspect", "-Abc123", *ISSUER, "--client-secret-env", "S")
    for command in ("introspect", "revoke"):
        argv = [command, *ISSUER, "--client-secret-env", "S", "--", "-Abc123"]
        assert parse_arguments(build_parser(), argv).token == "-Abc123"


def run_parser() -> argparse.ArgumentParser:
    commands = next(
        action
        for action in build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    parser: argparse.ArgumentParser = commands.choices["run"]
    return parser


def test_run_help_shows_every_default(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each option of `run` says what it does when not given, the value itself where it
    is one (ports, seconds, names); and those values are the operator's own defaults."""
    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    monkeypatch.delenv("POD_NAME", raising=False)
    parser = run_parser()
    formatter = parser._get_formatter()
    options = [action for action in parser._actions if action.dest != "help"]
    assert len(options) == 25
    for action in options:
        shown = formatter._expand_help(action)
        assert "default" in shown, f"{action.option_strings} does not say its default"
        default = action.default
        if isinstance(default, bool | list) or default in (None, ""):
            continue  # a flag, a repeated option, or a default named in words
        value = f"{default:g}" if isinstance(default, float) else str(default)
        assert value in shown.split("default", 1)[1], f"{action.option_strings}: {shown}"

    with pytest.raises(SystemExit) as exited:
        main(["run", "--help"])
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for expected in (
        "--metrics-port PORT port of the Prometheus metrics, 0: off (default: 8080)",
        "/healthz, 0: off (default: 8081)",
        "into volumes (default: 90)",
        "assumedLifetime overrides it (default: 300)",
        "with an Event (default: 30)",
        "(default: $POD_NAMESPACE, else default)",
        "(default: oauth2-token-operator)",
        "(default: text)",
        "(default: INFO)",
        "--metrics-bind-address ADDRESS address the metrics listen on, e.g. :: for IPv6"
        " (default: 0.0.0.0)",
        "probes the pod's IP (default: 0.0.0.0)",
        "--deny-cidr= alone denies nothing) (default: 127.0.0.0/8, ::1/128, 0.0.0.0/8,",
        "(repeat; default: every host)",
        "(IssuerNotAllowed) (default: off, allowed where a client sets it)",
    ):
        assert expected in text

    args = parse_arguments(build_parser(), ["run"])
    config = OperatorConfig()
    assert (args.metrics_port, args.health_port) == (config.metrics_port, config.health_port)
    assert args.min_renewal_lead == config.min_renewal_lead
    assert args.assumed_token_lifetime == config.assumed_token_lifetime
    assert args.revocation_deadline == config.revocation_deadline
    assert (args.concurrency, args.per_server_concurrency) == (16, 8)
    assert (args.concurrency, args.per_server_concurrency) == (
        config.concurrency,
        config.per_server_concurrency,
    )
    assert (args.breaker_failures, args.breaker_cooldown) == (
        config.breaker_failures,
        config.breaker_cooldown,
    )
    assert (args.log_format, args.log_level) == (config.log_format, config.log_level)
    assert (args.lease_namespace, args.lease_name) == (config.lease_namespace, config.lease_name)


def run_config(*argv: str) -> OperatorConfig:
    return operator_config(parse_arguments(build_parser(), ["run", *argv]))


def test_run_egress_flags() -> None:
    """No --deny-cidr: the default list; given, it replaces it; `--deny-cidr=` alone is an
    explicit empty list. Patterns and blocks are checked as the flags are read."""
    default = run_config()
    assert default.deny_cidrs == DEFAULT_DENIED == OperatorConfig().deny_cidrs
    assert (default.allow_issuers, default.forbid_insecure_http) == ((), False)
    assert default.egress().denied  # the operator's transport gets them
    assert run_config("--deny-cidr=").deny_cidrs == ()
    assert run_config("--deny-cidr=").egress().refuses_nothing
    replaced = run_config("--deny-cidr=10.1.2.3/8", "--deny-cidr", "169.254.169.254")
    assert replaced.deny_cidrs == ("10.0.0.0/8", "169.254.169.254/32")
    assert run_config("--deny-cidr=", "--deny-cidr=fd00::/8").deny_cidrs == ("fd00::/8",)
    allowed = run_config(
        "--allow-issuer=Login.Example.com",
        "--allow-issuer",
        "*.corp.example",
        "--forbid-insecure-http",
    )
    assert allowed.allow_issuers == ("login.example.com", "*.corp.example")
    assert allowed.egress().forbid_insecure_http


def test_run_bind_addresses() -> None:
    config = run_config("--metrics-bind-address=127.0.0.1", "--health-bind-address", "::")
    assert (config.metrics_bind_address, config.health_bind_address) == ("127.0.0.1", "::")


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--deny-cidr=169.254.0.0/33"], "argument --deny-cidr: '169.254.0.0/33' is not an IP"),
        (["--allow-issuer=*"], "argument --allow-issuer: '*' is not a host name or *.domain"),
        (["--health-bind-address=localhost"], "'localhost' is not an IP address"),
    ],
)
def test_run_refuses_wrong_egress_and_bind_values(
    capsys: pytest.CaptureFixture[str], argv: list[str], said: str
) -> None:
    assert said in usage_error(capsys, "run", *argv)


def test_run_passes_the_scheduling_and_breaker_flags_on(monkeypatch: pytest.MonkeyPatch) -> None:
    from oauth2_token_operator.controller.process import run as run_module

    started: list[OperatorConfig] = []

    def run(config: OperatorConfig) -> int:
        started.append(config)
        return 0

    monkeypatch.setattr(run_module, "run", run)
    flags = ["--concurrency=8", "--per-server-concurrency=2"]
    assert main(["run", *flags, "--breaker-failures=0", "--breaker-cooldown=2.5"]) == 0
    (config,) = started
    assert (config.concurrency, config.per_server_concurrency) == (8, 2)
    assert (config.breaker_failures, config.breaker_cooldown) == (0, 2.5)
