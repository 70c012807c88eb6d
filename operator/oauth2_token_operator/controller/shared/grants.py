"""How each grant obtains its token, and whose token it is.

- `client_credentials`: the client's own token (RFC 6749 §4.4).
- `refresh_token`: the subject is the Secret key holding the refresh token; the token
  is read from it at issuance, and a rotated one is written back there (see
  `refresh_tokens`) before the new access token is published.
- `token_exchange`: the subject is the AccessTokenRequest or ServiceAccount whose token
  is exchanged (`exchange`); the exchanged token lives its own life, whatever that
  request's token does meanwhile.
- `register`: a token obtained elsewhere, read from the user's Secret, introspected and
  tracked; nobody can renew it. Its fingerprint includes a digest of the token, so a
  new token in the source Secret is registered anew.
"""

from __future__ import annotations

import hashlib
from typing import TypedDict

from oauth2_token_operator.api import AccessTokenRequestSpec
from oauth2_token_operator.api.references import SecretKeySelector
from oauth2_token_operator.client_config import (
    SERVICE_ACCOUNT,
    UID,
    ClientConfigError,
    SecretKey,
    collect_values,
)
from oauth2_token_operator.controller.shared.credentials import CredentialReader
from oauth2_token_operator.manager import CLIENT_CREDENTIALS, AccessToken, TokenManager
from oauth2_token_operator.oauth2.client_auth import ClientConfig
from oauth2_token_operator.oauth2.errors import SpentRefreshTokenError
from oauth2_token_operator.oauth2.metadata import IssuerConfig
from oauth2_token_operator.policies.identity import TokenIdentity

REFRESH_SUBJECT_PREFIX = "secret:"
REGISTERED_SUBJECT_PREFIX = "registered:"
EXCHANGE_SUBJECT_PREFIX = "exchange:"
SERVICE_ACCOUNT_SUBJECT = "serviceaccount:"
"""After `EXCHANGE_SUBJECT_PREFIX`: the subject token is a ServiceAccount's (an
AccessTokenRequest name cannot hold a colon)."""

RENEWABLE = frozenset({"client_credentials", "refresh_token", "token_exchange"})


def source_ref(spec: AccessTokenRequestSpec) -> SecretKeySelector | None:
    """The user's Secret key the grant reads (refresh token, or registered token)."""
    if spec.grant == "refresh_token":
        return spec.refresh_token_secret_ref
    if spec.grant == "register":
        return spec.token_secret_ref
    return None


def subject_account(spec: AccessTokenRequestSpec) -> SecretKey | None:
    """The ServiceAccount (in the request's namespace) whose token a `token_exchange`
    exchanges, as a key read like a client's ServiceAccount."""
    if (
        spec.token_exchange is None
        or spec.token_exchange.subject_token_from.service_account_ref is None
    ):
        return None
    return SecretKey(
        SERVICE_ACCOUNT, spec.token_exchange.subject_token_from.service_account_ref.name, UID
    )


def subject_of(spec: AccessTokenRequestSpec, namespace: str) -> str | None:
    """Whose token: `None` for the client itself, the subject request for
    `token_exchange`, else the source Secret key."""
    if spec.token_exchange is not None:
        source = spec.token_exchange.subject_token_from
        account = source.service_account_ref
        if account is not None:
            audience = "" if account.audience is None else f"#{account.audience}"
            where = f"{SERVICE_ACCOUNT_SUBJECT}{namespace}/{account.name}{audience}"
            return f"{EXCHANGE_SUBJECT_PREFIX}{where}"
        assert source.access_token_request_ref is not None  # one of the two (the model)
        return f"{EXCHANGE_SUBJECT_PREFIX}{namespace}/{source.access_token_request_ref.name}"
    ref = source_ref(spec)
    if ref is None:
        return None
    prefix = REFRESH_SUBJECT_PREFIX if spec.grant == "refresh_token" else REGISTERED_SUBJECT_PREFIX
    return f"{prefix}{namespace}/{ref.name}#{ref.key}"


def parse_refresh_subject(subject: str) -> tuple[str, str, str] | None:
    """`(namespace, name, key)` of a refresh-token subject, else `None`."""
    if not subject.startswith(REFRESH_SUBJECT_PREFIX):
        return None
    location, _, key = subject.removeprefix(REFRESH_SUBJECT_PREFIX).partition("#")
    namespace, _, name = location.partition("/")
    return (namespace, name, key) if namespace and name and key else None


async def read_source(credentials: CredentialReader, namespace: str, ref: SecretKeySelector) -> str:
    """The value in the user's Secret; `ClientConfigError` (a condition reason) if absent."""
    key = SecretKey("Secret", ref.name, ref.key)
    values = collect_values([key], await credentials.objects(namespace, [key]))
    return values[key].strip()


def digest(value: str) -> str:
    """Identifies a registered token in a fingerprint without revealing it."""
    return hashlib.sha256(value.encode()).hexdigest()[:16]


class Target(TypedDict):
    """What a token is asked for, as the manager's `get` and `exchange` take it."""

    scopes: tuple[str, ...] | None
    resources: tuple[str, ...]
    audience: str | None
    min_remaining: float


def target(identity: TokenIdentity, min_remaining: float) -> Target:
    """The scopes, resources and audience `identity` asks for, and how long the token
    must still be valid."""
    return Target(
        scopes=identity.scopes,
        resources=identity.resources,
        audience=identity.audience,
        min_remaining=min_remaining,
    )


async def obtain(
    manager: TokenManager,
    identity: TokenIdentity,
    *,
    source_value: str | None,
    issuer: IssuerConfig,
    client: ClientConfig,
    min_remaining: float,
) -> AccessToken:
    """A token for `identity` by its grant (but `token_exchange`: `exchange`)."""
    grant, subject, asked = identity.grant, identity.subject, target(identity, min_remaining)
    if grant == "client_credentials":
        return await manager.get(issuer, CLIENT_CREDENTIALS, client, **asked)
    if subject is None or source_value is None:
        raise ClientConfigError("SecretKeyMissing", f"the {grant} grant has no source value")
    if grant == "refresh_token":
        key = manager.key_for(issuer, subject, client)
        known = {rt.value for rt in await manager.refresh_tokens(key)}
        if source_value not in known:
            # A value the manager does not hold: a new one the user put in the Secret, or
            # a copy of one the operator rotated away (a read older than its own write).
            # The manager refuses the latter; its successor, held, is used instead.
            try:
                # The grant's scope is unknown: assume it covers what is asked (the
                # server answers invalid_scope otherwise).
                await manager.add_refresh_token(
                    source_value, issuer, subject, client, scopes=identity.scopes or ()
                )
            except SpentRefreshTokenError:
                if not known:
                    raise
        return await manager.get(issuer, subject, client, **asked)
    return await manager.register(source_value, issuer, client, subject=subject)
