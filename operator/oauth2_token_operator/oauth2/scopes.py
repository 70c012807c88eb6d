"""Scopes as sets of RFC 6749 §3.3 scope-tokens.

``scope = scope-token *( SP scope-token )``, ``scope-token = 1*( %x21 / %x23-5B / %x5D-7E )``:
printable ASCII except space, double quote and backslash. Order carries no
meaning, so scopes are kept as ``frozenset`` and written sorted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

Scopes = frozenset[str]

_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")


def is_scope_token(value: str) -> bool:
    return _SCOPE_TOKEN.fullmatch(value) is not None


def validate_scopes(scopes: Iterable[str]) -> Scopes:
    """Return the scopes as a set; raise ``ValueError`` naming the first bad token."""
    result = frozenset(scopes)
    for token in sorted(result):
        if not is_scope_token(token):
            raise ValueError(
                f"invalid scope token {token!r}: RFC 6749 §3.3 allows printable ASCII "
                "except space, double quote and backslash"
            )
    return result


def parse_scope(value: str | None) -> Scopes:
    """Parse a space-delimited ``scope`` parameter.

    Runs of spaces are tolerated (servers are not always strict), but every
    token must be a valid scope-token.
    """
    if value is None:
        return frozenset()
    return validate_scopes(token for token in value.split(" ") if token)


def format_scope(scopes: Iterable[str]) -> str:
    """Canonical ``scope`` parameter: sorted, single spaces."""
    return " ".join(sorted(frozenset(scopes)))
