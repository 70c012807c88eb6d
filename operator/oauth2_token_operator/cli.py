"""Command line: ``oauth2-token-operator``.

``discover`` fetches and validates an authorization server's metadata exactly
as the operator does (RFC 8414, then OpenID Connect discovery; exact issuer
match; https unless ``--allow-insecure-http``) and prints, as JSON, the fields the
operator uses. It is
the first thing to try when an ``OAuth2Client`` reports a discovery error.

``get``, ``refresh``, ``introspect`` and ``revoke`` call the token library for a client given as
flags or as an ``OAuth2Client`` manifest (``cli_tokens``); ``run`` runs the operator.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from oauth2_token_operator import __version__
from oauth2_token_operator.cli_tokens import add_token_commands, main_token_command, said
from oauth2_token_operator.controller.config import OperatorConfig
from oauth2_token_operator.oauth2.egress import DEFAULT_DENIED, parse_host_pattern, parse_network
from oauth2_token_operator.oauth2.errors import OAuth2Error
from oauth2_token_operator.oauth2.metadata import IssuerConfig, MetadataCache
from oauth2_token_operator.oauth2.transport import OAuth2Transport
from oauth2_token_operator.policies.service_accounts import DEFAULT_API_AUDIENCES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="oauth2-token-operator", description=__doc__)
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run",
        help="run the operator",
        description="Run the operator. Every option shows its default.",
    )
    defaults = OperatorConfig()
    scope = run.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="watch this namespace (repeat; default: all namespaces)",
    )
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="watch all namespaces (the default)"
    )
    run.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        default=defaults.metrics_port,
        help="port of the Prometheus metrics, 0: off (default: %(default)s)",
    )
    run.add_argument(
        "--health-port",
        type=int,
        metavar="PORT",
        default=defaults.health_port,
        help="port of the liveness endpoint /healthz, 0: off (default: %(default)s)",
    )
    run.add_argument(
        "--metrics-bind-address",
        type=_address,
        metavar="ADDRESS",
        default=defaults.metrics_bind_address,
        help="address the metrics listen on, e.g. :: for IPv6 (default: %(default)s)",
    )
    run.add_argument(
        "--health-bind-address",
        type=_address,
        metavar="ADDRESS",
        default=defaults.health_bind_address,
        help="address /healthz listens on; the kubelet probes the pod's IP (default: %(default)s)",
    )
    run.add_argument(
        "--deny-cidr",
        action="append",
        type=_network,
        metavar="CIDR",
        help="no OAuth2 call connects to an address in this block, checked after name"
        " resolution (repeat; given, it replaces the default list; --deny-cidr= alone"
        f" denies nothing) (default: {', '.join(defaults.deny_cidrs)})",
    )
    run.add_argument(
        "--kubernetes-api-audience",
        action="append",
        default=[],
        metavar="AUDIENCE",
        help="an audience the Kubernetes API server accepts (its --api-audiences, e.g. its"
        " issuer URL): no ServiceAccount token is minted for it (repeat; added to the"
        f" default, always refused: {', '.join(DEFAULT_API_AUDIENCES)})",
    )
    run.add_argument(
        "--allow-issuer",
        action="append",
        default=[],
        type=_host_pattern,
        metavar="PATTERN",
        help="a host (login.example.com) or *.domain every URL the operator calls must"
        " match: issuer, discovered and configured endpoints (repeat; default: every host)",
    )
    run.add_argument(
        "--forbid-insecure-http",
        action="store_true",
        help="refuse OAuth2Clients that set allowInsecureHTTP (IssuerNotAllowed)"
        " (default: off, allowed where a client sets it)",
    )
    run.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=defaults.log_format,
        help="format of the log lines (default: %(default)s)",
    )
    run.add_argument(
        "--log-level",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        default=defaults.log_level,
        help="least severe level logged (default: %(default)s)",
    )
    run.add_argument(
        "--min-renewal-lead",
        type=float,
        metavar="SECONDS",
        default=defaults.min_renewal_lead,
        help="renew no later than this before expiry, so that the kubelet can bring the new"
        " token into volumes (default: %(default)g)",
    )
    run.add_argument(
        "--assumed-token-lifetime",
        type=float,
        metavar="SECONDS",
        default=defaults.assumed_token_lifetime,
        help="the lifetime assumed for a token whose server states none (no expires_in);"
        " a request's assumedLifetime overrides it (default: %(default)g)",
    )
    run.add_argument(
        "--leader-election",
        action="store_true",
        help="run as one of several replicas: only the holder of a Lease works"
        " (default: off, this process works alone)",
    )
    run.add_argument(
        "--lease-namespace",
        default=os.environ.get("POD_NAMESPACE", defaults.lease_namespace),
        help=f"namespace of the Lease (default: $POD_NAMESPACE, else {defaults.lease_namespace})",
    )
    run.add_argument(
        "--seal-secret",
        type=_namespaced_name,
        default=f"{os.environ.get('POD_NAMESPACE', defaults.seal_namespace)}/{defaults.seal_name}",
        metavar="NAMESPACE/NAME",
        help="the Secret holding the key that seals the token Secrets the operator writes, "
        "created at its first start; in the operator's own namespace "
        f"(default: %(default)s, from $POD_NAMESPACE, else {defaults.seal_namespace})",
    )
    run.add_argument(
        "--lease-name",
        default=defaults.lease_name,
        help="name of the Lease, one per installation (default: %(default)s)",
    )
    run.add_argument(
        "--identity",
        default=os.environ.get("POD_NAME", defaults.identity),
        help="this replica's name in the Lease (default: $POD_NAME, else the host name)",
    )
    run.add_argument(
        "--revocation-deadline",
        type=float,
        metavar="SECONDS",
        default=defaults.revocation_deadline,
        help="how long a deletion waits for revocation before giving up, with an Event"
        " (default: %(default)g)",
    )
    run.add_argument(
        "--rollout-restart-min-interval",
        type=float,
        metavar="SECONDS",
        default=defaults.rollout_restart_min_interval,
        help="the least time between two restarts of a request's rolloutRestartTargets"
        " (default: %(default)g)",
    )
    run.add_argument(
        "--concurrency",
        type=int,
        metavar="N",
        default=defaults.concurrency,
        help="scheduled reconciliations (renewals, retries) running at once (default: %(default)s)",
    )
    run.add_argument(
        "--per-server-concurrency",
        type=int,
        metavar="N",
        default=defaults.per_server_concurrency,
        help="of those, at most this many for the requests of one authorization server (token"
        " endpoint), so that a slow or hung server cannot hold up the others"
        " (default: %(default)s)",
    )
    run.add_argument(
        "--breaker-failures",
        type=int,
        metavar="N",
        default=defaults.breaker_failures,
        help="failed calls in a row (no answer, or HTTP 5xx) after which an endpoint gets no"
        " call but one trial per cool-down; 0: never (default: %(default)s)",
    )
    run.add_argument(
        "--breaker-cooldown",
        type=float,
        metavar="SECONDS",
        default=defaults.breaker_cooldown,
        help="the first cool-down, doubled at each reopening up to 5 minutes"
        " (default: %(default)g)",
    )
    discover = commands.add_parser("discover", help="fetch and validate server metadata")
    discover.add_argument("issuer", help="the issuer identifier, e.g. https://login.example.com")
    discover.add_argument("--ca-file", type=Path, help="PEM bundle that verifies the server")
    discover.add_argument(
        "--allow-insecure-http", action="store_true", help="accept plain http (testing only)"
    )
    add_token_commands(commands)
    return parser


async def _discover(args: argparse.Namespace) -> int:
    config = IssuerConfig(
        issuer=args.issuer,
        allow_insecure_http=args.allow_insecure_http,
        ca_pem=args.ca_file.read_text() if args.ca_file else None,
    )
    transport = OAuth2Transport()
    try:
        metadata = await MetadataCache(transport).get(config)
    except OAuth2Error as exc:
        print(f"error: {said(exc)}", file=sys.stderr)
        return 1
    finally:
        await transport.aclose()
    print(json.dumps(metadata.model_dump(exclude_none=True), indent=2, sort_keys=True))
    return 0


def _namespaced_name(text: str) -> tuple[str, str]:
    namespace, _, name = text.partition("/")
    if not namespace or not name or "/" in name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAMESPACE/NAME")
    return namespace, name


def _address(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IP address") from None


def _network(text: str) -> str:
    """A CIDR block, or "" (`--deny-cidr=`: an empty list, given explicitly)."""
    if not text.strip():
        return ""
    try:
        return str(parse_network(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _host_pattern(text: str) -> str:
    try:
        return parse_host_pattern(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def operator_config(args: argparse.Namespace) -> OperatorConfig:
    """The operator's configuration from `run`'s arguments."""
    return OperatorConfig(
        namespaces=tuple(args.namespace),
        metrics_port=args.metrics_port or None,
        health_port=args.health_port or None,
        metrics_bind_address=args.metrics_bind_address,
        health_bind_address=args.health_bind_address,
        deny_cidrs=DEFAULT_DENIED
        if args.deny_cidr is None
        else tuple(cidr for cidr in args.deny_cidr if cidr),
        allow_issuers=tuple(args.allow_issuer),
        kubernetes_api_audiences=tuple(
            dict.fromkeys([*DEFAULT_API_AUDIENCES, *args.kubernetes_api_audience])
        ),
        forbid_insecure_http=args.forbid_insecure_http,
        log_format=args.log_format,
        log_level=args.log_level,
        min_renewal_lead=args.min_renewal_lead,
        assumed_token_lifetime=args.assumed_token_lifetime,
        revocation_deadline=args.revocation_deadline,
        rollout_restart_min_interval=args.rollout_restart_min_interval,
        concurrency=args.concurrency,
        per_server_concurrency=args.per_server_concurrency,
        breaker_failures=args.breaker_failures,
        breaker_cooldown=args.breaker_cooldown,
        leader_election=args.leader_election,
        lease_namespace=args.lease_namespace,
        lease_name=args.lease_name,
        seal_namespace=args.seal_secret[0],
        seal_name=args.seal_secret[1],
        identity=args.identity,
    )


def _run(args: argparse.Namespace) -> int:
    from oauth2_token_operator.controller.run import run

    return run(operator_config(args))


def parse_arguments(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None
) -> argparse.Namespace:
    """`parse_args`, except that unknown arguments are named, never repeated: someone who
    tries `--client-secret VALUE` must not find VALUE in a CI log."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        options = sorted({item.split("=", 1)[0] for item in unknown if item.startswith("-")})
        named = f" {' '.join(options)}" if options else ""
        parser.error(f"unrecognized arguments{named} (values not shown)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_arguments(build_parser(), argv)
    if args.command == "run":
        return _run(args)
    if args.command == "discover":
        return asyncio.run(_discover(args))
    if args.command in ("get", "refresh", "introspect", "revoke"):
        return main_token_command(args)
    raise AssertionError(f"unhandled command {args.command}")  # argparse rejects others


if __name__ == "__main__":
    sys.exit(main())
