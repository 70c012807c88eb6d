"""The token manager: the API of the seed library (the Elixir ``oauth2_token_manager``,
its ``OAuth2TokenManager.AccessToken`` module: get, register, introspect, revoke, delete,
delete_all), with its defects fixed (listed in the README), plus refresh-token calls."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from oauth2_token_operator.manager.keyed_locks import KeyedLocks
from oauth2_token_operator.manager.model import (
    CLIENT_CREDENTIALS,
    AccessToken,
    RefreshToken,
    Subject,
    TokenClaims,
    TokenKey,
    TokenSpec,
    ValidityPolicy,
    assess_validity,
    is_dead,
    matches,
    refresh_token_covers,
    with_introspection,
)
from oauth2_token_operator.manager.sharing import token_key
from oauth2_token_operator.manager.singleflight import SingleFlight
from oauth2_token_operator.manager.spent import SpentRefreshTokens
from oauth2_token_operator.manager.store import TokenStore
from oauth2_token_operator.oauth2.authorization_server import (
    ACCESS_TOKEN_HINT,
    ACCESS_TOKEN_TYPE,
    AuthorizationServer,
)
from oauth2_token_operator.oauth2.breaker import BreakerPolicy, CircuitBreakers
from oauth2_token_operator.oauth2.client_auth import ClientConfig
from oauth2_token_operator.oauth2.errors import (
    EndpointNotAdvertisedError,
    InactiveTokenError,
    InvalidGrantError,
    NoTokenAvailableError,
    OAuth2Error,
    SpentRefreshTokenError,
)
from oauth2_token_operator.oauth2.metadata import IssuerConfig, MetadataCache
from oauth2_token_operator.oauth2.responses import Introspection, TokenResponse, parse_introspection
from oauth2_token_operator.oauth2.scopes import Scopes, validate_scopes
from oauth2_token_operator.oauth2.tls import TLSConfig
from oauth2_token_operator.oauth2.transport import OAuth2Transport

log = logging.getLogger(__name__)


class TokenManagerConfig(BaseModel):
    """The seed's options, with its defaults, plus what it lacked."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    auto_introspect: bool = True
    min_introspect_interval: float = Field(default=30.0, ge=0)
    revoke_on_delete: bool = True
    clock_skew: float = Field(default=30.0, ge=0)
    max_margin_fraction: float = Field(default=0.1, ge=0, le=1)
    """The margin before expiry is ``clock_skew`` but at most this fraction of a token's
    lifetime (see ``ValidityPolicy``)."""
    unknown_expiry_lifetime: float = Field(default=300.0, gt=0)
    metadata_refresh_interval: float = Field(default=3600.0, gt=0)
    metadata_min_fetch_interval: float = Field(default=10.0, ge=0)
    max_cached_clients: int = Field(default=1024, ge=1)
    """Protocol clients (one per issuer and client configuration) kept for reuse; the
    least recently used beyond this are dropped (and rebuilt when needed again)."""
    prune_interval: float = Field(default=60.0, ge=0)
    """At most this often (seconds), storing a new token first sweeps dead tokens out of
    the whole store; lookups forget the dead tokens they meet at any time."""
    circuit_failures: int = Field(default=0, ge=0)
    """Failed calls in a row (no answer, or a 5xx) after which an endpoint's calls fail at
    once for a cool-down (``oauth2.breaker``); 0, the default: never."""
    circuit_cooldown: float = Field(default=10.0, gt=0)
    """The first cool-down; it doubles at each reopening, up to ``circuit_max_cooldown``."""
    circuit_max_cooldown: float = Field(default=300.0, gt=0)

    @property
    def breaker(self) -> BreakerPolicy:
        return BreakerPolicy(
            failures=self.circuit_failures,
            cooldown=self.circuit_cooldown,
            max_cooldown=self.circuit_max_cooldown,
        )

    @property
    def validity(self) -> ValidityPolicy:
        return ValidityPolicy(
            clock_skew=self.clock_skew,
            max_margin_fraction=self.max_margin_fraction,
            unknown_expiry_lifetime=self.unknown_expiry_lifetime,
        )


class Revocation(enum.Enum):
    NOT_ATTEMPTED = "not_attempted"
    REVOKED = "revoked"
    FAILED = "failed"
    UNSUPPORTED = "unsupported"
    """The server has no revocation endpoint (Entra ID, Google): nothing was sent, and
    the token stays valid until it expires."""


class TokenKind(enum.Enum):
    """Which kind of token; the value is its RFC 7009 / RFC 7662 ``token_type_hint``."""

    ACCESS_TOKEN = "access_token"  # noqa: S105 - a hint name, not a secret
    REFRESH_TOKEN = "refresh_token"  # noqa: S105 - a hint name, not a secret


@dataclass(frozen=True)
class DeleteResult:
    """What a deletion did: the seed could not tell whether revocation worked."""

    removed: bool
    revocation: Revocation
    error: OAuth2Error | None = None
    kind: TokenKind = TokenKind.ACCESS_TOKEN


IssuerLike = str | IssuerConfig


class TokenManager:
    """Obtains, stores, introspects and revokes access tokens.

    ``issuer`` arguments accept a plain issuer URL or an ``IssuerConfig``
    (overrides, CA bundle, http opt-in). Close with ``aclose`` (or ``async with``):
    it closes the transport the manager created, and every later call raises
    ``RuntimeError``, as httpx does.
    """

    def __init__(
        self,
        store: TokenStore,
        *,
        config: TokenManagerConfig | None = None,
        transport: OAuth2Transport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.config = config or TokenManagerConfig()
        self._owns_transport = transport is None
        self._transport = transport or OAuth2Transport()
        self._clock = clock
        self._metadata = MetadataCache(
            self._transport,
            refresh_interval=self.config.metadata_refresh_interval,
            min_fetch_interval=self.config.metadata_min_fetch_interval,
        )
        self._servers: OrderedDict[tuple[str, ClientConfig], AuthorizationServer] = OrderedDict()
        self.breakers = CircuitBreakers(self.config.breaker, clock=clock)
        """Every protocol client's circuits, one per endpoint called (``oauth2.breaker``)."""
        self._flights: SingleFlight[Any, AccessToken] = SingleFlight()
        self._refresh_locks: KeyedLocks[TokenKey] = KeyedLocks()
        self._spent = SpentRefreshTokens()
        """Refresh tokens rotated away or refused: never stored or sent again."""
        self._next_prune = float("-inf")
        self._closed = False

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._servers.clear()
        if self._owns_transport:
            await self._transport.aclose()

    def _refresh_lock(self, key: TokenKey) -> asyncio.Lock:
        """The lock that serialises everything touching ``key``'s refresh tokens."""
        return self._refresh_locks(key)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the TokenManager is closed")

    async def __aenter__(self) -> TokenManager:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def server(self, issuer: IssuerLike, client: ClientConfig) -> AuthorizationServer:
        """The (cached) protocol client for ``client`` at ``issuer``."""
        self._check_open()
        issuer_config = _issuer_config(issuer)
        cache_key = (issuer_config.cache_key, client)
        server = self._servers.get(cache_key)
        if server is not None:
            self._servers.move_to_end(cache_key)
            return server
        server = AuthorizationServer(
            issuer_config,
            client,
            transport=self._transport,
            metadata_cache=self._metadata,
            clock=self._clock,
            breakers=self.breakers,
        )
        self._servers[cache_key] = server
        while len(self._servers) > self.config.max_cached_clients:
            self._servers.popitem(last=False)
        return server

    async def forget_client(self, issuer: IssuerLike, client: ClientConfig | str) -> int:
        """Drop the cached protocol clients of ``client`` at ``issuer``: that one
        configuration, or, given a client_id, every configuration of that client.

        Call it when a client's configuration changes (rotated secret, key or
        certificate): the old configuration and its credentials leave memory, the
        connection pools of TLS configurations no other cached client uses are closed
        (an old client certificate's, say; requests in flight finish first), and the
        next call builds a protocol client from the new configuration. Stored tokens
        are kept. Returns how many protocol clients were dropped.
        """
        issuer_key = _issuer_config(issuer).cache_key
        dropped = [
            self._servers.pop(cache_key)
            for cache_key in list(self._servers)
            if cache_key[0] == issuer_key
            and (cache_key[1] == client if isinstance(client, ClientConfig)
                 else cache_key[1].client_id == client)
        ]  # fmt: skip
        in_use = {_tls_of(server) for server in self._servers.values()}
        for tls in {_tls_of(server) for server in dropped} - in_use:
            await self._transport.close_pool(tls)
        return len(dropped)

    # -- get ---------------------------------------------------------------------------------

    async def get(
        self,
        issuer: IssuerLike,
        subject: Subject,
        client: ClientConfig,
        *,
        scopes: Iterable[str] | None,
        resources: Iterable[str] = (),
        audience: str | None = None,
        min_remaining: float = 0.0,
    ) -> AccessToken:
        """A valid access token with exactly ``scopes`` (``None``: any scopes).

        For ``CLIENT_CREDENTIALS`` a missing token is obtained with the
        client_credentials grant; for a subject, with a stored refresh token
        whose grant covers the scopes. Concurrent calls for the same request
        make one token request. ``min_remaining`` skips tokens expiring sooner.
        """
        server = self.server(issuer, client)
        key = _key(server.issuer.issuer, subject, client)
        wanted = _wanted(scopes, resources, audience, min_remaining)
        obtain = partial(self._obtain, server, key, wanted)
        return await self._stored_or(server, key, wanted, obtain)

    async def exchange(
        self,
        subject_token: str | Callable[[], Awaitable[str]],
        issuer: IssuerLike,
        client: ClientConfig,
        *,
        subject: str,
        scopes: Iterable[str] | None,
        resources: Iterable[str] = (),
        audience: str | None = None,
        min_remaining: float = 0.0,
        subject_token_type: str = ACCESS_TOKEN_TYPE,
    ) -> AccessToken:
        """A valid access token of ``subject`` (the name of where subject tokens come
        from, not the token) for ``audience``/``resources`` and ``scopes``: one stored
        for the same, else one obtained by exchanging ``subject_token`` (RFC 8693; a
        callable is asked for it only when an exchange is made). A stored token is
        handed out for its whole life, whatever subject token it came from: an
        exchanged token lives its own life. Concurrent calls for the same make one
        exchange."""
        server = self.server(issuer, client)
        key = _key(server.issuer.issuer, subject, client)
        wanted = _wanted(scopes, resources, audience, min_remaining)

        async def exchange() -> AccessToken:
            spec = wanted.spec
            response = await server.token_exchange(
                subject_token if isinstance(subject_token, str) else await subject_token(),
                subject_token_type=subject_token_type,
                scopes=spec.scopes,
                resources=sorted(spec.resources),
                audience=spec.audience,
            )
            return await self._store_new(key, wanted, response)

        return await self._stored_or(server, key, wanted, exchange)

    async def _stored_or(
        self,
        server: AuthorizationServer,
        key: TokenKey,
        wanted: _Wanted,
        obtain: Callable[[], Awaitable[AccessToken]],
    ) -> AccessToken:
        """A usable stored token for `wanted`, else `obtain`'s, one flight per request."""
        found = await self._find_usable(key, wanted)
        if found is not None:
            return found
        flight = (server.issuer.cache_key, server.client, key, wanted)
        return await self._flights.run(flight, obtain)

    async def _find_usable(self, key: TokenKey, wanted: _Wanted) -> AccessToken | None:
        now = self._clock()
        policy = self.config.validity
        best: AccessToken | None = None
        best_until = float("-inf")
        for token in await self.store.find_access_tokens(key, wanted.spec):
            validity = assess_validity(token, now, policy)
            if is_dead(token, validity, now):
                await self.store.delete_access_token(key.issuer, token.value)
                continue
            if not validity.usable or not matches(token, wanted.spec):
                continue
            until = validity.usable_until if validity.usable_until is not None else float("inf")
            if until - now < wanted.min_remaining:
                continue
            if until > best_until:
                best, best_until = token, until
        return best

    async def _obtain(
        self, server: AuthorizationServer, key: TokenKey, wanted: _Wanted
    ) -> AccessToken:
        if key.subject is CLIENT_CREDENTIALS:
            spec = wanted.spec
            response = await server.client_credentials(
                spec.scopes, resources=sorted(spec.resources), audience=spec.audience
            )
            return await self._store_new(key, wanted, response)
        # One refresh per subject at a time: with rotation, two concurrent refreshes
        # would present the same refresh token twice and lose the grant.
        async with self._refresh_lock(key):
            found = await self._find_usable(key, wanted)
            if found is not None:
                return found
            return await self._refresh(server, key, wanted)

    async def _refresh(
        self, server: AuthorizationServer, key: TokenKey, wanted: _Wanted
    ) -> AccessToken:
        candidates = sorted(
            (rt for rt in await self.store.find_refresh_tokens(key)
             if refresh_token_covers(rt, wanted.spec.scopes)),
            key=lambda rt: (len(rt.scopes), -rt.obtained_at),
        )  # fmt: skip
        if not candidates:
            raise NoTokenAvailableError(
                f"no valid access token and no refresh token covering the requested scopes "
                f"for this subject at {key.issuer}"
            )
        last_error: InvalidGrantError | None = None
        for refresh_token in candidates:
            try:
                response = await server.refresh(
                    refresh_token.value,
                    scopes=wanted.spec.scopes,
                    resources=sorted(wanted.spec.resources),
                )
            except InvalidGrantError as exc:
                # The refresh token is dead (expired, revoked, consumed): forget it.
                log.info("a refresh token for %s was refused: %s", key.issuer, exc)
                self._spent.add(key, refresh_token.value)
                await self.store.delete_refresh_token(key.issuer, refresh_token.value)
                last_error = exc
                continue
            if response.refresh_token and response.refresh_token != refresh_token.value:
                # Persist the successor before anything else; never revoke the predecessor.
                # The predecessor is spent from now on, whatever copy of it turns up later.
                self._spent.add(key, refresh_token.value)
                await self.store.put_refresh_token(
                    RefreshToken(
                        value=response.refresh_token,
                        key=key,
                        scopes=refresh_token.scopes,
                        obtained_at=response.issued_at,
                    )
                )
                await self.store.delete_refresh_token(key.issuer, refresh_token.value)
            if wanted.spec.scopes is None and not response.scope_echoed:
                response = dataclasses.replace(response, scopes=refresh_token.scopes)
            return await self._store_new(key, wanted, response)
        assert last_error is not None
        raise last_error

    async def _store_new(
        self, key: TokenKey, wanted: _Wanted, response: TokenResponse
    ) -> AccessToken:
        token = AccessToken(
            value=response.access_token,
            token_type=response.token_type,
            key=key,
            scopes=response.scopes,
            requested_scopes=wanted.spec.scopes,
            resources=wanted.spec.resources,
            audience=wanted.spec.audience,
            obtained_at=response.issued_at,
            expires_at=response.expires_at,
            confirmed_at=response.issued_at,
        )
        await self._put_new(token)
        return token

    async def _put_new(self, token: AccessToken) -> None:
        """Store a token that was not in the store; the store grows only here, so this is
        where the sweep of dead tokens runs (at most every ``prune_interval``)."""
        if self._clock() >= self._next_prune:
            await self.prune()
        await self.store.put_access_token(token)

    async def prune(self) -> int:
        """Forget every dead access token in the store (inactive, past its expiry, or of
        unknown expiry and no longer trusted); return how many. ``get`` calls it at most
        every ``prune_interval`` when it stores a new token."""
        now = self._clock()
        self._next_prune = now + self.config.prune_interval
        policy = self.config.validity
        dead = [
            token
            for token in await self.store.all_access_tokens()
            if is_dead(token, assess_validity(token, now, policy), now)
        ]
        for token in dead:
            await self.store.delete_access_token(token.key.issuer, token.value)
        return len(dead)

    async def add_refresh_token(
        self,
        refresh_token: str,
        issuer: IssuerLike,
        subject: str,
        client: ClientConfig,
        *,
        scopes: Iterable[str],
    ) -> RefreshToken:
        """Store a refresh token obtained elsewhere (e.g. an authorization-code flow);
        ``scopes`` is the scope of its grant. ``SpentRefreshTokenError`` for one this
        manager has seen used up (rotated to a successor, or refused by the server): it is
        never stored or sent again, since a replay can cost the user the whole grant."""
        self._check_open()
        key = _key(_issuer_config(issuer).issuer, subject, client)
        if (key, refresh_token) in self._spent:
            raise SpentRefreshTokenError(
                "this refresh token was already used (rotated to a successor, or refused);"
                " it is not sent again"
            )
        stored = RefreshToken(
            value=refresh_token,
            key=key,
            scopes=_scope_set(scopes),
            obtained_at=self._clock(),
        )
        await self.store.put_refresh_token(stored)
        return stored

    # -- an identity's stored tokens (what an application keeping its own records needs) ---

    def key_for(
        self, issuer: IssuerLike, subject: Subject | None, client: ClientConfig
    ) -> TokenKey:
        """The key under which this manager's calls keep ``subject``'s tokens obtained
        through ``client`` (``None``: the client's own); ``sharing.token_key`` says why."""
        return _key(_issuer_config(issuer).issuer, subject, client)

    async def adopt(self, token: AccessToken) -> None:
        """Take back a token this application obtained before and kept elsewhere (the
        operator: in a Secret it sealed, found again after a restart), without asking
        the server: from now on ``get`` hands it out for its key and spec, as if obtained
        here. Its key must come from ``sharing.token_key``; whether the token may be
        trusted at all is the caller's to check (``register`` asks the server instead)."""
        await self.store.put_access_token(token)

    async def forget(self, token: AccessToken) -> bool:
        """Remove ``token`` from the store without revoking it (its last holder let it go
        with revocation off, or it was revoked); whether it was stored."""
        return await self.store.delete_access_token(token.key.issuer, token.value)

    async def stored_tokens(self, key: TokenKey) -> list[AccessToken]:
        """Every access token stored for ``key``, whatever it was obtained for, usable or
        not (say, to revoke those a leak made suspect)."""
        return await self.store.find_access_tokens(key)

    async def refresh_tokens(self, key: TokenKey) -> list[RefreshToken]:
        """The refresh tokens stored for ``key`` (rotated successors included)."""
        return await self.store.find_refresh_tokens(key)

    # -- register / introspect / revoke / delete ---------------------------------------------

    async def register(
        self,
        access_token: str,
        issuer: IssuerLike,
        client: ClientConfig,
        *,
        token_type: str = "Bearer",  # noqa: S107 - a token type, not a secret
        metadata: Mapping[str, Any] | None = None,
        subject: Subject | None = None,
        auto_introspect: bool | None = None,
    ) -> AccessToken:
        """Store a token obtained elsewhere.

        With ``auto_introspect`` (default from the config, true) the server's
        introspection answer replaces ``metadata``, and an inactive token is
        refused with ``InactiveTokenError`` instead of being stored.
        """
        server = self.server(issuer, client)
        now = self._clock()
        introspect = self.config.auto_introspect if auto_introspect is None else auto_introspect
        if introspect:
            info = await server.introspect(access_token, token_type_hint=ACCESS_TOKEN_HINT)
            if not info.active:
                raise InactiveTokenError(
                    "the token to register is not active", endpoint="introspection_endpoint"
                )
        else:
            info = parse_introspection({"active": True, **(metadata or {})}, endpoint="register")
        if subject is None:
            subject = info.sub if info.sub and info.sub != client.client_id else CLIENT_CREDENTIALS
        token = AccessToken(
            value=access_token,
            token_type=token_type,
            key=_key(server.issuer.issuer, subject, client),
            scopes=info.scopes or frozenset(),
            obtained_at=now,
            expires_at=info.exp,
            not_before=info.nbf,
            active=True if introspect else None,
            claims=TokenClaims.of(info),
            confirmed_at=now,
        )
        await self._put_new(token)
        return token

    async def introspect(
        self, access_token: str, issuer: IssuerLike, client: ClientConfig
    ) -> Introspection:
        """RFC 7662, answered from the store while its metadata is younger than
        ``min_introspect_interval``. The answer updates the stored token, so an
        inactive token is no longer handed out by ``get``."""
        server = self.server(issuer, client)
        stored = await self.store.get_access_token(server.issuer.issuer, access_token)
        now = self._clock()
        if (
            stored is not None
            and stored.confirmed_at is not None
            and now - stored.confirmed_at < self.config.min_introspect_interval
        ):
            return stored.introspection()
        info = await server.introspect(access_token, token_type_hint=ACCESS_TOKEN_HINT)
        # Read again: a token deleted while the server answered must stay deleted.
        current = await self.store.get_access_token(server.issuer.issuer, access_token)
        if current is not None:
            await self.store.put_access_token(with_introspection(current, info, now))
        return info

    async def revoke(self, access_token: str, issuer: IssuerLike, client: ClientConfig) -> None:
        """RFC 7009. The stored copy is kept but marked inactive (``delete`` removes it)."""
        server = self.server(issuer, client)
        await server.revoke(access_token, token_type_hint=ACCESS_TOKEN_HINT)
        stored = await self.store.get_access_token(server.issuer.issuer, access_token)
        if stored is not None:
            await self.store.put_access_token(
                dataclasses.replace(stored, active=False, confirmed_at=self._clock())
            )

    async def delete(
        self,
        access_token: str,
        issuer: IssuerLike,
        client: ClientConfig,
        *,
        revoke: bool | None = None,
    ) -> DeleteResult:
        """Revoke (if ``revoke_on_delete``) then remove; says what happened."""
        server = self.server(issuer, client)
        return await self._delete(server, access_token, TokenKind.ACCESS_TOKEN, revoke)

    async def revoke_refresh_token(
        self, refresh_token: str, issuer: IssuerLike, subject: str, client: ClientConfig
    ) -> None:
        """RFC 7009 with ``token_type_hint=refresh_token``, then forget the stored copy.

        Most servers (oidc-provider among them) then revoke the whole grant, its access
        tokens included. Waits for a refresh of ``subject`` in flight; a successor it
        rotated to is another token (``delete_all`` removes every one of a subject).
        """
        server = self.server(issuer, client)
        async with self._refresh_lock(_key(server.issuer.issuer, subject, client)):
            await server.revoke(refresh_token, token_type_hint=TokenKind.REFRESH_TOKEN.value)
            await self.store.delete_refresh_token(server.issuer.issuer, refresh_token)

    async def delete_refresh_token(
        self,
        refresh_token: str,
        issuer: IssuerLike,
        subject: str,
        client: ClientConfig,
        *,
        revoke: bool | None = None,
    ) -> DeleteResult:
        """Revoke (if ``revoke_on_delete``) then forget a refresh token; ``revoke=False``
        only forgets it. Waits for a refresh of ``subject`` in flight, as
        ``revoke_refresh_token`` does."""
        server = self.server(issuer, client)
        async with self._refresh_lock(_key(server.issuer.issuer, subject, client)):
            return await self._delete(server, refresh_token, TokenKind.REFRESH_TOKEN, revoke)

    async def delete_all(
        self,
        issuer: IssuerLike,
        subject: Subject,
        client: ClientConfig,
        *,
        revoke: bool | None = None,
    ) -> list[DeleteResult]:
        """Delete (and, with ``revoke_on_delete``, revoke) every token of ``subject`` (or
        of the client in the client-credentials flow) at this issuer: its refresh tokens
        first, so that nothing can mint new access tokens, then its access tokens.

        Holds the subject's refresh lock: a refresh in flight finishes first, and what
        it stored (a rotated refresh token, a new access token) is deleted too; a later
        ``get`` finds no refresh token and raises ``NoTokenAvailableError``.
        """
        server = self.server(issuer, client)
        key = _key(server.issuer.issuer, subject, client)
        async with self._refresh_lock(key):
            self._spent.forget(key)
            refresh_tokens = await self.store.find_refresh_tokens(key)
            results = await asyncio.gather(
                *(self._delete(server, rt.value, TokenKind.REFRESH_TOKEN, revoke)
                  for rt in refresh_tokens)
            )  # fmt: skip
            access_tokens = await self.store.find_access_tokens(key)
            results += await asyncio.gather(
                *(self._delete(server, at.value, TokenKind.ACCESS_TOKEN, revoke)
                  for at in access_tokens)
            )  # fmt: skip
        return results

    async def _delete(
        self, server: AuthorizationServer, value: str, kind: TokenKind, revoke: bool | None
    ) -> DeleteResult:
        should_revoke = self.config.revoke_on_delete if revoke is None else revoke
        revocation = Revocation.NOT_ATTEMPTED
        error: OAuth2Error | None = None
        if should_revoke:
            try:
                await server.revoke(value, token_type_hint=kind.value)
                revocation = Revocation.REVOKED
            except EndpointNotAdvertisedError as exc:
                revocation, error = Revocation.UNSUPPORTED, exc
            except OAuth2Error as exc:
                log.warning(
                    "revocation of a%s at %s failed: %s",
                    "n access token" if kind is TokenKind.ACCESS_TOKEN else " refresh token",
                    server.issuer.issuer, exc,
                )  # fmt: skip
                revocation, error = Revocation.FAILED, exc
        if kind is TokenKind.ACCESS_TOKEN:
            removed = await self.store.delete_access_token(server.issuer.issuer, value)
        else:
            removed = await self.store.delete_refresh_token(server.issuer.issuer, value)
        return DeleteResult(removed=removed, revocation=revocation, error=error, kind=kind)


@dataclass(frozen=True)
class _Wanted:
    spec: TokenSpec
    min_remaining: float
    """Part of the flight key on purpose: the re-check under the refresh lock honours it."""


def _wanted(
    scopes: Iterable[str] | None,
    resources: Iterable[str],
    audience: str | None,
    min_remaining: float,
) -> _Wanted:
    requested = None if scopes is None else _scope_set(scopes)
    return _Wanted(TokenSpec(requested, frozenset(resources), audience), min_remaining)


def _scope_set(scopes: Iterable[str]) -> Scopes:
    """Validated scopes; a ``str`` is refused, since iterating it yields its letters."""
    if isinstance(scopes, str):
        raise TypeError(
            "scopes must be a collection of scope tokens such as ['read', 'write'], "
            "not a str (which would be split into letters)"
        )
    return validate_scopes(scopes)


def _tls_of(server: AuthorizationServer) -> TLSConfig:
    """The TLS configuration (and so the connection pool) ``server``'s calls use."""
    return server.client.tls(server.issuer.ca_pem)


def _issuer_config(issuer: IssuerLike) -> IssuerConfig:
    return issuer if isinstance(issuer, IssuerConfig) else IssuerConfig(issuer=issuer)


def _key(issuer: str, subject: Subject | None, client: ClientConfig) -> TokenKey:
    return token_key(issuer, subject, client.client_id, client.token_partition)
