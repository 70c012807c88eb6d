"""Every OAuth2 call ends by its total deadline, and its errors name their cause.

oidc-provider cannot be made to stall or trickle, so these faults come from
the scripted local server (``tests/faults.py``). No assertion here measures
time: a missing deadline shows as the ``wait_for`` guard firing (a hang).
"""

from __future__ import annotations

import asyncio
import random
import socket

import pytest

from oauth2_token_operator.manager import CLIENT_CREDENTIALS, InMemoryTokenStore, TokenManager
from oauth2_token_operator.oauth2 import (
    AuthorizationServer,
    ClientConfig,
    DeadlineExceededError,
    IssuerConfig,
    MetadataCache,
    NoResponseError,
    OAuth2Transport,
    RetryPolicy,
    Timeouts,
    TLSConfig,
    UnexpectedStatusError,
)
from oauth2_token_operator.oauth2.transport import Replay
from tests.faults import Drop, Respond, Stall, Trickle, fault_server

#: Far beyond every deadline used here: reaching it means the call hung.
HANG_GUARD = 20.0


class Sleeps:
    """Records the delays instead of waiting them."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def discovery_document(url: str) -> dict[str, str]:
    return {"issuer": url, "token_endpoint": f"{url}/token"}


def client() -> ClientConfig:
    return ClientConfig(client_id="c", client_secret="s")


async def test_a_trickling_token_endpoint_fails_get_at_the_deadline() -> None:
    """Headers at once, then one byte every 2 s: no read ever times out."""
    async with fault_server() as server:
        server.then(Respond(200, discovery_document(server.url)), Trickle(interval=2.0))
        transport = OAuth2Transport(timeouts=Timeouts(read=10.0, total=3.0))
        issuer = IssuerConfig(server.url, allow_insecure_http=True)
        async with TokenManager(InMemoryTokenStore(), transport=transport) as tokens:
            with pytest.raises(DeadlineExceededError) as caught:
                await asyncio.wait_for(
                    tokens.get(
                        issuer=issuer, subject=CLIENT_CREDENTIALS, client=client(), scopes=["read"]
                    ),
                    HANG_GUARD,
                )
        await transport.aclose()
    assert caught.value.retryable
    assert isinstance(caught.value, NoResponseError)
    assert caught.value.endpoint == "token_endpoint"
    assert "3 s deadline" in str(caught.value)


async def test_a_hung_server_is_given_up_at_the_deadline_not_after_every_attempt() -> None:
    """Four attempts of a 10 s read timeout would take 40 s; the deadline is 1.5 s."""
    async with fault_server(Stall(60.0)) as server:
        transport = OAuth2Transport(
            timeouts=Timeouts(read=10.0, total=1.5), retry=RetryPolicy(attempts=4)
        )
        with pytest.raises(DeadlineExceededError):
            await asyncio.wait_for(
                transport.request(
                    "POST", server.url, endpoint="token_endpoint", tls=TLSConfig(),
                    replay=Replay.SAFE,
                ),
                HANG_GUARD,
            )  # fmt: skip
        await transport.aclose()
    assert len(server.requests) == 1


async def test_discovery_and_the_request_share_one_deadline() -> None:
    """A call made of a slow discovery and a token request ends at one deadline."""
    async with fault_server(Trickle(interval=2.0)) as server:
        transport = OAuth2Transport(timeouts=Timeouts(read=10.0, total=2.0))
        authorization_server = AuthorizationServer(
            IssuerConfig(server.url, allow_insecure_http=True),
            client(),
            transport=transport,
            metadata_cache=MetadataCache(transport),
        )
        with pytest.raises(DeadlineExceededError) as caught:
            await asyncio.wait_for(authorization_server.client_credentials(), HANG_GUARD)
        await transport.aclose()
    assert caught.value.endpoint == "discovery"


async def test_nested_deadlines_keep_the_sooner_one() -> None:
    short = OAuth2Transport(timeouts=Timeouts(total=1.0))
    long = OAuth2Transport(timeouts=Timeouts(total=100.0))
    with short.deadline() as outer, long.deadline() as inner:
        assert inner == outer
    with long.deadline() as outer, short.deadline() as inner:
        assert inner < outer
    await short.aclose()
    await long.aclose()


async def test_a_retry_whose_wait_would_pass_the_deadline_is_not_made() -> None:
    sleeps = Sleeps()
    async with fault_server(Respond(503, headers={"Retry-After": "5"})) as server:
        transport = OAuth2Transport(timeouts=Timeouts(total=2.0), sleep=sleeps)
        with pytest.raises(UnexpectedStatusError, match="no time left to retry") as caught:
            await transport.request(
                "POST", server.url, endpoint="token_endpoint", tls=TLSConfig(), replay=Replay.SAFE
            )
        await transport.aclose()
        server.then(Drop())
        # With this seed the first backoff (up to 50 s) is far beyond the 2 s deadline.
        transport = OAuth2Transport(
            timeouts=Timeouts(total=2.0),
            retry=RetryPolicy(attempts=4, base_delay=50.0, max_delay=50.0),
            sleep=sleeps,
            rng=random.Random(3),
        )
        with pytest.raises(NoResponseError, match="no time left to retry"):
            await transport.request(
                "POST", server.url, endpoint="token_endpoint", tls=TLSConfig(), replay=Replay.SAFE
            )
        await transport.aclose()
    assert caught.value.retry_after == 5.0
    assert sleeps.delays == []
    assert len(server.requests) == 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_errors_name_their_cause() -> None:
    transport = OAuth2Transport(
        timeouts=Timeouts(read=0.3, total=10.0), retry=RetryPolicy(attempts=1)
    )
    with pytest.raises(NoResponseError) as refused:
        await transport.request(
            "POST", f"http://127.0.0.1:{free_port()}/token", endpoint="token_endpoint",
            tls=TLSConfig(), replay=Replay.SAFE,
        )  # fmt: skip
    async with fault_server(Stall(5.0)) as server:
        with pytest.raises(NoResponseError) as timed_out:
            await transport.request(
                "POST", server.url, endpoint="token_endpoint", tls=TLSConfig(), replay=Replay.SAFE
            )
    await transport.aclose()
    assert "ConnectError" in str(refused.value)
    assert "connection refused" in str(refused.value).lower()
    assert "ReadTimeout (no data for 0.3 s)" in str(timed_out.value)
    for error in (refused.value, timed_out.value):
        assert not str(error).rstrip().endswith(":")
