"""Per-key locks that are not kept between uses (one per request would otherwise stay
for the request's lifetime)."""

from __future__ import annotations

import asyncio
import gc

from oauth2_token_operator.manager.keyed_locks import KeyedLocks


async def test_a_key_has_one_lock_while_it_is_held_or_awaited() -> None:
    locks: KeyedLocks[str] = KeyedLocks()
    order: list[str] = []

    async def work(name: str, key: str) -> None:
        async with locks(key):
            order.append(f"{name} in")
            await asyncio.sleep(0.01)
            order.append(f"{name} out")

    await asyncio.gather(work("a", "k"), work("b", "k"), work("c", "other"))
    assert order.index("a out") < order.index("b in")  # same key: one at a time
    assert order.index("c in") < order.index("a out")  # another key: not held up


async def test_a_lock_nobody_holds_or_awaits_is_not_kept() -> None:
    locks: KeyedLocks[str] = KeyedLocks()
    async with locks("k"):
        assert len(locks) == 1
        assert locks("k") is locks("k")
    gc.collect()  # (a plain refcount drop suffices in CPython; this makes it certain)
    assert len(locks) == 0
