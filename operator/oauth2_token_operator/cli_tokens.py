"""`oauth2-token-operator get | introspect | revoke`: the token library at the shell.

Each command builds one `TokenManager` (in-memory store), makes one call and prints the
answer. The client comes from flags or from an `OAuth2Client` manifest (`cli_client`).

Exit codes: 0 done, 1 the OAuth2 call failed (the reason on stderr), 2 usage. Nothing
secret is ever written to stderr; `get` writes the token to stdout on purpose.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from oauth2_token_operator.cli_client import Client, UsageError, add_client_arguments, load_client
from oauth2_token_operator.manager import (
    CLIENT_CREDENTIALS,
    InMemoryTokenStore,
    TokenKind,
    TokenManager,
)
from oauth2_token_operator.manager.model import AccessToken
from oauth2_token_operator.oauth2.authorization_server import ACCESS_TOKEN_HINT
from oauth2_token_operator.oauth2.errors import OAuth2Error
from oauth2_token_operator.oauth2.responses import Introspection
from oauth2_token_operator.oauth2.scopes import format_scope, parse_scope
from oauth2_token_operator.util.rfc3339 import rfc3339

EXIT_OK = 0
EXIT_OAUTH2_ERROR = 1
EXIT_USAGE = 2

REFRESH_TOKEN_HINT = TokenKind.REFRESH_TOKEN.value

_EPILOG = """\
Secrets are read from files or environment variables only, never from flag values.
Exit codes: 0 done, 1 the authorization server refused or could not be reached (the
reason on stderr), 2 usage error."""


def add_token_commands(commands: Any) -> None:
    """Add `get`, `introspect` and `revoke` to the CLI's subcommands."""
    get = commands.add_parser(
        "get",
        help="obtain an access token (client_credentials)",
        description="Obtain an access token with the client_credentials grant.\n\n"
        "Prints the token alone on stdout (ready for a pipe or $(...)) and its type,\n"
        "expiry and granted scopes on stderr; --json prints the whole token response\n"
        "(RFC 6749 section 5.1, plus expires_at) on stdout.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    add_client_arguments(get)
    request = get.add_argument_group("the request")
    request.add_argument(
        "--scope",
        action="extend",
        type=_scopes,
        metavar="SCOPE",
        help="scope to request (repeat, or space-separated); default: the manifest's"
        " defaultScopes, else none",
    )
    request.add_argument(
        "--resource", action="append", default=[], metavar="URI", help="RFC 8707 (repeat)"
    )
    request.add_argument("--audience", help="the audience parameter some servers take")
    output = get.add_argument_group("output")
    output.add_argument("--json", action="store_true", help="the token response as JSON")
    output.add_argument(
        "-q", "--quiet", action="store_true", help="nothing on stderr unless it fails"
    )

    _token_command(
        commands,
        "introspect",
        help="ask the server about a token (RFC 7662)",
        description="Introspect a token (RFC 7662) and print the server's answer as JSON.\n"
        'An inactive token prints {"active": false} and exits 0.',
    )
    revoke = _token_command(
        commands,
        "revoke",
        help="revoke a token (RFC 7009)",
        description="Revoke a token (RFC 7009). Servers also answer success for a token\n"
        "they do not know (RFC 7009 section 2.2).",
    )
    revoke.add_argument(
        "--hint",
        choices=(ACCESS_TOKEN_HINT, REFRESH_TOKEN_HINT),
        default=ACCESS_TOKEN_HINT,
        help="token_type_hint (default: access_token)",
    )


def _token_command(commands: Any, name: str, *, help: str, description: str) -> Any:
    """A command that takes a token (argument or stdin) and a client."""
    parser = commands.add_parser(
        name,
        help=help,
        description=description,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument(
        "token",
        metavar="TOKEN|-",
        nargs="?",
        default="-",
        help="the token; by default (or -) read from stdin, which keeps it out of the"
        " process list (a token given here is visible there); a token that begins with -"
        " goes last, after --",
    )
    parser.add_argument(
        "--token-file",
        type=Path,
        metavar="PATH",
        help="read the token from this file instead (surrounding whitespace ignored)",
    )
    add_client_arguments(parser)
    return parser


def _scopes(value: str) -> list[str]:
    try:
        return sorted(parse_scope(value))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run_token_command(
    args: argparse.Namespace,
    *,
    environ: Mapping[str, str],
    stdin: IO[str],
    stdout: IO[str],
    stderr: IO[str],
) -> int:
    """Carry out `get`, `introspect` or `revoke`; return the exit code."""
    try:
        client = load_client(args, environ)
        token = None if args.command == "get" else _token_argument(args, stdin, stderr)
    except UsageError as exc:
        print(f"oauth2-token-operator {args.command}: error: {exc}", file=stderr)
        return EXIT_USAGE
    try:
        if token is None:
            _print_token(asyncio.run(_get(args, client)), args, stdout, stderr)
        elif args.command == "introspect":
            answer = asyncio.run(_introspect(token, client))
            print(json.dumps(introspection_json(answer), indent=2), file=stdout)
        else:
            asyncio.run(_revoke(token, args.hint, client))
            print("revoked", file=stderr)
    except OAuth2Error as exc:  # messages name endpoints and errors, never secrets
        print(f"error: {said(exc)}", file=stderr)
        return EXIT_OAUTH2_ERROR
    return EXIT_OK


def said(exc: OAuth2Error) -> str:
    """An error of the OAuth2 core in the CLI's words: the core names its own parameters
    (`allow_insecure_http`), a user of the CLI knows them as flags."""
    return str(exc).replace("(allow_insecure_http)", "(--allow-insecure-http)")


def _token_argument(args: argparse.Namespace, stdin: IO[str], stderr: IO[str]) -> str:
    """The token to introspect or revoke: from stdin (the default), a file, or, visible
    in the process list and so warned about, the command line."""
    value: str = args.token
    token_file: Path | None = args.token_file
    if token_file is not None:
        if value != "-":
            raise UsageError("give the token as an argument or with --token-file, not both")
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--token-file: cannot read {token_file}: {exc}") from None
        where = f" (in {token_file})"
    elif value == "-":
        token, where = stdin.read().strip(), " (nothing on stdin)"
    else:
        print(
            "warning: a token on the command line is visible in the process list;"
            " pass it on stdin or with --token-file",
            file=stderr,
        )
        token, where = value, ""
    if not token:
        raise UsageError("the token is empty" + where)
    return token


async def _get(args: argparse.Namespace, client: Client) -> AccessToken:
    scopes = args.scope if args.scope is not None else client.default_scopes
    async with TokenManager(InMemoryTokenStore()) as tokens:
        return await tokens.get(
            client.issuer,
            CLIENT_CREDENTIALS,
            client.config,
            scopes=scopes,
            resources=args.resource,
            audience=args.audience,
        )


async def _introspect(token: str, client: Client) -> Introspection:
    async with TokenManager(InMemoryTokenStore()) as tokens:
        return await tokens.introspect(token, client.issuer, client.config)


async def _revoke(token: str, hint: str, client: Client) -> None:
    async with TokenManager(InMemoryTokenStore()) as tokens:
        if hint == REFRESH_TOKEN_HINT:
            # The manager's refresh-token calls are per subject (for its store and its
            # refresh lock); the CLI has neither, so it asks the server directly.
            await tokens.server(client.issuer, client.config).revoke(
                token, token_type_hint=REFRESH_TOKEN_HINT
            )
        else:
            await tokens.revoke(token, client.issuer, client.config)


def token_json(token: AccessToken, now: float) -> dict[str, Any]:
    """The token as an RFC 6749 §5.1 response, plus `expires_at` (RFC 3339)."""
    answer: dict[str, Any] = {
        "access_token": token.value,
        "token_type": token.token_type,
        "scope": format_scope(token.scopes),
    }
    if token.expires_at is not None:
        answer["expires_in"] = max(0, round(token.expires_at - now))
        answer["expires_at"] = rfc3339(token.expires_at)
    return answer


def token_summary(token: AccessToken) -> str:
    """The token's non-secret facts, one line."""
    expires = "never stated" if token.expires_at is None else rfc3339(token.expires_at)
    scope = format_scope(token.scopes) or "(none)"
    return f"token_type: {token.token_type}  expires_at: {expires}  scope: {scope}"


def _print_token(
    token: AccessToken, args: argparse.Namespace, stdout: IO[str], stderr: IO[str]
) -> None:
    if args.json:
        now = datetime.now(UTC).timestamp()
        print(json.dumps(token_json(token, now), indent=2), file=stdout)
        return
    print(token.value, file=stdout)
    if not args.quiet:
        print(token_summary(token), file=stderr)


def introspection_json(answer: Introspection) -> dict[str, Any]:
    """The RFC 7662 §2.2 answer, as the server's members (times as JSON numbers)."""
    if not answer.active:
        return {"active": False}
    members: dict[str, Any] = {"active": True}
    if answer.scopes is not None:
        members["scope"] = format_scope(answer.scopes)
    for name in ("client_id", "username", "token_type", "exp", "iat", "nbf", "sub", "aud"):
        value = getattr(answer, name)
        if value is not None:
            members[name] = int(value) if isinstance(value, float) and value.is_integer() else value
    for name in ("iss", "jti"):
        value = getattr(answer, name)
        if value is not None:
            members[name] = value
    return {**members, **answer.extra}


def main_token_command(args: argparse.Namespace) -> int:
    """`run_token_command` on the process's own streams and environment."""
    return run_token_command(
        args, environ=os.environ, stdin=sys.stdin, stdout=sys.stdout, stderr=sys.stderr
    )
