"""TokenManager against oidc-provider; each seed defect (shared/seed/SEMANTICS.md) has a test
that fails on the seed's behaviour."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable

import pytest

from oauth2_token_operator.manager import (
    CLIENT_CREDENTIALS,
    InMemoryTokenStore,
    Revocation,
    TokenKey,
    TokenManager,
    TokenManagerConfig,
)
from oauth2_token_operator.oauth2 import (
    AuthorizationServer,
    ClientConfig,
    HTTPTransport,
    IssuerConfig,
    MetadataCache,
    RetryPolicy,
)
from oauth2_token_operator.oauth2.errors import (
    InactiveTokenError,
    InvalidGrantError,
    NoTokenAvailableError,
    TransportError,
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


def make_manager(
    transport: HTTPTransport, clock: Clock | None = None, **config: object
) -> TokenManager:
    return TokenManager(
        InMemoryTokenStore(),
        transport=transport,
        config=TokenManagerConfig(**config),  # type: ignore[arg-type]
        clock=clock or time.time,
    )


def plain_server(
    issuer: IssuerConfig, client: ClientConfig, transport: HTTPTransport
) -> AuthorizationServer:
    """Talks to the server behind the manager's back (as another party would)."""
    return AuthorizationServer(
        issuer, client, transport=transport, metadata_cache=MetadataCache(transport)
    )


@pytest.fixture
def cc_scopes(authserver: AuthServer) -> frozenset[str]:
    return frozenset(authserver.resource_scopes[:2])


@pytest.fixture
def basic(config_for: Callable[..., ClientConfig]) -> ClientConfig:
    return config_for("client_secret_basic")


async def test_client_credentials_grant_when_nothing_is_stored(
    authserver: AuthServer,
    issuer: IssuerConfig,
    transport: HTTPTransport,
    basic: ClientConfig,
    counters: Counters,
) -> None:
    """Seed defect 1: `get` with :client_credentials crashed when nothing was stored."""
    manager = make_manager(transport)
    token = await manager.get(issuer, CLIENT_CREDENTIALS, basic, ["read"],
                              resources=[authserver.resource])  # fmt: skip
    assert token.scopes == {"read"}
    assert token.key == TokenKey(authserver.issuer, CLIENT_CREDENTIALS, basic.client_id)
    again = await manager.get(issuer, CLIENT_CREDENTIALS, basic, ["read"],
                              resources=[authserver.resource])  # fmt: skip
    assert again.value == token.value
    assert counters.delta(f"client={basic.client_id} /token") == 1


async def test_fifty_concurrent_gets_make_one_token_request(
    authserver: AuthServer,
    issuer: IssuerConfig,
    transport: HTTPTransport,
    basic: ClientConfig,
    cc_scopes: frozenset[str],
    counters: Counters,
) -> None:
    """Seed defect 5 (no single-flight)."""
    manager = make_manager(transport)
    tokens = await asyncio.gather(
        *(manager.get(issuer, CLIENT_CREDENTIALS, basic, cc_scopes, resources=[authserver.resource])
          for _ in range(50))
    )  # fmt: skip
    assert len({t.value for t in tokens}) == 1
    assert counters.delta(f"client={basic.client_id} /token") == 1


async def test_exact_scope_matching_against_the_server(
    authserver: AuthServer,
    issuer: IssuerConfig,
    transport: HTTPTransport,
    basic: ClientConfig,
) -> None:
    manager = make_manager(transport)
    res = [authserver.resource]
    read = await manager.get(issuer, CLIENT_CREDENTIALS, basic, ["read"], resources=res)
    both = await manager.get(issuer, CLIENT_CREDENTIALS, basic, ["read", "write"], resources=res)
    assert both.value != read.value  # a superset is not the same scope set
    assert both.scopes == {"read", "write"}
    assert (await manager.get(issuer, CLIENT_CREDENTIALS, basic, ["write", "read"],
                              resources=res)).value == both.value  # fmt: skip
    assert (await manager.get(issuer, CLIENT_CREDENTIALS, basic, ["read"],
                              resources=res)).value == read.value  # fmt: skip
    anything = await manager.get(issuer, CLIENT_CREDENTIALS, basic, None, resources=res)
    assert anything.value in (read.value, both.value)
    # An unknown scope is dropped by the server: asking again returns the same token.
    odd = await manager.get(issuer, CLIENT_CREDENTIALS, basic, ["read", "unknown-scope"],
                            resources=res)  # fmt: skip
    assert odd.scopes == {"read"}
    assert (await manager.get(issuer, CLIENT_CREDENTIALS, basic, ["read", "unknown-scope"],
                              resources=res)).value == odd.value  # fmt: skip


async def test_introspection_is_answered_from_the_store_within_the_interval(
    authserver: AuthServer,
    issuer: IssuerConfig,
    transport: HTTPTransport,
    basic: ClientConfig,
    cc_scopes: frozenset[str],
    counters: Counters,
) -> None:
    clock = Clock()
    manager = make_manager(transport, clock, min_introspect_interval=30)
    outsider = plain_server(issuer, basic, transport)
    external = await outsider.client_credentials(cc_scopes, resources=[authserver.resource])
    path = f"client={basic.client_id} /token/introspection"

    registered = await manager.register(external.access_token, "Bearer", None, issuer, basic)
    assert counters.delta(path) == 1  # auto_introspect
    assert registered.active is True
    for _ in range(5):
        assert (await manager.introspect(external.access_token, issuer, basic)).active
    assert counters.delta(path) == 1  # all within min_introspect_interval
    clock.offset += 31
    assert (await manager.introspect(external.access_token, issuer, basic)).active
    assert counters.delta(path) == 2


async def test_an_inactive_token_is_not_handed_out(
    authserver: AuthServer,
    issuer: IssuerConfig,
    transport: HTTPTransport,
    basic: ClientConfig,
    cc_scopes: frozenset[str],
) -> None:
    """Seed defect 2: validity ignored introspection's `active`."""
    clock = Clock()
    manager = make_manager(transport, clock)
    res = [authserver.resource]
    token = await manager.get(issuer, CLIENT_CREDENTIALS, basic, cc_scopes, resources=res)
    # Revoked by someone else; the manager learns it through introspection.
    await plain_server(issuer, basic, transport).revoke(token.value)
    clock.offset += 31
    assert (await manager.introspect(token.value, issuer, basic)).active is False
    fresh = await manager.get(issuer, CLIENT_CREDENTIALS, basic, cc_scopes, resources=res)
    assert fresh.value != token.value


async def test_expiry_with_skew_and_proactive_renewal(
    authserver: AuthServer,
    issuer: IssuerConfig,
    transport: HTTPTransport,
    config_for: Callable[..., ClientConfig],
) -> None:
    """Seed defects 2 and 7: no skew margin, no renewal ahead of expiry."""
    short = config_for("short_ttl")
    clock = Clock()
    manager = make_manager(transport, clock, clock_skew=1.0)
    res = [authserver.resource]
    first = await manager.get(issuer, CLIENT_CREDENTIALS, short, ["read"], resources=res)
    assert first.expires_at is not None
    lifetime = first.expires_at - first.obtained_at
    assert 0 < lifetime <= 3
    assert (await manager.get(issuer, CLIENT_CREDENTIALS, short, ["read"],
                              resources=res)).value == first.value  # fmt: skip
    # Asking for more remaining lifetime than it has renews ahead of expiry.
    ahead = await manager.get(issuer, CLIENT_CREDENTIALS, short, ["read"], resources=res,
                              min_remaining=lifetime)  # fmt: skip
    assert ahead.value != first.value
    # Within the skew margin of exp, a token counts as expired.
    clock.offset += lifetime - 0.5
    after = await manager.get(issuer, CLIENT_CREDENTIALS, short, ["read"], resources=res)
    assert after.value not in (first.value, ahead.value)


async def test_refresh_persists_the_rotated_token_and_never_revokes_its_predecessor(
    authserver: AuthServer,
    issuer: IssuerConfig,
    transport: HTTPTransport,
    basic: ClientConfig,
    counters: Counters,
) -> None:
    """Seed defect 5: the rotated refresh token must be kept, the old one not revoked."""
    client = authserver.clients["client_secret_basic"]
    grant = authserver.password_grant(client, authserver.user_scopes)
    manager = make_manager(transport)
    scopes = frozenset(authserver.user_scopes)
    await manager.add_refresh_token(grant["refresh_token"], issuer, "alice", basic, scopes)
    key = TokenKey(authserver.issuer, "alice", basic.client_id)

    narrowed = sorted(scopes)[:1]
    first = await manager.get(issuer, "alice", basic, narrowed)
    stored = await manager.store.find_refresh_tokens(key)
    assert len(stored) == 1
    assert stored[0].value != grant["refresh_token"]  # the successor replaced it
    assert stored[0].scopes == scopes  # and keeps the grant's scope

    # The successor works: a different scope set needs another refresh.
    second = await manager.get(issuer, "alice", basic, scopes)
    assert second.value != first.value
    assert counters.delta("/token/revocation") == 0


async def test_concurrent_refreshes_of_one_subject_do_not_burn_the_grant(
    authserver: AuthServer,
    issuer: IssuerConfig,
    transport: HTTPTransport,
    basic: ClientConfig,
) -> None:
    """Two scope sets at once: without one refresh per subject at a time, the second
    request presents an already rotated refresh token and oidc-provider revokes the grant."""
    client = authserver.clients["client_secret_basic"]
    grant = authserver.password_grant(client, authserver.user_scopes)
    manager = make_manager(transport)
    scopes = sorted(authserver.user_scopes)
    await manager.add_refresh_token(grant["refresh_token"], issuer, "alice", basic, scopes)
    requests = [scopes[:1], scopes[1:2], scopes, scopes[:1]]
    tokens = await asyncio.gather(*(manager.get(issuer, "alice", basic, s) for s in requests))
    assert len({t.value for t in tokens[:3]}) == 3
    assert tokens[3].value == tokens[0].value


async def test_a_dead_refresh_token_is_forgotten_and_reported(
    authserver: AuthServer,
    issuer: IssuerConfig,
    transport: HTTPTransport,
    basic: ClientConfig,
) -> None:
    manager = make_manager(transport)
    await manager.add_refresh_token("not-a-real-refresh-token", issuer, "bob", basic, ["openid"])
    with pytest.raises(InvalidGrantError) as caught:
        await manager.get(issuer, "bob", basic, ["openid"])
    assert "not-a-real-refresh-token" not in str(caught.value)
    assert (
        await manager.store.find_refresh_tokens(TokenKey(authserver.issuer, "bob", basic.client_id))
        == []
    )
    with pytest.raises(NoTokenAvailableError):
        await manager.get(issuer, "bob", basic, ["openid"])


async def test_register_replaces_metadata_with_introspection_and_refuses_inactive(
    authserver: AuthServer,
    issuer: IssuerConfig,
    transport: HTTPTransport,
    basic: ClientConfig,
    cc_scopes: frozenset[str],
) -> None:
    manager = make_manager(transport)
    outsider = plain_server(issuer, basic, transport)
    external = await outsider.client_credentials(cc_scopes, resources=[authserver.resource])
    claimed = {"exp": 1, "scope": "made-up"}
    registered = await manager.register(external.access_token, "Bearer", claimed, issuer, basic)
    assert registered.scopes == cc_scopes
    assert registered.expires_at is not None
    assert registered.expires_at > time.time()
    assert registered.key.subject is CLIENT_CREDENTIALS
    # It is now what `get` hands out for those scopes.
    got = await manager.get(issuer, CLIENT_CREDENTIALS, basic, cc_scopes)
    assert got.value == external.access_token

    await outsider.revoke(external.access_token)
    with pytest.raises(InactiveTokenError):
        await make_manager(transport).register(external.access_token, "Bearer", None, issuer, basic)

    trusted = await make_manager(transport).register(
        "opaque-from-elsewhere", "Bearer", {"exp": 2_000_000_000, "scope": "x y"}, issuer, basic,
        auto_introspect=False,
    )  # fmt: skip
    assert trusted.expires_at == 2_000_000_000
    assert trusted.scopes == {"x", "y"}
    assert trusted.active is None


async def test_revoke_marks_the_stored_token_inactive(
    authserver: AuthServer,
    issuer: IssuerConfig,
    transport: HTTPTransport,
    basic: ClientConfig,
    cc_scopes: frozenset[str],
) -> None:
    manager = make_manager(transport)
    res = [authserver.resource]
    token = await manager.get(issuer, CLIENT_CREDENTIALS, basic, cc_scopes, resources=res)
    await manager.revoke(token.value, issuer, basic)
    assert not (await plain_server(issuer, basic, transport).introspect(token.value)).active
    stored = await manager.store.get_access_token(authserver.issuer, token.value)
    assert stored is not None
    assert stored.active is False
    assert (await manager.get(issuer, CLIENT_CREDENTIALS, basic, cc_scopes,
                              resources=res)).value != token.value  # fmt: skip


async def test_delete_revokes_and_says_so(
    authserver: AuthServer,
    issuer: IssuerConfig,
    transport: HTTPTransport,
    basic: ClientConfig,
    cc_scopes: frozenset[str],
) -> None:
    manager = make_manager(transport)
    outsider = plain_server(issuer, basic, transport)
    res = [authserver.resource]
    token = await manager.get(issuer, CLIENT_CREDENTIALS, basic, cc_scopes, resources=res)
    result = await manager.delete(token.value, issuer, basic)
    assert (result.removed, result.revocation) == (True, Revocation.REVOKED)
    assert not (await outsider.introspect(token.value)).active
    assert await manager.store.get_access_token(authserver.issuer, token.value) is None

    kept = await manager.get(issuer, CLIENT_CREDENTIALS, basic, cc_scopes, resources=res)
    result = await manager.delete(kept.value, issuer, basic, revoke=False)
    assert result.revocation is Revocation.NOT_ATTEMPTED
    assert (await outsider.introspect(kept.value)).active


async def test_delete_reports_a_failed_revocation(
    authserver: AuthServer,
    issuer: IssuerConfig,
    transport: HTTPTransport,
    basic: ClientConfig,
    cc_scopes: frozenset[str],
) -> None:
    """The seed could not tell whether revocation worked; we say it failed and why."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    unreachable_revocation = IssuerConfig(
        issuer=issuer.issuer,
        ca_pem=issuer.ca_pem,
        metadata_overrides={"revocation_endpoint": f"https://127.0.0.1:{closed_port}/revoke"},
    )
    manager = TokenManager(
        InMemoryTokenStore(),
        transport=HTTPTransport(retry=RetryPolicy(attempts=1)),
    )
    token = await manager.get(unreachable_revocation, CLIENT_CREDENTIALS, basic, cc_scopes,
                              resources=[authserver.resource])  # fmt: skip
    result = await manager.delete(token.value, unreachable_revocation, basic)
    assert result.revocation is Revocation.FAILED
    assert isinstance(result.error, TransportError)
    assert result.removed
    await manager.aclose()


@pytest.mark.parametrize("revoke_on_delete", [True, False])
async def test_delete_all_revokes_at_the_right_issuer_and_honours_the_option(
    authserver: AuthServer,
    issuer: IssuerConfig,
    transport: HTTPTransport,
    basic: ClientConfig,
    revoke_on_delete: bool,
) -> None:
    """Seed defect 4: wrong issuer for revocation, and revoke_on_delete ignored."""
    manager = make_manager(transport, revoke_on_delete=revoke_on_delete)
    res = [authserver.resource]
    tokens = [await manager.get(issuer, CLIENT_CREDENTIALS, basic, s, resources=res)
              for s in (["read"], ["write"], ["read", "write"])]  # fmt: skip
    results = await manager.delete_all(issuer, CLIENT_CREDENTIALS, basic)
    assert len(results) == 3
    expected = Revocation.REVOKED if revoke_on_delete else Revocation.NOT_ATTEMPTED
    assert {r.revocation for r in results} == {expected}
    outsider = plain_server(issuer, basic, transport)
    for token in tokens:
        assert (await outsider.introspect(token.value)).active is (not revoke_on_delete)
    key = TokenKey(authserver.issuer, CLIENT_CREDENTIALS, basic.client_id)
    assert await manager.store.find_access_tokens(key) == []
