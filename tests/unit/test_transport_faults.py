"""Retries, backoff and Retry-After against a scripted local server.

oidc-provider cannot be told to answer 503 or drop a connection on demand,
so these faults come from ``tests/faults.py``; everything else is tested
against the real server.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket

import httpx
import pytest

from oauth2_token_operator.oauth2.authorization_server import AuthorizationServer
from oauth2_token_operator.oauth2.client_auth import ClientConfig
from oauth2_token_operator.oauth2.errors import (
    ConfigurationError,
    DeadlineExceededError,
    InvalidClientError,
    MetadataError,
    NoResponseError,
    UnexpectedStatusError,
)
from oauth2_token_operator.oauth2.metadata import IssuerConfig, MetadataCache
from oauth2_token_operator.oauth2.transport import (
    OAuth2Transport,
    Replay,
    RetryPolicy,
    Timeouts,
    TLSConfig,
)
from tests.faults import Drop, Respond, Stall, fault_server

SECRET = "very-secret-client-secret"


class Sleeps:
    """Records the delays instead of waiting them."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def transport(sleeps: Sleeps, **retry: float) -> OAuth2Transport:
    return OAuth2Transport(
        retry=RetryPolicy(**retry),  # type: ignore[arg-type]
        timeouts=Timeouts(connect=1.0, read=0.5, write=1.0, pool=1.0),
        sleep=sleeps,
        rng=random.Random(7),
    )


async def send(t: OAuth2Transport, url: str, replay: Replay = Replay.SAFE) -> int:
    response = await t.request(
        "POST", url, endpoint="token_endpoint", tls=TLSConfig(), replay=replay, data={"a": "b"}
    )
    return response.status_code


async def test_5xx_is_retried_with_growing_jittered_backoff() -> None:
    sleeps = Sleeps()
    async with fault_server(Respond(503), Respond(502), Respond(500), Respond(200)) as server:
        t = transport(sleeps, attempts=4, base_delay=1.0, max_delay=100.0)
        assert await send(t, server.url) == 200
        await t.aclose()
    assert len(server.requests) == 4
    assert len(sleeps.delays) == 3
    # full jitter: each delay within [0, base * 2**(n-1)]
    for n, delay in enumerate(sleeps.delays, start=1):
        assert 0 <= delay <= 2 ** (n - 1)


async def test_retry_after_is_respected() -> None:
    sleeps = Sleeps()
    async with fault_server(Respond(429, headers={"Retry-After": "3"}), Respond(200)) as server:
        t = transport(sleeps)
        assert await send(t, server.url) == 200
        await t.aclose()
    assert sleeps.delays == [3.0]


async def test_a_retry_after_beyond_the_limit_goes_back_to_the_caller() -> None:
    sleeps = Sleeps()
    async with fault_server(Respond(503, headers={"Retry-After": "120"})) as server:
        t = transport(sleeps, max_retry_after=30.0)
        with pytest.raises(UnexpectedStatusError) as caught:
            await send(t, server.url)
        await t.aclose()
    assert caught.value.retry_after == 120.0
    assert caught.value.status_code == 503
    assert caught.value.retryable
    assert len(server.requests) == 1


async def test_persistent_5xx_gives_up_after_the_attempts() -> None:
    sleeps = Sleeps()
    async with fault_server(Respond(502, {"error": "temporarily_unavailable"})) as server:
        t = transport(sleeps, attempts=3)
        with pytest.raises(UnexpectedStatusError, match=r"HTTP 502 \(temporarily_unavailable\)"):
            await send(t, server.url)
        await t.aclose()
    assert len(server.requests) == 3


async def test_oauth_4xx_errors_are_never_retried() -> None:
    sleeps = Sleeps()
    async with fault_server(Respond(400, {"error": "invalid_grant"})) as server:
        t = transport(sleeps)
        assert await send(t, server.url) == 400
        await t.aclose()
    assert len(server.requests) == 1
    assert sleeps.delays == []


async def test_dropped_connection_is_retried_only_when_replay_is_safe() -> None:
    sleeps = Sleeps()
    async with fault_server(Drop(), Respond(200)) as server:
        t = transport(sleeps)
        assert await send(t, server.url, Replay.SAFE) == 200
        server.then(Drop(), Respond(200))
        # A refresh-token request may have been processed: replaying it would
        # present a consumed refresh token.
        with pytest.raises(NoResponseError, match="RemoteProtocolError"):
            await send(t, server.url, Replay.UNSAFE)
        await t.aclose()
    assert len(server.requests) == 3


async def test_unsafe_requests_are_retried_on_503_but_not_500() -> None:
    sleeps = Sleeps()
    async with fault_server(Respond(503), Respond(200)) as server:
        t = transport(sleeps)
        assert await send(t, server.url, Replay.UNSAFE) == 200
        server.then(Respond(500), Respond(200))
        with pytest.raises(UnexpectedStatusError):
            await send(t, server.url, Replay.UNSAFE)
        await t.aclose()
    assert len(server.requests) == 3


async def test_connection_refused_is_retried_even_when_unsafe() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sleeps = Sleeps()
    t = transport(sleeps, attempts=3)
    with pytest.raises(NoResponseError, match=r"ConnectError.*after 3 attempt"):
        await send(t, f"http://127.0.0.1:{port}/token", Replay.UNSAFE)
    await t.aclose()
    assert len(sleeps.delays) == 2


async def test_a_stalled_server_times_out() -> None:
    sleeps = Sleeps()
    async with fault_server(Stall(2.0)) as server:
        t = transport(sleeps, attempts=2)
        with pytest.raises(NoResponseError, match="ReadTimeout"):
            await send(t, server.url)
        await t.aclose()
    assert len(server.requests) == 2


def discovery_document(url: str) -> dict[str, str]:
    return {
        "issuer": url,
        "token_endpoint": f"{url}/token",
        "revocation_endpoint": f"{url}/revoke",
    }


def authorization_server_at(url: str, t: OAuth2Transport) -> AuthorizationServer:
    return AuthorizationServer(
        IssuerConfig(url, allow_insecure_http=True),
        ClientConfig(client_id="c", client_secret=SECRET),
        transport=t,
        metadata_cache=MetadataCache(t),
    )


async def test_revocation_503_with_retry_after_means_try_later() -> None:
    """RFC 7009 §2.2.1: the token still exists; the caller gets retry_after."""
    async with fault_server() as server:
        server.then(
            Respond(200, discovery_document(server.url)),
            Respond(503, headers={"Retry-After": "60"}),
        )
        t = transport(Sleeps())
        authorization_server = authorization_server_at(server.url, t)
        with pytest.raises(UnexpectedStatusError) as caught:
            await authorization_server.revoke("the-access-token")
        await t.aclose()
    assert caught.value.retry_after == 60.0
    assert caught.value.endpoint == "revocation_endpoint"
    assert "the-access-token" not in str(caught.value)


async def test_error_body_on_401_is_parsed_and_carries_no_secret() -> None:
    async with fault_server() as server:
        server.then(
            Respond(200, discovery_document(server.url)),
            Respond(401, {"error": "invalid_client", "error_description": "client auth failed"},
                    headers={"WWW-Authenticate": 'Basic realm="as"'}),
        )  # fmt: skip
        t = transport(Sleeps())
        authorization_server = authorization_server_at(server.url, t)
        with pytest.raises(InvalidClientError) as caught:
            await authorization_server.client_credentials(frozenset({"read"}))
        await t.aclose()
    assert str(caught.value) == "token_endpoint: invalid_client (HTTP 401)"
    assert SECRET not in str(caught.value)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_metadata_cache_refresh_interval_min_interval_and_keep_last_good() -> None:
    async with fault_server() as server:
        document = discovery_document(server.url)
        server.then(Respond(200, document))
        clock = FakeClock()
        t = transport(Sleeps(), attempts=1)
        cache = MetadataCache(t, refresh_interval=3600, min_fetch_interval=10, clock=clock)
        config = IssuerConfig(server.url, allow_insecure_http=True)

        first = await cache.get(config)
        assert first.token_endpoint == f"{server.url}/token"
        assert len(server.requests) == 1
        # RFC 8414 URL first, and it answered: no fallback request
        assert server.requests[0].path == "/.well-known/oauth-authorization-server"

        clock.now += 3599
        await cache.get(config)
        assert len(server.requests) == 1  # still fresh

        clock.now += 2
        server.then(Respond(500))
        kept = await cache.get(config)  # refresh fails: last good metadata is kept
        assert kept == first
        assert len(server.requests) == 2

        clock.now += 5
        await cache.get(config)
        assert len(server.requests) == 2  # at most one fetch per min_fetch_interval

        clock.now += 10
        server.then(Respond(200, {**document, "token_endpoint": f"{server.url}/token2"}))
        refreshed = await cache.get(config)
        assert refreshed.token_endpoint == f"{server.url}/token2"
        await t.aclose()


async def test_openid_configuration_is_the_fallback_and_failure_is_explained() -> None:
    async with fault_server() as server:
        server.then(Respond(404), Respond(200, discovery_document(server.url)))
        t = transport(Sleeps(), attempts=1)
        cache = MetadataCache(t)
        metadata = await cache.get(IssuerConfig(server.url, allow_insecure_http=True))
        assert metadata.issuer == server.url
        assert [r.path for r in server.requests] == [
            "/.well-known/oauth-authorization-server",
            "/.well-known/openid-configuration",
        ]
        server.then(Respond(404))
        with pytest.raises(MetadataError, match=r"answered HTTP 404.*answered HTTP 404"):
            await MetadataCache(t).get(IssuerConfig(server.url, allow_insecure_http=True))
        await t.aclose()


async def test_overrides_are_merged_over_the_discovered_document() -> None:
    async with fault_server() as server:
        server.then(Respond(200, discovery_document(server.url)))
        t = transport(Sleeps(), attempts=1)
        config = IssuerConfig(
            server.url,
            allow_insecure_http=True,
            metadata_overrides={"introspection_endpoint": f"{server.url}/custom-introspect"},
        )
        metadata = await MetadataCache(t).get(config)
        await t.aclose()
    assert metadata.introspection_endpoint == f"{server.url}/custom-introspect"
    assert metadata.token_endpoint == f"{server.url}/token"


async def test_endpoints_must_be_https_too() -> None:
    t = transport(Sleeps(), attempts=1)
    config = IssuerConfig(
        "https://as.example",
        discovery=False,
        metadata_overrides={"token_endpoint": "http://as.example/token"},
    )
    with pytest.raises(ConfigurationError, match=r"token_endpoint uses plain http") as caught:
        await MetadataCache(t).get(config)
    # The core names its own parameter, not a Kubernetes field.
    assert "allow_insecure_http" in str(caught.value)
    assert "allowInsecureHTTP" not in str(caught.value)
    await t.aclose()


async def test_a_discovered_endpoint_is_named_but_its_url_not_repeated() -> None:
    """The server's document chose the URL: a refusal names the field, never the content
    (which would reach the client's status)."""
    t = transport(Sleeps(), attempts=1)
    planted = "http://as.example/token?<chosen by the server>"
    config = IssuerConfig(
        "https://as.example",
        discovery=False,
        metadata_overrides={"token_endpoint": planted, "jwks_uri": "ftp://x/<chosen>"},
    )
    with pytest.raises(ConfigurationError) as caught:
        await MetadataCache(t).get(config)
    assert "chosen" not in str(caught.value)
    assert "token_endpoint" in str(caught.value) or "jwks_uri" in str(caught.value)
    await t.aclose()


async def test_a_failed_metadata_refresh_warns_once_per_outage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with fault_server() as server:
        document = discovery_document(server.url)
        server.then(Respond(200, document))
        clock = FakeClock()
        t = transport(Sleeps(), attempts=1)
        cache = MetadataCache(t, refresh_interval=60, min_fetch_interval=10, clock=clock)
        config = IssuerConfig(server.url, allow_insecure_http=True)
        await cache.get(config)

        def warnings() -> list[str]:
            return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]

        caplog.set_level(logging.INFO, logger="oauth2_token_operator")
        server.then(Respond(500))
        clock.now += 61
        for _ in range(5):  # every call during the outage, some of them fetching again
            await cache.get(config)
            clock.now += 4
        assert len(server.requests) > 2
        assert len(warnings()) == 1
        assert "keeping the last good metadata" in warnings()[0]

        server.then(Respond(200, document))
        clock.now += 61
        await cache.get(config)  # recovery ends the episode
        assert len(warnings()) == 1

        server.then(Respond(503))
        clock.now += 61
        for _ in range(3):
            await cache.get(config)
            clock.now += 11
        assert len(warnings()) == 2
        await t.aclose()


async def test_a_burst_cut_short_by_its_deadline_leaves_the_pool_usable() -> None:
    """Deadlines that expire while requests queue for a connection must not wedge the pool.

    httpcore 1.0.9 (httpx's pool) leaks a connection slot when a request waiting for a
    connection is cancelled just after the pool handed it a new one (encode/httpcore#1093,
    unfixed there; httpx gets no more releases). Found by the 10 000-token benchmark: the
    authorization server stalled for 30 s under a burst, every waiting request's deadline
    cancelled it, and from then on every token request failed with PoolTimeout against a
    healthy server, until the operator was restarted.

    Five bursts of ten requests per connection against a server that answers none in
    time; then, the server healthy again, a request per connection is answered. The
    scripted server closes every connection after its answer, so each request needs a
    new one, the case that leaks."""
    limit = 4
    t = OAuth2Transport(
        limits=httpx.Limits(max_connections=limit, max_keepalive_connections=limit),
        timeouts=Timeouts(connect=1.0, read=5.0, write=1.0, pool=1.0, total=0.3),
    )
    try:
        async with fault_server(Stall(seconds=1.0)) as server:
            for _ in range(5):  # rounds of a burst that outlasts its deadline
                burst = [send(t, f"{server.url}/token") for _ in range(10 * limit)]
                outcomes = await asyncio.gather(*burst, return_exceptions=True)
                assert all(o == 200 or isinstance(o, DeadlineExceededError) for o in outcomes), {
                    type(o).__name__ + str(o)[:90] for o in outcomes
                }
            server.then(Respond())
            await asyncio.sleep(1.5)  # every stalled answer over: the server is healthy
            answers = await asyncio.gather(*(send(t, f"{server.url}/token") for _ in range(limit)))
            assert answers == [200] * limit
    finally:
        await t.aclose()
