"""`oauth2-token-operator run`: the operator's options, each with its default, turned into
its `OperatorConfig`. The operator itself is imported only when it runs, so that the
other commands do not load kopf."""

from __future__ import annotations

import argparse
import ipaddress
import os
from typing import Any

from oauth2_token_operator.controller.shared.config import OperatorConfig
from oauth2_token_operator.oauth2.egress import DEFAULT_DENIED, parse_host_pattern, parse_network
from oauth2_token_operator.policies.service_accounts import DEFAULT_API_AUDIENCES


def add_run_command(commands: Any) -> None:
    """Add `run` to the CLI's subcommands."""
    parser = commands.add_parser(
        "run",
        help="run the operator",
        description="Run the operator. Every option shows its default.",
    )
    defaults = OperatorConfig()
    scope = parser.add_mutually_exclusive_group()
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
    parser.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        default=defaults.metrics_port,
        help="port of the Prometheus metrics, 0: off (default: %(default)s)",
    )
    parser.add_argument(
        "--health-port",
        type=int,
        metavar="PORT",
        default=defaults.health_port,
        help="port of the liveness endpoint /healthz, 0: off (default: %(default)s)",
    )
    parser.add_argument(
        "--metrics-bind-address",
        type=_address,
        metavar="ADDRESS",
        default=defaults.metrics_bind_address,
        help="address the metrics listen on, e.g. :: for IPv6 (default: %(default)s)",
    )
    parser.add_argument(
        "--health-bind-address",
        type=_address,
        metavar="ADDRESS",
        default=defaults.health_bind_address,
        help="address /healthz listens on; the kubelet probes the pod's IP (default: %(default)s)",
    )
    parser.add_argument(
        "--deny-cidr",
        action="append",
        type=_network,
        metavar="CIDR",
        help="no OAuth2 call connects to an address in this block, checked after name"
        " resolution (repeat; given, it replaces the default list; --deny-cidr= alone"
        f" denies nothing) (default: {', '.join(defaults.deny_cidrs)})",
    )
    parser.add_argument(
        "--kubernetes-api-audience",
        action="append",
        default=[],
        metavar="AUDIENCE",
        help="an audience the Kubernetes API server accepts (its --api-audiences, e.g. its"
        " issuer URL): no ServiceAccount token is minted for it (repeat; added to the"
        f" default, always refused: {', '.join(DEFAULT_API_AUDIENCES)})",
    )
    parser.add_argument(
        "--allow-issuer",
        action="append",
        default=[],
        type=_host_pattern,
        metavar="PATTERN",
        help="a host (login.example.com) or *.domain every URL the operator calls must"
        " match: issuer, discovered and configured endpoints (repeat; default: every host)",
    )
    parser.add_argument(
        "--forbid-insecure-http",
        action="store_true",
        help="refuse OAuth2Clients that set allowInsecureHTTP (IssuerNotAllowed)"
        " (default: off, allowed where a client sets it)",
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=defaults.log_format,
        help="format of the log lines (default: %(default)s)",
    )
    parser.add_argument(
        "--log-level",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        default=defaults.log_level,
        help="least severe level logged (default: %(default)s)",
    )
    parser.add_argument(
        "--min-renewal-lead",
        type=float,
        metavar="SECONDS",
        default=defaults.min_renewal_lead,
        help="renew no later than this before expiry, so that the kubelet can bring the new"
        " token into volumes (default: %(default)g)",
    )
    parser.add_argument(
        "--assumed-token-lifetime",
        type=float,
        metavar="SECONDS",
        default=defaults.assumed_token_lifetime,
        help="the lifetime assumed for a token whose server states none (no expires_in);"
        " a request's assumedLifetime overrides it (default: %(default)g)",
    )
    parser.add_argument(
        "--leader-election",
        action="store_true",
        help="run as one of several replicas: only the holder of a Lease works"
        " (default: off, this process works alone)",
    )
    parser.add_argument(
        "--lease-namespace",
        default=os.environ.get("POD_NAMESPACE", defaults.lease_namespace),
        help=f"namespace of the Lease (default: $POD_NAMESPACE, else {defaults.lease_namespace})",
    )
    parser.add_argument(
        "--seal-secret",
        type=_namespaced_name,
        default=f"{os.environ.get('POD_NAMESPACE', defaults.seal_namespace)}/{defaults.seal_name}",
        metavar="NAMESPACE/NAME",
        help="the Secret holding the key that seals the token Secrets the operator writes, "
        "created at its first start; in the operator's own namespace "
        f"(default: %(default)s, from $POD_NAMESPACE, else {defaults.seal_namespace})",
    )
    parser.add_argument(
        "--lease-name",
        default=defaults.lease_name,
        help="name of the Lease, one per installation (default: %(default)s)",
    )
    parser.add_argument(
        "--identity",
        default=os.environ.get("POD_NAME", defaults.identity),
        help="this replica's name in the Lease (default: $POD_NAME, else the host name)",
    )
    parser.add_argument(
        "--revocation-deadline",
        type=float,
        metavar="SECONDS",
        default=defaults.revocation_deadline,
        help="how long a deletion waits for revocation before giving up, with an Event"
        " (default: %(default)g)",
    )
    parser.add_argument(
        "--rollout-restart-min-interval",
        type=float,
        metavar="SECONDS",
        default=defaults.rollout_restart_min_interval,
        help="the least time between two restarts of a request's rolloutRestartTargets"
        " (default: %(default)g)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        metavar="N",
        default=defaults.concurrency,
        help="scheduled reconciliations (renewals, retries) running at once (default: %(default)s)",
    )
    parser.add_argument(
        "--per-server-concurrency",
        type=int,
        metavar="N",
        default=defaults.per_server_concurrency,
        help="of those, at most this many for the requests of one authorization server (token"
        " endpoint), so that a slow or hung server cannot hold up the others"
        " (default: %(default)s)",
    )
    parser.add_argument(
        "--breaker-failures",
        type=int,
        metavar="N",
        default=defaults.breaker_failures,
        help="failed calls in a row (no answer, or HTTP 5xx) after which an endpoint gets no"
        " call but one trial per cool-down; 0: never (default: %(default)s)",
    )
    parser.add_argument(
        "--breaker-cooldown",
        type=float,
        metavar="SECONDS",
        default=defaults.breaker_cooldown,
        help="the first cool-down, doubled at each reopening up to 5 minutes"
        " (default: %(default)g)",
    )


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


def run_operator(args: argparse.Namespace) -> int:
    from oauth2_token_operator.controller.process.run import run

    return run(operator_config(args))
