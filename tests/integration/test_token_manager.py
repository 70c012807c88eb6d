"""TokenManager against oidc-provider; each defect of the seed library (the Elixir
``oauth2_token_manager``, numbered in the README) and of issue 6 has a test that fails on
the old behaviour."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pytest

from oauth2_token_operator.manager import (
    CLIENT_CREDENTIALS,
    AccessToken,
    InMemoryTokenStore,
    Revocation,
    TokenKey,
    TokenKind,
    TokenManager,
    TokenManagerConfig,
)
from oauth2_token_operator.oauth2 import (
    AuthorizationServer,
    ClientConfig,
    IssuerConfig,
    MetadataCache,
    OAuth2Transport,
    RetryPolicy,
)
from oauth2_token_operator.oauth2.errors import (
    EndpointNotAdvertisedError,
    InactiveTokenError,
    InvalidClientError,
    InvalidGrantError,
    NoResponseError,
    NoTokenAvailableError,
    SpentRefreshTokenError,
)
from tests.authserver.fixtures import AuthServer
from tests.integration.conftest import Counters

pytestmark = pytest.mark.authserver


class Clock:
    """Real time plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@dataclass
class World:
    """The server, its issuer configuration and the client_secret_basic client."""

    authserver: AuthServer
    issuer: IssuerConfig
    transport: OAuth2Transport
    client: ClientConfig
    config_for: Callable[..., ClientConfig]

    @property
    def cc_scopes(self) -> frozenset[str]:
        return frozenset(self.authserver.resource_scopes[:2])

    def manager(self, clock: Clock | None = None, **config: object) -> TokenManager:
        return TokenManager(
            InMemoryTokenStore(),
            transport=self.transport,
            config=TokenManagerConfig(**config),
            clock=clock or time.time,
        )

    async def cc_token(
        self,
        manager: TokenManager,
        scopes: Iterable[str] | None,
        *,
        client: ClientConfig | None = None,
        issuer: IssuerConfig | None = None,
        min_remaining: float = 0.0,
    ) -> AccessToken:
        """``get`` in the client-credentials flow, for the test resource server."""
        return await manager.get(
            issuer or self.issuer,
            CLIENT_CREDENTIALS,
            client or self.client,
            scopes=scopes,
            resources=[self.authserver.resource],
            min_remaining=min_remaining,
        )

    def outsider(self) -> AuthorizationServer:
        """Talks to the server behind the manager's back, as another party would."""
        return AuthorizationServer(
            self.issuer,
            self.client,
            transport=self.transport,
            metadata_cache=MetadataCache(self.transport),
        )

    def key(self, subject: str | None = None) -> TokenKey:
        return TokenKey(
            self.authserver.issuer, subject or CLIENT_CREDENTIALS, self.client.client_id
        )

    def token_requests(self) -> str:
        return f"client={self.client.client_id} /token"


@pytest.fixture
def w(
    authserver: AuthServer,
    issuer: IssuerConfig,
    transport: OAuth2Transport,
    config_for: Callable[..., ClientConfig],
) -> World:
    return World(authserver, issuer, transport, config_for("client_secret_basic"), config_for)


async def test_client_credentials_grant_when_nothing_is_stored(
    w: World, counters: Counters
) -> None:
    """Seed defect 1: `get` with :client_credentials crashed when nothing was stored."""
    manager = w.manager()
    token = await w.cc_token(manager, ["read"])
    assert token.scopes == {"read"}
    assert token.key == w.key()
    assert (await w.cc_token(manager, ["read"])).value == token.value
    assert counters.delta(w.token_requests()) == 1


async def test_token_partitions_keep_configurations_of_one_client_apart(w: World) -> None:
    """A configuration with the right client_id but wrong credentials, in another
    partition, must get its own answer from the server, never another owner's token."""
    manager = w.manager()
    owner = w.client.model_copy(update={"token_partition": "team-a/idp"})
    token = await w.cc_token(manager, ["read"], client=owner)
    assert token.key.partition == "team-a/idp"
    impostor = w.config_for("client_secret_basic", client_secret="wrong", token_partition="b/x")
    with pytest.raises(InvalidClientError):
        await w.cc_token(manager, ["read"], client=impostor)
    same_owner = owner.model_copy()
    assert (await w.cc_token(manager, ["read"], client=same_owner)).value == token.value


async def test_fifty_concurrent_gets_make_one_token_request(w: World, counters: Counters) -> None:
    """Seed defect 5 (no single-flight)."""
    manager = w.manager()
    tokens = await asyncio.gather(*(w.cc_token(manager, w.cc_scopes) for _ in range(50)))
    assert len({t.value for t in tokens}) == 1
    assert counters.delta(w.token_requests()) == 1


async def test_exact_scope_matching_against_the_server(w: World) -> None:
    manager = w.manager()
    read = await w.cc_token(manager, ["read"])
    both = await w.cc_token(manager, ["read", "write"])
    assert both.value != read.value  # a superset is not the same scope set
    assert both.scopes == {"read", "write"}
    assert (await w.cc_token(manager, ["write", "read"])).value == both.value
    assert (await w.cc_token(manager, ["read"])).value == read.value
    assert (await w.cc_token(manager, None)).value in (read.value, both.value)
    # An unknown scope is dropped by the server: asking again returns the same token.
    odd = await w.cc_token(manager, ["read", "unknown-scope"])
    assert odd.scopes == {"read"}
    assert (await w.cc_token(manager, ["read", "unknown-scope"])).value == odd.value


async def test_introspection_is_answered_from_the_store_within_the_interval(
    w: World, counters: Counters
) -> None:
    clock = Clock()
    manager = w.manager(clock, min_introspect_interval=30)
    external = await w.outsider().client_credentials(w.cc_scopes, resources=[w.authserver.resource])
    introspections = f"client={w.client.client_id} /token/introspection"

    registered = await manager.register(external.access_token, w.issuer, w.client)
    assert counters.delta(introspections) == 1  # auto_introspect
    assert registered.active is True
    for _ in range(5):
        assert (await manager.introspect(external.access_token, w.issuer, w.client)).active
    assert counters.delta(introspections) == 1  # all within min_introspect_interval
    clock.offset += 31
    assert (await manager.introspect(external.access_token, w.issuer, w.client)).active
    assert counters.delta(introspections) == 2


class DeletedDuringTheCall(InMemoryTokenStore):
    """The first lookup of a token returns it and deletes it, as a `delete` landing while
    the server answers an introspection would."""

    async def get_access_token(self, issuer: str, value: str) -> AccessToken | None:
        found = await super().get_access_token(issuer, value)
        if found is not None:
            await self.delete_access_token(issuer, value)
        return found


async def test_introspection_does_not_resurrect_a_token_deleted_meanwhile(w: World) -> None:
    manager = TokenManager(
        DeletedDuringTheCall(),
        transport=w.transport,
        config=TokenManagerConfig(min_introspect_interval=0),
    )
    token = await w.cc_token(manager, w.cc_scopes)
    assert (await manager.introspect(token.value, w.issuer, w.client)).active
    assert await manager.store.find_access_tokens(token.key) == []


async def test_an_inactive_token_is_not_handed_out(w: World) -> None:
    """Seed defect 2: validity ignored introspection's `active`."""
    clock = Clock()
    manager = w.manager(clock)
    token = await w.cc_token(manager, w.cc_scopes)
    # Revoked by someone else; the manager learns it through introspection.
    await w.outsider().revoke(token.value)
    clock.offset += 31
    assert (await manager.introspect(token.value, w.issuer, w.client)).active is False
    assert (await w.cc_token(manager, w.cc_scopes)).value != token.value


async def test_expiry_with_skew_and_proactive_renewal(w: World) -> None:
    """Seed defects 2 and 7: no skew margin, no renewal ahead of expiry."""
    short = w.config_for("short_ttl")
    clock = Clock()
    manager = w.manager(clock, clock_skew=1.0, max_margin_fraction=1.0)  # the whole 1 s margin
    first = await w.cc_token(manager, ["read"], client=short)
    assert first.expires_at is not None
    lifetime = first.expires_at - first.obtained_at
    assert 0 < lifetime <= 3
    assert (await w.cc_token(manager, ["read"], client=short)).value == first.value
    # Asking for more remaining lifetime than it has renews ahead of expiry.
    ahead = await w.cc_token(manager, ["read"], client=short, min_remaining=lifetime)
    assert ahead.value != first.value
    # Within the skew margin of exp, a token counts as expired.
    clock.offset += lifetime - 0.5
    after = await w.cc_token(manager, ["read"], client=short)
    assert after.value not in (first.value, ahead.value)
    # Within the skew margin the server still accepts it: it is kept. Past its real
    # expiry it is forgotten.
    stored = {t.value for t in await manager.store.find_access_tokens(after.key)}
    assert first.value in stored
    clock.offset += 1.0
    await w.cc_token(manager, ["read"], client=short)
    stored = {t.value for t in await manager.store.find_access_tokens(after.key)}
    assert first.value not in stored


async def test_short_lived_tokens_are_reused_for_most_of_their_life(
    w: World, counters: Counters
) -> None:
    """Issue 6: with the default 30 s clock skew a 3 s token counted as expired from the
    start, so every get() made a token request. The margin is now at most a tenth of
    the lifetime; tokens past their real expiry are forgotten."""
    short = w.config_for("short_ttl")
    clock = Clock()
    manager = w.manager(clock)
    assert manager.config.clock_skew == 30
    first = await w.cc_token(manager, ["read"], client=short)
    assert first.expires_at is not None
    lifetime = first.expires_at - first.obtained_at
    assert 0 < lifetime <= 3
    for _ in range(5):
        assert (await w.cc_token(manager, ["read"], client=short)).value == first.value
    clock.offset += 0.8 * lifetime
    assert (await w.cc_token(manager, ["read"], client=short)).value == first.value
    clock.offset += 0.15 * lifetime  # 95 % of its life: inside the last tenth
    second = await w.cc_token(manager, ["read"], client=short)
    assert second.value != first.value
    assert counters.delta(f"client={short.client_id} /token") == 2
    clock.offset += lifetime  # both past their real expiry
    third = await w.cc_token(manager, ["read"], client=short)
    assert [t.value for t in await manager.store.find_access_tokens(third.key)] == [third.value]


async def test_dead_tokens_do_not_pile_up(w: World) -> None:
    """Issue 6: dead tokens of requests nobody repeats stayed in the store forever.
    Storing a new token sweeps them out (at most every prune_interval)."""
    short = w.config_for("short_ttl")
    clock = Clock()
    manager = w.manager(clock, prune_interval=60)
    stale = await w.cc_token(manager, ["read"], client=short)
    clock.offset += 61  # long dead, and the sweep is due
    await w.cc_token(manager, ["read"])  # another client: a lookup that never meets `stale`
    assert await manager.store.find_access_tokens(stale.key) == []
    again = await w.cc_token(manager, ["write"], client=short)
    clock.offset += 10  # dead, but the next sweep is not due: only an explicit prune
    await w.cc_token(manager, ["write"])
    assert await manager.store.find_access_tokens(again.key) == [again]
    assert await manager.prune() == 1
    assert await manager.store.find_access_tokens(again.key) == []


async def test_a_subject_with_short_lived_tokens_refreshes_once(w: World) -> None:
    """Issue 6: a subject with 3 s tokens rotated its refresh token on every get()."""
    registered = w.authserver.clients["short_ttl"]
    grant = w.authserver.password_grant(registered, w.authserver.user_scopes)
    short = w.config_for("short_ttl")
    scopes = sorted(w.authserver.user_scopes)
    manager = w.manager()
    await manager.add_refresh_token(grant["refresh_token"], w.issuer, "alice", short, scopes=scopes)
    counters = Counters(w.authserver)
    tokens = [await manager.get(w.issuer, "alice", short, scopes=scopes) for _ in range(5)]
    assert tokens[0].expires_at is not None
    assert tokens[0].expires_at - tokens[0].obtained_at <= 3
    assert {t.value for t in tokens} == {tokens[0].value}
    assert counters.delta(f"client={short.client_id} /token") == 1


async def test_audience_is_part_of_the_request(w: World, counters: Counters) -> None:
    manager = w.manager()
    plain = await w.cc_token(manager, ["read"])
    other = await manager.get(
        w.issuer, CLIENT_CREDENTIALS, w.client, scopes=["read"],
        resources=[w.authserver.resource], audience="https://other.example",
    )  # fmt: skip
    assert other.value != plain.value
    assert other.audience == "https://other.example"
    assert (await w.cc_token(manager, ["read"])).value == plain.value
    assert counters.delta(w.token_requests()) == 2


async def subject_manager(w: World, **config: object) -> tuple[TokenManager, list[str], str]:
    """A manager holding a fresh refresh token of alice's (from the real password grant)."""
    grant = w.authserver.password_grant(
        w.authserver.clients["client_secret_basic"], w.authserver.user_scopes
    )
    manager = w.manager(None, **config)
    scopes = sorted(w.authserver.user_scopes)
    await manager.add_refresh_token(
        grant["refresh_token"], w.issuer, "alice", w.client, scopes=scopes
    )
    return manager, scopes, grant["refresh_token"]


async def test_refresh_persists_the_rotated_token_and_never_revokes_its_predecessor(
    w: World, counters: Counters
) -> None:
    """Seed defect 5: the rotated refresh token must be kept, the old one not revoked."""
    manager, scopes, original = await subject_manager(w)
    first = await manager.get(w.issuer, "alice", w.client, scopes=scopes[:1])
    stored = await manager.store.find_refresh_tokens(w.key("alice"))
    assert len(stored) == 1
    assert stored[0].value != original  # the successor replaced it
    assert stored[0].scopes == set(scopes)  # and keeps the grant's scope
    # The successor works: a different scope set needs another refresh.
    second = await manager.get(w.issuer, "alice", w.client, scopes=scopes)
    assert second.value != first.value
    assert counters.delta("/token/revocation") == 0


async def test_a_rotated_away_refresh_token_is_never_stored_or_sent_again(w: World) -> None:
    """Issue 21: a stale copy of the consumed refresh token (a cached read of the user's
    Secret) was stored as new and sent: oidc-provider saw a replay and revoked the grant."""
    manager, scopes, original = await subject_manager(w)
    counters = Counters(w.authserver)
    first = await manager.get(w.issuer, "alice", w.client, scopes=scopes)
    with pytest.raises(SpentRefreshTokenError) as caught:
        await manager.add_refresh_token(original, w.issuer, "alice", w.client, scopes=scopes)
    assert original not in str(caught.value)
    stored = await manager.store.find_refresh_tokens(w.key("alice"))
    assert original not in {rt.value for rt in stored}
    renewed = await manager.get(w.issuer, "alice", w.client, scopes=scopes, min_remaining=3600 * 24)
    assert renewed.value != first.value
    assert counters.delta(f"client={w.client.client_id} /token") == 2
    # The grant is alive: the successor's successor works.
    assert (
        await manager.get(w.issuer, "alice", w.client, scopes=scopes, min_remaining=3600 * 24)
    ).value != renewed.value


async def test_a_refused_refresh_token_is_not_sent_again(w: World, counters: Counters) -> None:
    manager = w.manager()
    await manager.add_refresh_token("not-a-real-refresh-token", w.issuer, "bob", w.client,
                                    scopes=["x"])  # fmt: skip
    with pytest.raises(InvalidGrantError):
        await manager.get(w.issuer, "bob", w.client, scopes=["x"])
    with pytest.raises(SpentRefreshTokenError):
        await manager.add_refresh_token(
            "not-a-real-refresh-token", w.issuer, "bob", w.client, scopes=["x"]
        )
    with pytest.raises(NoTokenAvailableError):
        await manager.get(w.issuer, "bob", w.client, scopes=["x"])
    assert counters.delta(f"client={w.client.client_id} /token") == 1


async def test_a_subject_token_is_renewed_ahead_of_expiry(w: World) -> None:
    manager, scopes, _ = await subject_manager(w)
    first = await manager.get(w.issuer, "alice", w.client, scopes=scopes)
    assert first.expires_at is not None
    remaining = first.expires_at - time.time()
    same = await manager.get(
        w.issuer, "alice", w.client, scopes=scopes, min_remaining=remaining / 2
    )
    assert same.value == first.value
    renewed = await manager.get(
        w.issuer, "alice", w.client, scopes=scopes, min_remaining=remaining + 60
    )
    assert renewed.value != first.value


async def test_concurrent_refreshes_of_one_subject_do_not_burn_the_grant(w: World) -> None:
    """Two scope sets at once: without one refresh per subject at a time, the second
    request presents an already rotated refresh token and oidc-provider revokes the grant."""
    manager, scopes, _ = await subject_manager(w)
    requests = [scopes[:1], scopes[1:2], scopes, scopes[:1]]
    tokens = await asyncio.gather(
        *(manager.get(w.issuer, "alice", w.client, scopes=s) for s in requests)
    )
    assert len({t.value for t in tokens[:3]}) == 3
    assert tokens[3].value == tokens[0].value
    # The per-subject lock is not kept once no refresh holds or awaits it (a long-running
    # operator sees subjects come and go).
    assert len(manager._refresh_locks) == 0


async def test_a_dead_refresh_token_is_forgotten_and_reported(w: World) -> None:
    manager = w.manager()
    await manager.add_refresh_token(
        "not-a-real-refresh-token", w.issuer, "bob", w.client, scopes=["x"]
    )
    with pytest.raises(InvalidGrantError) as caught:
        await manager.get(w.issuer, "bob", w.client, scopes=["x"])
    assert "not-a-real-refresh-token" not in str(caught.value)
    assert await manager.store.find_refresh_tokens(w.key("bob")) == []
    with pytest.raises(NoTokenAvailableError):
        await manager.get(w.issuer, "bob", w.client, scopes=["x"])


async def test_register_replaces_metadata_with_introspection_and_refuses_inactive(
    w: World,
) -> None:
    manager = w.manager()
    outsider = w.outsider()
    external = await outsider.client_credentials(w.cc_scopes, resources=[w.authserver.resource])
    claimed = {"exp": 1, "scope": "made-up"}
    registered = await manager.register(external.access_token, w.issuer, w.client, metadata=claimed)
    assert registered.scopes == w.cc_scopes
    assert registered.expires_at is not None
    assert registered.expires_at > time.time()
    assert registered.key.subject is CLIENT_CREDENTIALS
    # It is now what `get` hands out for those scopes.
    got = await manager.get(w.issuer, CLIENT_CREDENTIALS, w.client, scopes=w.cc_scopes)
    assert got.value == external.access_token

    await outsider.revoke(external.access_token)
    with pytest.raises(InactiveTokenError):
        await w.manager().register(external.access_token, w.issuer, w.client)

    trusted = await w.manager().register(
        "opaque-from-elsewhere", w.issuer, w.client, token_type="Bearer",
        metadata={"exp": 2_000_000_000, "scope": "x y"}, auto_introspect=False,
    )  # fmt: skip
    assert trusted.expires_at == 2_000_000_000
    assert trusted.scopes == {"x", "y"}
    assert trusted.active is None


async def test_revoke_marks_the_stored_token_inactive(w: World) -> None:
    manager = w.manager()
    token = await w.cc_token(manager, w.cc_scopes)
    await manager.revoke(token.value, w.issuer, w.client)
    assert not (await w.outsider().introspect(token.value)).active
    stored = await manager.store.get_access_token(w.authserver.issuer, token.value)
    assert stored is not None
    assert stored.active is False
    assert (await w.cc_token(manager, w.cc_scopes)).value != token.value


async def test_delete_revokes_and_says_so(w: World) -> None:
    manager = w.manager()
    token = await w.cc_token(manager, w.cc_scopes)
    result = await manager.delete(token.value, w.issuer, w.client)
    assert (result.removed, result.revocation) == (True, Revocation.REVOKED)
    assert not (await w.outsider().introspect(token.value)).active
    assert await manager.store.get_access_token(w.authserver.issuer, token.value) is None

    kept = await w.cc_token(manager, w.cc_scopes)
    result = await manager.delete(kept.value, w.issuer, w.client, revoke=False)
    assert result.revocation is Revocation.NOT_ATTEMPTED
    assert (await w.outsider().introspect(kept.value)).active


async def test_delete_reports_a_failed_revocation(w: World) -> None:
    """The seed could not tell whether revocation worked; we say it failed and why."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    unreachable_revocation = IssuerConfig(
        issuer=w.issuer.issuer,
        ca_pem=w.issuer.ca_pem,
        metadata_overrides={"revocation_endpoint": f"https://127.0.0.1:{closed_port}/revoke"},
    )
    transport = OAuth2Transport(retry=RetryPolicy(attempts=1))
    manager = TokenManager(InMemoryTokenStore(), transport=transport)
    token = await w.cc_token(manager, w.cc_scopes, issuer=unreachable_revocation)
    result = await manager.delete(token.value, unreachable_revocation, w.client)
    assert result.revocation is Revocation.FAILED
    assert isinstance(result.error, NoResponseError)
    assert result.removed
    await transport.aclose()


async def test_delete_at_a_server_without_revocation_says_unsupported(w: World) -> None:
    """Entra ID and Google have no revocation endpoint: that is no failure, and nothing is
    sent (oidc-provider's `lean` provider is configured without one)."""
    lean = IssuerConfig(issuer=w.authserver.lean_issuer, ca_pem=w.issuer.ca_pem)
    manager = TokenManager(InMemoryTokenStore())
    token = await w.cc_token(manager, w.cc_scopes, issuer=lean)
    result = await manager.delete(token.value, lean, w.client)
    assert result.revocation is Revocation.UNSUPPORTED
    assert isinstance(result.error, EndpointNotAdvertisedError)
    assert result.removed
    await manager.aclose()


@pytest.mark.parametrize("revoke_on_delete", [True, False])
async def test_delete_all_revokes_at_the_right_issuer_and_honours_the_option(
    w: World, revoke_on_delete: bool
) -> None:
    """Seed defect 4: wrong issuer for revocation, and revoke_on_delete ignored."""
    manager = w.manager(revoke_on_delete=revoke_on_delete)
    tokens = [await w.cc_token(manager, s) for s in (["read"], ["write"], ["read", "write"])]
    results = await manager.delete_all(w.issuer, CLIENT_CREDENTIALS, w.client)
    assert len(results) == 3
    expected = Revocation.REVOKED if revoke_on_delete else Revocation.NOT_ATTEMPTED
    assert {r.revocation for r in results} == {expected}
    for token in tokens:
        assert (await w.outsider().introspect(token.value)).active is (not revoke_on_delete)
    assert await manager.store.find_access_tokens(w.key()) == []


@pytest.mark.parametrize("revoke_on_delete", [True, False])
async def test_delete_all_covers_the_subjects_refresh_tokens(
    w: World, revoke_on_delete: bool
) -> None:
    """Issue 6, defect 5: delete_all left the subject's refresh tokens stored, so get()
    could silently mint new tokens after it and the grant stayed alive at the server."""
    manager, scopes, _ = await subject_manager(w, revoke_on_delete=revoke_on_delete)
    await manager.get(w.issuer, "alice", w.client, scopes=scopes)
    [refresh_token] = await manager.store.find_refresh_tokens(w.key("alice"))
    results = await manager.delete_all(w.issuer, "alice", w.client)
    assert [r.kind for r in results] == [TokenKind.REFRESH_TOKEN, TokenKind.ACCESS_TOKEN]
    expected = Revocation.REVOKED if revoke_on_delete else Revocation.NOT_ATTEMPTED
    assert all(r.removed and r.revocation is expected for r in results)
    assert await manager.store.find_refresh_tokens(w.key("alice")) == []
    with pytest.raises(NoTokenAvailableError):
        await manager.get(w.issuer, "alice", w.client, scopes=scopes)
    info = await w.outsider().introspect(refresh_token.value, token_type_hint="refresh_token")
    assert info.active is not revoke_on_delete
    if revoke_on_delete:
        with pytest.raises(InvalidGrantError):
            await w.outsider().refresh(refresh_token.value)


async def test_a_refresh_token_can_be_forgotten_or_revoked(w: World) -> None:
    manager, scopes, original = await subject_manager(w)
    forgotten = await manager.delete_refresh_token(
        original, w.issuer, "alice", w.client, revoke=False
    )
    assert (forgotten.removed, forgotten.revocation) == (True, Revocation.NOT_ATTEMPTED)
    with pytest.raises(NoTokenAvailableError):
        await manager.get(w.issuer, "alice", w.client, scopes=scopes)
    assert (await w.outsider().introspect(original, token_type_hint="refresh_token")).active

    await manager.add_refresh_token(original, w.issuer, "alice", w.client, scopes=scopes)
    await manager.revoke_refresh_token(original, w.issuer, "alice", w.client)
    assert await manager.store.find_refresh_tokens(w.key("alice")) == []
    assert not (await w.outsider().introspect(original, token_type_hint="refresh_token")).active
    with pytest.raises(InvalidGrantError):
        await w.outsider().refresh(original)
