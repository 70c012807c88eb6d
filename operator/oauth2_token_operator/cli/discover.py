"""`oauth2-token-operator discover`: fetches and validates an authorization server's
metadata exactly as the operator does (RFC 8414, then OpenID Connect discovery; exact
issuer match; https unless ``--allow-insecure-http``) and prints, as JSON, the fields the
operator uses. It is the first thing to try when an ``OAuth2Client`` reports a discovery
error."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from oauth2_token_operator.cli.tokens import said
from oauth2_token_operator.oauth2.errors import OAuth2Error
from oauth2_token_operator.oauth2.metadata import IssuerConfig, MetadataCache
from oauth2_token_operator.oauth2.transport import OAuth2Transport


def add_discover_command(commands: Any) -> None:
    """Add `discover` to the CLI's subcommands."""
    parser = commands.add_parser("discover", help="fetch and validate server metadata")
    parser.add_argument("issuer", help="the issuer identifier, e.g. https://login.example.com")
    parser.add_argument("--ca-file", type=Path, help="PEM bundle that verifies the server")
    parser.add_argument(
        "--allow-insecure-http", action="store_true", help="accept plain http (testing only)"
    )


async def discover(args: argparse.Namespace) -> int:
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
