"""What the token manager stores, and the pure rules that say whether a token is usable."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any, Literal

from oauth2_token_operator.oauth2.responses import Introspection
from oauth2_token_operator.oauth2.scopes import Scopes
from oauth2_token_operator.util.interning import intern_fields


class Flow(enum.Enum):
    CLIENT_CREDENTIALS = "client_credentials"


CLIENT_CREDENTIALS = Flow.CLIENT_CREDENTIALS
"""The 'subject' of tokens a client obtains for itself (the seed's ``:client_credentials``)."""

Subject = str | Literal[Flow.CLIENT_CREDENTIALS]


@dataclass(frozen=True, slots=True)
class TokenKey:
    """Whose tokens: one subject (or the client itself) at one issuer through one client."""

    issuer: str
    subject: Subject
    client_id: str
    partition: str = ""
    """The client configuration's `token_partition`: tokens are shared only within one."""


@dataclass(frozen=True, slots=True)
class TokenSpec:
    """What a token is requested for. ``get`` hands out a stored token only for the
    same spec (see ``matches``); ``scopes=None`` asks for any scopes."""

    scopes: Scopes | None
    resources: frozenset[str] = frozenset()
    """RFC 8707 resources."""
    audience: str | None = None
    """The ``audience`` parameter (a common extension)."""


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What the server said about a token (RFC 7662 members) beyond what
    ``AccessToken`` keeps in its own fields, which are the only copy of its scopes,
    expiry, not-before time and activity."""

    client_id: str | None = None
    username: str | None = None
    sub: str | None = None
    aud: str | list[str] | None = field(default=None, hash=False)
    iss: str | None = None
    jti: str | None = None
    iat: float | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False, hash=False)

    @classmethod
    def of(cls, info: Introspection) -> TokenClaims:
        return cls(
            client_id=info.client_id,
            username=info.username,
            sub=info.sub,
            aud=info.aud,
            iss=info.iss,
            jti=info.jti,
            iat=info.iat,
            extra=info.extra,
        )


@dataclass(frozen=True, slots=True)
class AccessToken:
    value: str = field(repr=False)
    token_type: str
    key: TokenKey
    scopes: Scopes
    """Granted scopes (echoed by the server, introspected, or the requested ones)."""
    obtained_at: float
    """When it was obtained or registered (epoch seconds)."""
    expires_at: float | None
    """``exp``; ``None`` when the server said nothing about expiry."""
    requested_scopes: Scopes | None = None
    """What ``get`` asked for, when it obtained the token (servers may drop unknown scopes)."""
    resources: frozenset[str] = frozenset()
    """RFC 8707 resources it was requested for."""
    audience: str | None = None
    """The ``audience`` parameter it was requested with (a common extension)."""
    not_before: float | None = None
    active: bool | None = None
    """The last introspection answer; ``None`` when never introspected."""
    claims: TokenClaims | None = field(default=None, repr=False)
    """The server's other statements about it; ``None`` for a token we obtained ourselves."""
    confirmed_at: float | None = None
    """When the server last vouched for it (issuance, registration or introspection)."""

    def __post_init__(self) -> None:
        # Thousands of stored tokens share a few keys and scope sets: keep one copy each.
        intern_fields(self, "token_type", "key", "scopes", "requested_scopes", "resources")

    @property
    def issued_at(self) -> float:
        """``iat`` when the server stated it, else when we obtained the token."""
        if self.claims is not None and self.claims.iat is not None:
            return self.claims.iat
        return self.obtained_at

    def introspection(self) -> Introspection:
        """What we know, shaped as an RFC 7662 answer."""
        if self.active is False:
            return Introspection(active=False)  # RFC 7662 §2.2: nothing else is to be trusted
        claims = self.claims or TokenClaims(
            client_id=self.key.client_id,
            sub=None if self.key.subject is CLIENT_CREDENTIALS else str(self.key.subject),
            iss=self.key.issuer,
            iat=self.obtained_at,
        )
        return Introspection(
            active=True,
            scopes=self.scopes,
            client_id=claims.client_id,
            username=claims.username,
            token_type=self.token_type,
            exp=self.expires_at,
            iat=claims.iat,
            nbf=self.not_before,
            sub=claims.sub,
            aud=claims.aud,
            iss=claims.iss,
            jti=claims.jti,
            extra=claims.extra,
        )


def with_introspection(token: AccessToken, info: Introspection, now: float) -> AccessToken:
    """``token`` updated with the server's introspection answer ``info`` received at ``now``."""
    if not info.active:
        return dataclasses.replace(token, active=False, confirmed_at=now)
    return dataclasses.replace(
        token,
        active=True,
        confirmed_at=now,
        expires_at=info.exp if info.exp is not None else token.expires_at,
        not_before=info.nbf if info.nbf is not None else token.not_before,
        scopes=info.scopes if info.scopes is not None else token.scopes,
        claims=TokenClaims.of(info),
    )


@dataclass(frozen=True, slots=True)
class RefreshToken:
    value: str = field(repr=False)
    key: TokenKey
    scopes: Scopes
    """The scope of the grant; a rotated successor keeps it (RFC 6749 §6)."""
    obtained_at: float

    def __post_init__(self) -> None:
        intern_fields(self, "key", "scopes")


class TokenState(enum.Enum):
    VALID = "valid"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    INACTIVE = "inactive"


@dataclass(frozen=True)
class ValidityPolicy:
    clock_skew: float = 30.0
    """Seconds by which our clock and the server's may differ; applied to exp and nbf."""
    max_margin_fraction: float = 0.1
    """The margin before ``exp`` is ``clock_skew``, but never more than this fraction of
    the token's lifetime: a token living less than the skew is still reused for most of
    its life (9/10 by default: a 20 s token for 18 s) instead of counting as expired from
    the start, while a token living at least ``clock_skew / max_margin_fraction`` (300 s
    by default) keeps the full skew."""
    unknown_expiry_lifetime: float = 300.0
    """How long a token whose server gave no expiry is trusted after it was last confirmed
    (issued, registered or introspected active). Never forever."""


@dataclass(frozen=True)
class Validity:
    state: TokenState
    usable_until: float | None
    """When the token stops being usable under the policy (margin and assumptions applied)."""

    @property
    def usable(self) -> bool:
        return self.state is TokenState.VALID


def expiry_margin(lifetime: float, policy: ValidityPolicy) -> float:
    """Seconds before ``exp`` from which a token of ``lifetime`` seconds counts as expired."""
    return min(policy.clock_skew, policy.max_margin_fraction * max(0.0, lifetime))


def assess_validity(token: AccessToken, now: float, policy: ValidityPolicy) -> Validity:
    """Whether ``token`` may be handed out at ``now``. Pure: no I/O, no clock."""
    if token.expires_at is not None:
        lifetime = token.expires_at - token.issued_at
        usable_until = token.expires_at - expiry_margin(lifetime, policy)
    else:
        confirmed = token.confirmed_at if token.confirmed_at is not None else token.obtained_at
        usable_until = confirmed + policy.unknown_expiry_lifetime
    if token.active is False:
        return Validity(TokenState.INACTIVE, None)
    if now >= usable_until:
        return Validity(TokenState.EXPIRED, usable_until)
    if token.not_before is not None and now < token.not_before - policy.clock_skew:
        return Validity(TokenState.NOT_YET_VALID, usable_until)
    return Validity(TokenState.VALID, usable_until)


def is_dead(token: AccessToken, validity: Validity, now: float) -> bool:
    """Worth forgetting: inactive, past its real ``exp`` (not merely inside the skew
    margin, where the server still accepts it), or of unknown expiry and no longer trusted."""
    if validity.state is TokenState.INACTIVE:
        return True
    if token.expires_at is not None:
        return now >= token.expires_at
    return validity.state is TokenState.EXPIRED


def matches(token: AccessToken, spec: TokenSpec) -> bool:
    """Whether ``token`` was obtained (or registered) for what ``spec`` asks."""
    return (
        token.resources == spec.resources
        and token.audience == spec.audience
        and scopes_match(token, spec.scopes)
    )


def scopes_match(token: AccessToken, requested: Scopes | None) -> bool:
    """The seed's exact matching: ``None`` = any scopes; otherwise the very same set.

    A token obtained for a request matches that request again even when the
    server granted less (unknown scopes are often silently dropped): asking
    again would only yield the same token and loop.
    """
    if requested is None:
        return True
    return token.scopes == requested or token.requested_scopes == requested


def refresh_token_covers(refresh_token: RefreshToken, requested: Scopes | None) -> bool:
    """A refresh token can serve a request for a subset of its grant's scopes."""
    return requested is None or requested <= refresh_token.scopes
