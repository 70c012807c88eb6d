"""``get`` answered from a large store: does the lookup scan every token?

No server is involved: the store is filled with synthetic valid tokens and
``get`` finds its token there. Baseline (same run): the same ``get`` on a store
holding only that token. Two layouts: every token under one key (one client,
distinct audiences: the worst case for an index by key) and one subject per token.
"""

from __future__ import annotations

import asyncio
import statistics
import time

from oauth2_token_operator.manager import (
    CLIENT_CREDENTIALS,
    AccessToken,
    InMemoryTokenStore,
    TokenKey,
    TokenManager,
)
from oauth2_token_operator.oauth2 import ClientConfig, IssuerConfig

SIZES = (1000, 10_000)
ROUNDS = 5
PER_ROUND = 20
ISSUER = IssuerConfig("https://as.example")
CLIENT = ClientConfig(client_id="bench", auth_method="client_secret_basic", client_secret="x")
KEY = TokenKey(ISSUER.issuer, CLIENT_CREDENTIALS, CLIENT.client_id)


def _token(value: str, key: TokenKey = KEY, audience: str | None = None) -> AccessToken:
    now = time.time()
    return AccessToken(
        value=value,
        token_type="Bearer",
        key=key,
        scopes=frozenset({"read"}),
        obtained_at=now,
        expires_at=now + 3600,
        audience=audience,
    )


def _fillers(count: int, layout: str) -> list[AccessToken]:
    if layout == "one key":
        return [_token(f"t{i}", audience=f"https://a{i}.example") for i in range(count)]
    return [
        _token(f"t{i}", key=TokenKey(ISSUER.issuer, f"subject-{i}", CLIENT.client_id))
        for i in range(count)
    ]


async def _per_get_seconds(fillers: list[AccessToken]) -> float:
    store = InMemoryTokenStore()
    for token in fillers:
        await store.put_access_token(token)
    await store.put_access_token(_token("wanted"))
    manager = TokenManager(store)
    try:
        samples = []
        for _ in range(ROUNDS):
            start = time.perf_counter()
            for _ in range(PER_ROUND):
                found = await manager.get(ISSUER, CLIENT_CREDENTIALS, CLIENT, scopes=["read"])
                assert found.value == "wanted"
            samples.append((time.perf_counter() - start) / PER_ROUND)
        return statistics.median(samples)
    finally:
        await manager.aclose()


async def run() -> None:
    baseline = await _per_get_seconds([])
    print(f"get() answered from the store; baseline: a store of 1 token = 1.00"
          f" ({baseline * 1e6:.0f} µs)")  # fmt: skip
    for layout in ("one key", "one subject each"):
        for size in SIZES:
            seconds = await _per_get_seconds(_fillers(size, layout))
            print(f"  {size:>6} tokens, {layout:<16} = {seconds / baseline:8.2f}"
                  f" ({seconds * 1e6:.0f} µs)")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(run())
