"""Deadlines that expire while requests queue for a connection must not wedge the pool.

httpcore 1.0.9 (httpx's pool) leaks a connection slot when a request waiting for a
connection is cancelled just after the pool handed it a new one (encode/httpcore#1093,
unfixed there; httpx gets no more releases). Found by the 10 000-token benchmark: the
authorization server stalled for 30 s under a burst, every waiting request's deadline
cancelled it, and from then on every token request failed with PoolTimeout against a
healthy server, until the operator was restarted.

The stall and the burst come from the scripted server of ``tests/faults.py`` (the real
oidc-provider cannot be made to hang on demand); it closes every connection after its
answer, so each request needs a new one, the case that leaks.
"""

from __future__ import annotations

import asyncio

import httpx

from oauth2_token_operator.oauth2.errors import DeadlineExceededError
from oauth2_token_operator.oauth2.transport import OAuth2Transport, Replay, Timeouts, TLSConfig
from tests.faults import Respond, Stall, fault_server

LIMIT = 4
"""Connections per pool: a burst ten times as large queues for them."""


async def send(transport: OAuth2Transport, url: str) -> int:
    response = await transport.request(
        "POST", url, endpoint="token_endpoint", tls=TLSConfig(), replay=Replay.SAFE, data={}
    )
    return response.status_code


async def test_a_burst_cut_short_by_its_deadline_leaves_the_pool_usable() -> None:
    """Five bursts of ten requests per connection against a server that answers none
    in time; then, the server healthy again, a request per connection is answered."""
    transport = OAuth2Transport(
        limits=httpx.Limits(max_connections=LIMIT, max_keepalive_connections=LIMIT),
        timeouts=Timeouts(connect=1.0, read=5.0, write=1.0, pool=1.0, total=0.3),
    )
    try:
        async with fault_server(Stall(seconds=1.0)) as server:
            for _ in range(5):  # rounds of a burst that outlasts its deadline
                burst = [send(transport, f"{server.url}/token") for _ in range(10 * LIMIT)]
                outcomes = await asyncio.gather(*burst, return_exceptions=True)
                assert all(o == 200 or isinstance(o, DeadlineExceededError) for o in outcomes), {
                    type(o).__name__ + str(o)[:90] for o in outcomes
                }
            server.then(Respond())
            await asyncio.sleep(1.5)  # every stalled answer over: the server is healthy
            answers = await asyncio.gather(
                *(send(transport, f"{server.url}/token") for _ in range(LIMIT))
            )
            assert answers == [200] * LIMIT
    finally:
        await transport.aclose()
