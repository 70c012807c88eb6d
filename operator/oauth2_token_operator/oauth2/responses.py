"""Validated token (RFC 6749 §5.1) and introspection (RFC 7662 §2.2) responses."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from oauth2_token_operator.oauth2.errors import MalformedResponseError
from oauth2_token_operator.oauth2.scopes import Scopes, parse_scope

_TOKEN_FIELDS = frozenset({"access_token", "token_type", "expires_in", "scope", "refresh_token"})
_INTROSPECTION_FIELDS = frozenset(
    {"active", "scope", "client_id", "username", "token_type", "exp", "iat", "nbf", "sub", "aud",
     "iss", "jti"}
)  # fmt: skip


@dataclass(frozen=True)
class TokenResponse:
    """A successful token response. Secrets are left out of ``repr``."""

    access_token: str = field(repr=False)
    token_type: str
    issued_at: float
    expires_at: float | None
    """Absolute expiry (``issued_at + expires_in``); ``None`` when the server gave none."""
    scopes: Scopes
    """The granted scopes: echoed by the server, or the requested ones (RFC 6749 §5.1)."""
    scope_echoed: bool
    refresh_token: str | None = field(default=None, repr=False)
    extra: dict[str, Any] = field(default_factory=dict, repr=False)
    """Every other member (id_token, issued_token_type, ...)."""


def parse_token_response(
    body: object, *, endpoint: str, requested_scopes: Scopes | None, now: float
) -> TokenResponse:
    if not isinstance(body, dict):
        raise MalformedResponseError("token response is not a JSON object", endpoint=endpoint)
    access_token = body.get("access_token")
    token_type = body.get("token_type")
    if not isinstance(access_token, str) or not access_token:
        raise MalformedResponseError("token response has no access_token", endpoint=endpoint)
    if not isinstance(token_type, str) or not token_type:
        raise MalformedResponseError("token response has no token_type", endpoint=endpoint)
    expires_in = body.get("expires_in")
    if expires_in is not None:
        # Some servers send a numeric string; anything else is malformed.
        try:
            expires_in = float(expires_in)
        except (TypeError, ValueError):
            raise MalformedResponseError("expires_in is not a number", endpoint=endpoint) from None
        if expires_in < 0:
            raise MalformedResponseError("expires_in is negative", endpoint=endpoint)
    scope = body.get("scope")
    if scope is not None and not isinstance(scope, str):
        raise MalformedResponseError("scope is not a string", endpoint=endpoint)
    try:
        echoed = parse_scope(scope) if scope is not None else None
    except ValueError as exc:
        raise MalformedResponseError(str(exc), endpoint=endpoint) from None
    refresh_token = body.get("refresh_token")
    if refresh_token is not None and (not isinstance(refresh_token, str) or not refresh_token):
        raise MalformedResponseError("refresh_token is not a string", endpoint=endpoint)
    return TokenResponse(
        access_token=access_token,
        # RFC 6749 §5.1: the type is case insensitive; keep the canonical spelling.
        token_type="Bearer" if token_type.lower() == "bearer" else token_type,
        issued_at=now,
        expires_at=None if expires_in is None else now + expires_in,
        scopes=echoed if echoed is not None else (requested_scopes or frozenset()),
        scope_echoed=echoed is not None,
        refresh_token=refresh_token,
        extra={k: v for k, v in body.items() if k not in _TOKEN_FIELDS},
    )


@dataclass(frozen=True)
class Introspection:
    """RFC 7662 §2.2 answer. Only ``active`` is required by the RFC."""

    active: bool
    scopes: Scopes | None = None
    client_id: str | None = None
    username: str | None = None
    token_type: str | None = None
    exp: float | None = None
    iat: float | None = None
    nbf: float | None = None
    sub: str | None = None
    aud: str | list[str] | None = None
    iss: str | None = None
    jti: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)


def parse_introspection(body: object, *, endpoint: str) -> Introspection:
    if not isinstance(body, dict):
        raise MalformedResponseError("introspection answer is not a JSON object", endpoint=endpoint)
    active = body.get("active")
    if not isinstance(active, bool):
        raise MalformedResponseError(
            "introspection answer has no boolean 'active'", endpoint=endpoint
        )
    if not active:
        # RFC 7662 §2.2: nothing else about an inactive token is to be trusted.
        return Introspection(active=False)

    def number(name: str) -> float | None:
        value = body.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise MalformedResponseError(f"'{name}' is not a number", endpoint=endpoint)
        return float(value)

    def text(name: str) -> str | None:
        value = body.get(name)
        if value is None or isinstance(value, str):
            return value
        raise MalformedResponseError(f"'{name}' is not a string", endpoint=endpoint)

    aud = body.get("aud")
    if aud is not None and not (
        isinstance(aud, str) or (isinstance(aud, list) and all(isinstance(a, str) for a in aud))
    ):
        raise MalformedResponseError("'aud' is not a string or list of strings", endpoint=endpoint)
    scope = text("scope")
    try:
        scopes = parse_scope(scope) if scope is not None else None
    except ValueError as exc:
        raise MalformedResponseError(str(exc), endpoint=endpoint) from None
    return Introspection(
        active=True,
        scopes=scopes,
        client_id=text("client_id"),
        username=text("username"),
        token_type=text("token_type"),
        exp=number("exp"),
        iat=number("iat"),
        nbf=number("nbf"),
        sub=text("sub"),
        aud=aud,
        iss=text("iss"),
        jti=text("jti"),
        extra={k: v for k, v in body.items() if k not in _INTROSPECTION_FIELDS},
    )


MAX_SUBJECT = 255
"""Characters of a `sub` shown in status; a longer one is not shown."""


def unverified_subject(access_token: str) -> str | None:
    """The `sub` claim of a JWT access token (RFC 9068), read without verifying it: only
    shown (`status.subject`), never used to decide anything. `None` for an opaque token,
    or a claim that is not a short string."""
    parts = access_token.split(".")
    if len(parts) != 3 or not parts[1] or len(parts[1]) > 16_384:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    sub = payload.get("sub") if isinstance(payload, dict) else None
    return sub if isinstance(sub, str) and 0 < len(sub) <= MAX_SUBJECT else None
