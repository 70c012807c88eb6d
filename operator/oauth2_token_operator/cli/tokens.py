"""`oauth2-token-operator get | refresh | introspect | revoke`: the token library at the
shell.

Each command builds one `TokenManager` (in-memory store), makes one call and prints the
answer. The client comes from flags or from an `OAuth2Client` manifest (`cli.client`).
`get` and `refresh` print the token response they received, members the core does not
interpret included (Keycloak's `refresh_expires_in`, `session_state`, ...): a one-shot
command keeps no store, so they ask the server directly.

Exit codes: 0 done, 1 the OAuth2 call failed (the reason on stderr), 2 usage. Nothing
secret is ever written to stderr; `get` and `refresh` write the access token to stdout on
purpose, and `--json` the whole response (any refresh or ID token in it too).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from oauth2_token_operator.cli.client import Client, UsageError, add_client_arguments, load_client
from oauth2_token_operator.manager import InMemoryTokenStore, TokenKind, TokenManager
from oauth2_token_operator.oauth2.authorization_server import ACCESS_TOKEN_HINT
from oauth2_token_operator.oauth2.errors import OAuth2Error
from oauth2_token_operator.oauth2.responses import Introspection, TokenResponse
from oauth2_token_operator.oauth2.scopes import format_scope, parse_scope, validate_scopes
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
        "(RFC 6749 section 5.1, the server's own members included, plus expires_at)\n"
        "on stdout.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    add_client_arguments(get)
    request = _request_arguments(get)
    request.add_argument("--audience", help="the audience parameter some servers take")
    _output_arguments(get)

    refresh = commands.add_parser(
        "refresh",
        help="obtain an access token with a refresh token (refresh_token grant)",
        description="Obtain an access token with the refresh_token grant (RFC 6749\n"
        "section 6). The refresh token is read from stdin (the default) or from\n"
        "--refresh-token-file, never from the command line, which the process list shows.\n\n"
        "A server that rotates refresh tokens sends a new one and refuses the old one\n"
        "from then on: it is written back into --refresh-token-file (replaced atomically),\n"
        "or, with a refresh token from stdin, printed in the --json response, which is\n"
        "therefore required then. Output as for get.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    refresh.add_argument(
        "--refresh-token-file",
        type=Path,
        metavar="PATH",
        help="read the refresh token from this file (surrounding whitespace ignored) and"
        " write a rotated one back into it; default: read it from stdin",
    )
    add_client_arguments(refresh)
    _request_arguments(refresh, scope_help="narrow the grant's scope to SCOPE (repeat, or"
                       " space-separated); default: the scope of the grant")  # fmt: skip
    _output_arguments(refresh)

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


def _request_arguments(
    parser: argparse.ArgumentParser,
    scope_help: str = "scope to request (repeat, or space-separated); default: the"
    " manifest's defaultScopes, else none",
) -> Any:
    request = parser.add_argument_group("the request")
    request.add_argument("--scope", action="extend", type=_scopes, metavar="SCOPE", help=scope_help)
    request.add_argument(
        "--resource", action="append", default=[], metavar="URI", help="RFC 8707 (repeat)"
    )
    return request


def _output_arguments(parser: argparse.ArgumentParser) -> None:
    output = parser.add_argument_group("output")
    output.add_argument("--json", action="store_true", help="the token response as JSON")
    output.add_argument(
        "-q", "--quiet", action="store_true", help="nothing on stderr unless it fails"
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
    """Carry out `get`, `refresh`, `introspect` or `revoke`; return the exit code."""
    try:
        client = load_client(args, environ)
        token = ""
        if args.command == "refresh":
            token = _refresh_token_input(args, stdin)
        elif args.command != "get":
            token = _token_argument(args, stdin, stderr)
    except UsageError as exc:
        print(f"oauth2-token-operator {args.command}: error: {exc}", file=stderr)
        return EXIT_USAGE
    try:
        if args.command == "get":
            _print_token(asyncio.run(_get(args, client)), args, stdout, stderr)
        elif args.command == "refresh":
            response = asyncio.run(_refresh(token, args, client))
            if not _keep_rotated(token, response, args, stderr):
                return EXIT_OAUTH2_ERROR
            _print_token(response, args, stdout, stderr)
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


def _refresh_token_input(args: argparse.Namespace, stdin: IO[str]) -> str:
    """The refresh token to use, from --refresh-token-file or stdin. From stdin, a rotated
    successor could only go to stdout: `--json` is required then."""
    path: Path | None = args.refresh_token_file
    if path is None:
        if not args.json:
            raise UsageError(
                "a refresh token read from stdin needs --json, whose output carries a rotated"
                " refresh token (the one read is spent then); or use --refresh-token-file,"
                " into which it is written back"
            )
        token, where = stdin.read().strip(), " (nothing on stdin)"
    else:
        try:
            token = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--refresh-token-file: cannot read {path}: {exc}") from None
        where = f" (in {path})"
    if not token:
        raise UsageError("the refresh token is empty" + where)
    return token


def _keep_rotated(
    used: str, response: TokenResponse, args: argparse.Namespace, stderr: IO[str]
) -> bool:
    """Write a rotated refresh token back into --refresh-token-file (from stdin, --json
    prints it). False when that write failed: the new token is then lost, and said so."""
    path: Path | None = args.refresh_token_file
    rotated = response.refresh_token
    if path is None or rotated is None or rotated == used:
        return True
    try:
        replace_file(path, rotated)
    except OSError as exc:
        print(
            f"error: the server rotated the refresh token, and writing it to {path} failed"
            f" ({exc.strerror}): the one in the file is spent, the grant is lost",
            file=stderr,
        )
        return False
    if not args.quiet:
        print(f"the server rotated the refresh token: the new one is in {path}", file=stderr)
    return True


def replace_file(path: Path, token: str) -> None:
    """Replace `path`'s content with `token` (a final line break kept as it was) in one
    step: a temporary file beside it, readable by its owner only unless the old file
    allowed more, renamed over it. A crash leaves the old file or the new one, never half."""
    old = path.read_text(encoding="utf-8")
    mode = path.stat().st_mode & 0o777
    ending = "\n" if old.endswith("\n") else ""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            os.fchmod(file.fileno(), mode)
            file.write(token + ending)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


async def _get(args: argparse.Namespace, client: Client) -> TokenResponse:
    scopes = args.scope if args.scope is not None else client.default_scopes
    async with TokenManager(InMemoryTokenStore()) as tokens:
        return await tokens.server(client.issuer, client.config).client_credentials(
            None if scopes is None else validate_scopes(scopes),
            resources=args.resource,
            audience=args.audience,
        )


async def _refresh(refresh_token: str, args: argparse.Namespace, client: Client) -> TokenResponse:
    # The manager's refresh is per subject (its store and refresh lock); a one-shot
    # command has neither, so it asks the server directly, as `revoke --hint` does.
    scopes = None if args.scope is None else validate_scopes(args.scope)
    async with TokenManager(InMemoryTokenStore()) as tokens:
        return await tokens.server(client.issuer, client.config).refresh(
            refresh_token, scopes=scopes, resources=args.resource
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


def token_json(token: TokenResponse, now: float) -> dict[str, Any]:
    """The token response as received (RFC 6749 §5.1, every member the server sent,
    a refresh or ID token included), the granted scope always stated, plus `expires_at`
    (RFC 3339)."""
    answer: dict[str, Any] = {
        "access_token": token.access_token,
        "token_type": token.token_type,
        "scope": format_scope(token.scopes),
    }
    if token.expires_at is not None:
        answer["expires_in"] = max(0, round(token.expires_at - now))
        answer["expires_at"] = rfc3339(token.expires_at)
    if token.refresh_token is not None:
        answer["refresh_token"] = token.refresh_token
    return {**answer, **{k: v for k, v in token.extra.items() if k not in answer}}


def token_summary(token: TokenResponse) -> str:
    """The token's non-secret facts, one line."""
    expires = "never stated" if token.expires_at is None else rfc3339(token.expires_at)
    scope = format_scope(token.scopes) or "(none)"
    return f"token_type: {token.token_type}  expires_at: {expires}  scope: {scope}"


def _print_token(
    token: TokenResponse, args: argparse.Namespace, stdout: IO[str], stderr: IO[str]
) -> None:
    if args.json:
        now = datetime.now(UTC).timestamp()
        print(json.dumps(token_json(token, now), indent=2), file=stdout)
        return
    print(token.access_token, file=stdout)
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
