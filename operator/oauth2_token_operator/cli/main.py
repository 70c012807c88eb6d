"""Command line: ``oauth2-token-operator``.

``discover`` fetches and validates an authorization server's metadata exactly
as the operator does (RFC 8414, then OpenID Connect discovery; exact issuer
match; https unless ``--allow-insecure-http``) and prints, as JSON, the fields the
operator uses. It is
the first thing to try when an ``OAuth2Client`` reports a discovery error.

``get``, ``refresh``, ``introspect`` and ``revoke`` call the token library for a client given as
flags or as an ``OAuth2Client`` manifest (``cli.tokens``); ``run`` runs the operator.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence

from oauth2_token_operator import __version__
from oauth2_token_operator.cli.discover import add_discover_command, discover
from oauth2_token_operator.cli.run import add_run_command, run_operator
from oauth2_token_operator.cli.tokens import add_token_commands, main_token_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="oauth2-token-operator", description=__doc__)
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True)
    add_run_command(commands)
    add_discover_command(commands)
    add_token_commands(commands)
    return parser


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
        return run_operator(args)
    if args.command == "discover":
        return asyncio.run(discover(args))
    if args.command in ("get", "refresh", "introspect", "revoke"):
        return main_token_command(args)
    raise AssertionError(f"unhandled command {args.command}")  # argparse rejects others
