"""Many distinct tokens at once: the library against raw httpx at the same concurrency.

Both sides issue ``COUNT`` client_credentials tokens, ``CONCURRENCY`` at a time
(the pool's connection limit, so no request waits for a connection), each for a
distinct request (the ``audience`` parameter differs, so nothing is shared),
over one pooled ``httpx.AsyncClient`` with the same connection limits. The
library also stores every token and looks it up first; the ratio of
throughputs (library / raw, higher is better, goal >= 0.9) shows what that costs.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable

import httpx

from bench.common import Setup, at_most
from oauth2_token_operator.manager import CLIENT_CREDENTIALS, InMemoryTokenStore, TokenManager
from oauth2_token_operator.oauth2 import OAuth2Transport

COUNT = 1000
CONCURRENCY = 100
"""httpx's default ``max_connections``, which the library's transport uses too."""
ROUNDS = 5


async def _timed(issue: Callable[[int], Awaitable[None]]) -> float:
    """Tokens per second of ``COUNT`` issuances, after one untimed warm-up issuance
    (discovery for the library, a first connection for both)."""
    await issue(-1)
    start = time.perf_counter()
    await at_most(CONCURRENCY, (issue(i) for i in range(COUNT)))
    return COUNT / (time.perf_counter() - start)


async def _raw(setup: Setup, round_no: int) -> float:
    async with httpx.AsyncClient(verify=setup.server.ssl_context()) as http:

        async def issue(i: int) -> None:
            form = {**setup.form, "audience": f"https://raw-{round_no}-{i}.example"}
            response = await http.post(setup.server.token_endpoint, data=form, headers=setup.basic)
            response.raise_for_status()
            assert response.json()["access_token"]  # read the token, as any client must

        return await _timed(issue)


async def _library(setup: Setup, round_no: int) -> float:
    transport = OAuth2Transport()
    manager = TokenManager(InMemoryTokenStore(), transport=transport)
    try:

        async def issue(i: int) -> None:
            await manager.get(
                setup.issuer, CLIENT_CREDENTIALS, setup.client, scopes=["read"],
                resources=[setup.server.resource], audience=f"https://lib-{round_no}-{i}.example",
            )  # fmt: skip

        return await _timed(issue)
    finally:
        await transport.aclose()


async def run(setup: Setup) -> None:
    raw: list[float] = []
    library: list[float] = []
    for round_no in range(ROUNDS):  # alternate, so drift on the machine hits both sides
        raw.append(await _raw(setup, round_no))
        library.append(await _library(setup, round_no))
    raw_rate, library_rate = statistics.median(raw), statistics.median(library)
    print(f"{COUNT} distinct concurrent issuances, median of {ROUNDS} rounds:")
    print(f"  baseline: raw httpx, same pool limits       = 1.00 ({raw_rate:.0f} tokens/s)")
    print(f"  TokenManager.get (store + single-flight)    = {library_rate / raw_rate:.2f}"
          f" ({library_rate:.0f} tokens/s)")  # fmt: skip
