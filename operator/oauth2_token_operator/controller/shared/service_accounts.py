"""ServiceAccount tokens, as client assertions (`service_account_token`) and as the
subject tokens of token exchanges (`tokenExchange.subjectTokenFrom.serviceAccountRef`):
minted with the TokenRequest API, kept in memory only, reused for most of their life.

Each token has one audience (the authorization server's, never the API server's:
`policies.service_accounts`) and the shortest lifetime the API server grants
(`MIN_EXPIRATION_SECONDS`, 10 minutes); it is handed out until `RENEW_AT` of its life
has passed, then minted again, so a server never gets one about to expire. It is
written nowhere (no Secret, status, Event, log line or exception text): a restart
mints a new one.

Before each use the ServiceAccount is read again (through the credentials' short
cache): one deleted, or whose opt-in label was removed, gets no more tokens, even while
one minted for it would still be valid; one deleted and created again under the same
name (another uid) gets a new token.

The `ClientConfig` of such a client holds a `ServiceAccountAssertions` source, equal to
every other for the same ServiceAccount and audience: a re-minted token is no new
configuration, so the client's stored tokens, protocol client and connection pools stay.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from pydantic import SecretStr

from oauth2_token_operator.client_config import (
    SERVICE_ACCOUNT,
    UID,
    ClientConfigError,
    Found,
    SecretKey,
    collect_values,
)
from oauth2_token_operator.kube.api import KubeApi, KubeApiError
from oauth2_token_operator.oauth2.client_auth import ClientAssertionSource
from oauth2_token_operator.policies.service_accounts import (
    AUDIENCE_NOT_ALLOWED,
    MIN_EXPIRATION_SECONDS,
    audience_refusal,
)

log = logging.getLogger(__name__)

TOKEN_REQUEST_FAILED = "ServiceAccountTokenFailed"  # noqa: S105 - a condition reason
REVOCATION = "revocation_endpoint"
RENEW_AT = 0.8
"""A token is minted again once this fraction of its life has passed."""

Read = Callable[[str, list[SecretKey]], Awaitable[dict[tuple[str, str], Found]]]
"""`CredentialReader.objects`."""
AccountKey = tuple[str, str, str]
"""(namespace, ServiceAccount name, audience)."""


@dataclass(frozen=True)
class _Minted:
    token: SecretStr
    uid: str
    renew_at: float
    expires_at: float


class ServiceAccountTokens:
    """The ServiceAccount tokens of every `service_account_token` client and every
    exchange of a ServiceAccount's token (one token per ServiceAccount and audience,
    whichever uses it)."""

    def __init__(
        self,
        kube: KubeApi,
        read: Read,
        *,
        api_audiences: tuple[str, ...],
        clock: Callable[[], float] = time.time,
        expiration_seconds: int = MIN_EXPIRATION_SECONDS,
    ) -> None:
        self._kube = kube
        self._read = read
        self.api_audiences = api_audiences
        self._clock = clock
        self._expiration_seconds = expiration_seconds
        self._minted: dict[AccountKey, _Minted] = {}
        self._locks: dict[AccountKey, asyncio.Lock] = {}
        self.mints = 0
        """Tokens minted so far (a count, for tests and metrics; never a token)."""

    def check_audience(self, audience: str) -> None:
        """`ClientConfigError` (`AudienceNotAllowed`) for an audience the API server
        accepts."""
        refusal = audience_refusal(audience, self.api_audiences)
        if refusal is not None:
            raise ClientConfigError(AUDIENCE_NOT_ALLOWED, refusal)

    async def check(self, account: AccountKey) -> str:
        """The ServiceAccount's uid if a token of it may be minted for the audience;
        `ClientConfigError` otherwise (`AudienceNotAllowed`, or the ServiceAccount
        missing or without the opt-in label). Mints nothing."""
        namespace, name, audience = account
        self.check_audience(audience)
        key = SecretKey(SERVICE_ACCOUNT, name, UID)
        return collect_values([key], await self._read(namespace, [key]))[key]

    def source(self, namespace: str, name: str, audience: str) -> ServiceAccountAssertions:
        """The assertion source of clients authenticating as this ServiceAccount."""
        return ServiceAccountAssertions(self, (namespace, name, audience))

    async def token(self, account: AccountKey, *, revoking: bool = False) -> str:
        """A token of the ServiceAccount for the audience: the one in memory while it is
        fresh and the ServiceAccount still the same and usable, else a new one.

        `revoking`: for a revocation, a ServiceAccount deleted meanwhile (its namespace
        going, say) still lends the token minted while it existed, until that expires:
        the tokens obtained with it are revoked rather than left to expire. Nothing is
        minted for a ServiceAccount that is not there, and one that lost its label lends
        nothing."""
        namespace, name, audience = account
        try:
            uid = await self.check(account)
        except ClientConfigError as exc:
            held = self._minted.get(account)
            gone = exc.reason == f"{SERVICE_ACCOUNT}NotFound"
            if revoking and gone and held is not None and self._clock() < held.expires_at:
                return held.token.get_secret_value()
            raise
        fresh = self._fresh(account, uid)
        if fresh is not None:
            return fresh
        lock = self._locks.setdefault(account, asyncio.Lock())
        async with lock:  # concurrent callers share one TokenRequest
            fresh = self._fresh(account, uid)
            if fresh is not None:
                return fresh
            minted = await self._mint(namespace, name, audience, uid)
            self._prune()
            self._minted[account] = minted
            return minted.token.get_secret_value()

    def _fresh(self, account: AccountKey, uid: str) -> str | None:
        minted = self._minted.get(account)
        if minted is None or minted.uid != uid or self._clock() >= minted.renew_at:
            return None
        return minted.token.get_secret_value()

    async def _mint(self, namespace: str, name: str, audience: str, uid: str) -> _Minted:
        asked = self._clock()
        try:
            answer = await self._kube.create_service_account_token(
                namespace, name, audience=audience, expiration_seconds=self._expiration_seconds
            )
        except KubeApiError as exc:  # its text: the call, the status and reason only
            raise ClientConfigError(TOKEN_REQUEST_FAILED, str(exc)) from None
        status = answer.get("status") if isinstance(answer, dict) else None
        token = status.get("token") if isinstance(status, dict) else None
        if not isinstance(token, str) or not token:
            raise ClientConfigError(
                TOKEN_REQUEST_FAILED,
                f"the TokenRequest for ServiceAccount {namespace}/{name} returned no token",
            )
        lifetime = float(self._expiration_seconds)
        expires = _timestamp(status.get("expirationTimestamp") if status else None)
        if expires is not None:
            # Never longer than asked for (an API server may extend tokens' lives).
            lifetime = max(0.0, min(lifetime, expires - asked))
        self.mints += 1
        log.info("minted a token of ServiceAccount %s/%s for %s (valid %.0fs)",
                 namespace, name, audience, lifetime)  # fmt: skip
        return _Minted(
            token=SecretStr(token),
            uid=uid,
            renew_at=asked + RENEW_AT * lifetime,
            expires_at=asked + lifetime,
        )

    def _prune(self) -> None:
        """Forget tokens past their expiry (clients deleted or no longer using them)."""
        now = self._clock()
        for account in [a for a, m in self._minted.items() if m.expires_at <= now]:
            del self._minted[account]
            lock = self._locks.get(account)
            if lock is not None and not lock.locked():
                del self._locks[account]

    def minted_for(self) -> set[AccountKey]:
        """The ServiceAccounts (and audiences) a token is held for (never a token)."""
        return set(self._minted)

    def __len__(self) -> int:
        """Tokens held in memory."""
        return len(self._minted)


class ServiceAccountAssertions(ClientAssertionSource):
    """A ServiceAccount's tokens as one client's assertions (equal for the same
    ServiceAccount and audience, whatever token is current)."""

    def __init__(self, tokens: ServiceAccountTokens, account: AccountKey) -> None:
        namespace, name, audience = account
        super().__init__(f"serviceaccount {namespace}/{name} audience {audience}")
        self._tokens = tokens
        self._account = account

    async def assertion(self, *, endpoint: str = "token_endpoint") -> str:
        return await self._tokens.token(self._account, revoking=endpoint == REVOCATION)


def _timestamp(value: object) -> float | None:
    """An RFC 3339 time of the API server (`2026-12-07T18:00:00Z`) in epoch seconds."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
