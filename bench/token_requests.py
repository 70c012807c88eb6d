"""What the token manager saves per token, against the real oidc-provider.

Run: ``make bench`` (or ``.venv/bin/python -m bench requests``).

Baseline (measured in the same run): a client_credentials request on a fresh
HTTPS connection each time, which is what a CronJob running curl does. Then:
the same request over the transport's pooled connection, a ``get`` answered
from the store, and 50 concurrent ``get`` calls collapsed into one request.
Printed as ratios to the baseline; absolute times depend on the machine.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

import httpx

from bench.common import Setup
from oauth2_token_operator.manager import CLIENT_CREDENTIALS, InMemoryTokenStore, TokenManager
from oauth2_token_operator.oauth2 import OAuth2Transport

ROUNDS = 5
PER_ROUND = 40


async def per_call_seconds(call: Callable[[], Awaitable[object]]) -> float:
    """Median over rounds of the mean time of one call."""
    samples = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for _ in range(PER_ROUND):
            await call()
        samples.append((time.perf_counter() - start) / PER_ROUND)
    return statistics.median(samples)


async def run(setup: Setup) -> None:
    server, issuer, client = setup.server, setup.issuer, setup.client

    async def fresh_connection() -> None:
        async with httpx.AsyncClient(verify=server.ssl_context()) as http:
            response = await http.post(server.token_endpoint, data=setup.form, headers=setup.basic)
            response.raise_for_status()

    transport = OAuth2Transport()
    manager = TokenManager(InMemoryTokenStore(), transport=transport)
    authorization_server = manager.server(issuer, client)

    async def pooled_connection() -> None:
        await authorization_server.client_credentials(
            frozenset({"read"}), resources=[server.resource]
        )

    async def from_store() -> None:
        await manager.get(
            issuer, CLIENT_CREDENTIALS, client, scopes=["read"], resources=[server.resource]
        )

    await from_store()  # warm: discovery, the first token, the pooled connection
    baseline = await per_call_seconds(fresh_connection)
    pooled = await per_call_seconds(pooled_connection)
    cached = await per_call_seconds(from_store)

    before = server.counters().get(f"client={client.client_id} /token", 0)
    concurrent = TokenManager(InMemoryTokenStore(), transport=transport)
    await asyncio.gather(
        *(concurrent.get(issuer, CLIENT_CREDENTIALS, client, scopes=["write"],
                         resources=[server.resource]) for _ in range(50))
    )  # fmt: skip
    requests = server.counters().get(f"client={client.client_id} /token", 0) - before
    await transport.aclose()

    print(f"baseline: token request on a fresh TLS connection = 1.00 ({baseline * 1e3:.2f} ms)")
    print(f"token request on the pooled connection             = {pooled / baseline:.3f}")
    print(f"get() answered from the store                      = {cached / baseline:.4f}")
    print(f"50 concurrent get() for one key: {requests} token request(s) (baseline: 50)")
