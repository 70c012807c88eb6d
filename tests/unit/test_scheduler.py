"""The renewal scheduler: due order, rescheduling, cancelling, bounded concurrency, and a
failing action that does not stop the others."""

from __future__ import annotations

import asyncio
import time

import pytest

from oauth2_token_operator.controller.scheduler import Scheduler


async def run_for(scheduler: Scheduler[str], seconds: float) -> None:
    task = asyncio.create_task(scheduler.run())
    await asyncio.sleep(seconds)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_actions_run_in_due_order() -> None:
    ran: list[str] = []

    async def action(key: str) -> None:
        ran.append(key)

    scheduler: Scheduler[str] = Scheduler(action, concurrency=1)
    now = time.time()
    scheduler.schedule("late", now + 0.15)
    scheduler.schedule("early", now + 0.05)
    scheduler.poke("now")
    await run_for(scheduler, 0.3)
    assert ran == ["now", "early", "late"]
    assert len(scheduler) == 0


async def test_rescheduling_replaces_and_cancel_removes() -> None:
    ran: list[str] = []

    async def action(key: str) -> None:
        ran.append(key)

    scheduler: Scheduler[str] = Scheduler(action)
    now = time.time()
    scheduler.schedule("a", now + 0.05)
    scheduler.schedule("a", now + 10)  # moved later: not run now
    scheduler.schedule("b", now + 0.05)
    scheduler.cancel("b")
    scheduler.schedule("c", now + 10)
    scheduler.schedule("c", now + 0.05)  # moved earlier
    await run_for(scheduler, 0.2)
    assert ran == ["c"]
    assert scheduler.when("a") == pytest.approx(now + 10)


async def test_an_earlier_entry_wakes_a_sleeping_scheduler() -> None:
    ran: list[str] = []

    async def action(key: str) -> None:
        ran.append(key)

    scheduler: Scheduler[str] = Scheduler(action)
    scheduler.schedule("far", time.time() + 60)
    task = asyncio.create_task(scheduler.run())
    await asyncio.sleep(0.05)
    scheduler.poke("near")
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ran == ["near"]


async def test_concurrency_is_bounded() -> None:
    running = 0
    peak = 0

    async def action(key: str) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.02)
        running -= 1

    scheduler: Scheduler[str] = Scheduler(action, concurrency=3)
    for i in range(12):
        scheduler.poke(f"k{i}")
    await run_for(scheduler, 0.3)
    assert peak == 3


async def test_a_failing_action_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    ran: list[str] = []

    async def action(key: str) -> None:
        if key == "bad":
            raise RuntimeError("boom")
        ran.append(key)

    scheduler: Scheduler[str] = Scheduler(action, concurrency=1)
    scheduler.poke("bad")
    scheduler.schedule("good", time.time() + 0.02)
    await run_for(scheduler, 0.2)
    assert ran == ["good"]
    assert any("scheduled action for bad failed" in r.getMessage() for r in caplog.records)
