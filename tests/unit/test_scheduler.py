"""The renewal scheduler: due order, rescheduling, cancelling, bounded concurrency, and a
failing action that does not stop the others.

No test depends on how fast the machine is: each runs the scheduler until what it
expects has happened (`run_until`, `until`), however long that takes, and what must not
happen is due far beyond any test's duration (10 s and more)."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Callable
from types import SimpleNamespace

import kopf
import pytest

from oauth2_token_operator.client_config import Found, SecretKey
from oauth2_token_operator.controller.process import handlers
from oauth2_token_operator.controller.shared.awaited import Awaited
from oauth2_token_operator.controller.shared.ledger import RequestKey
from oauth2_token_operator.controller.shared.scheduler import Scheduler
from tests.polling import until


async def run_until(scheduler: Scheduler[str], condition: Callable[[], bool]) -> None:
    """Serve the scheduler until `condition` holds, then stop it."""
    task = asyncio.create_task(scheduler.run())
    try:
        await until(condition)
    finally:
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
    await run_until(scheduler, lambda: len(ran) == 3)
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
    await run_until(scheduler, lambda: "c" in ran)
    await asyncio.sleep(0.1)  # "b" (cancelled) was due with "c": it would run by now
    assert ran == ["c"]
    assert scheduler.when("a") == pytest.approx(now + 10)


async def test_an_earlier_entry_wakes_a_sleeping_scheduler() -> None:
    ran: list[str] = []

    async def action(key: str) -> None:
        ran.append(key)

    scheduler: Scheduler[str] = Scheduler(action)
    scheduler.schedule("far", time.time() + 60)
    task = asyncio.create_task(scheduler.run())
    await until(lambda: scheduler._sleeping_until > time.time())  # asleep for "far"
    scheduler.poke("near")
    await until(lambda: ran == ["near"])
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


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
    await run_until(scheduler, lambda: running == 0 and len(scheduler) == 0)
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
    await run_until(scheduler, lambda: ran == ["good"])
    assert any("scheduled action for bad failed" in r.getMessage() for r in caplog.records)


def serving_tasks(name: str) -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == name and not t.done()]


async def test_start_serves_with_one_task_however_often_called() -> None:
    ran: list[str] = []

    async def action(key: str) -> None:
        ran.append(key)

    scheduler: Scheduler[str] = Scheduler(action)
    for _ in range(3):
        scheduler.start("renewals")
    assert len(serving_tasks("renewals")) == 1
    scheduler.poke("now")
    await until(lambda: ran == ["now"])
    await scheduler.stop()
    assert serving_tasks("renewals") == []


async def test_handlers_start_one_task_from_each_objects_copy_of_the_memo() -> None:
    """kopf hands each object a shallow copy of the memo: starting the schedulers from
    every object's handler must still leave one task per scheduler (it once started two
    more per object, each woken by every `schedule`)."""

    async def action(key: object) -> None:
        return None

    async def read(namespace: str, keys: list[SecretKey]) -> dict[tuple[str, str], Found]:
        return {}

    memo = kopf.Memo()
    requests: Scheduler[RequestKey] = Scheduler(action)
    clients: Scheduler[RequestKey] = Scheduler(action)
    awaited = Awaited(read, requests=requests, clients=clients, ttl=60)
    memo.ctx = SimpleNamespace(
        request_scheduler=requests, client_scheduler=clients, awaited=awaited
    )
    for _ in range(5):
        handlers._ensure_schedulers(copy.copy(memo))
    names = ("renewals", "client-checks", "missing-references")
    assert [len(serving_tasks(name)) for name in names] == [1, 1, 1]
    await memo.ctx.request_scheduler.stop()
    await memo.ctx.client_scheduler.stop()
    await memo.ctx.awaited.poller.stop()
    assert [serving_tasks(name) for name in names] == [[], [], []]


async def test_a_later_entry_does_not_wake_a_sleeping_scheduler() -> None:
    """Each wake-up looks at the heap (and reads the clock); entries due after the one the
    scheduler sleeps for must not wake it, or a burst of issuances costs a wake-up each."""
    looks = 0

    def clock() -> float:
        nonlocal looks
        looks += 1
        return time.time()

    async def action(key: str) -> None:
        return None

    scheduler: Scheduler[str] = Scheduler(action, clock=clock)
    scheduler.schedule("soonest", time.time() + 60)
    scheduler.start("renewals")
    await until(lambda: scheduler._sleeping_until > time.time())  # asleep for "soonest"
    asleep = looks
    for i in range(100):
        scheduler.schedule(f"later-{i}", time.time() + 120 + i)
        await asyncio.sleep(0)
    assert looks == asleep
    scheduler.schedule("sooner", time.time() + 30)  # earlier: it must plan for it
    await until(lambda: looks > asleep and scheduler._sleeping_until < time.time() + 31)
    await asyncio.sleep(0.02)
    assert looks == asleep + 1
    await scheduler.stop()


async def test_the_same_plan_again_adds_no_heap_entry() -> None:
    """Every reconcile of a settled request plans the same renewal again: the heap must
    not keep one entry per reconcile (memory held per request until the renewal)."""

    async def action(key: str) -> None:
        return None

    scheduler: Scheduler[str] = Scheduler(action)
    when = time.time() + 600
    for _ in range(5):
        scheduler.schedule("a", when)
    assert scheduler.entries == 1
    scheduler.schedule("a", when + 1)  # a new plan: a new entry, the old one stale
    assert scheduler.entries == 2
    assert scheduler.when("a") == when + 1
    ran: list[str] = []

    async def record(key: str) -> None:
        ran.append(key)

    again: Scheduler[str] = Scheduler(record)
    soon = time.time() + 0.05
    again.schedule("b", soon)
    again.schedule("b", soon)
    await run_until(again, lambda: ran == ["b"])
    await asyncio.sleep(0.1)
    assert ran == ["b"]  # planned twice alike: run once


class Hung:
    """Actions of keys named ``hung-…`` wait until released (a server that never answers);
    the others end at once."""

    def __init__(self) -> None:
        self.running: set[str] = set()
        self.peak = 0
        self.done: list[str] = []
        self.release = asyncio.Event()

    async def __call__(self, key: str) -> None:
        self.running.add(key)
        self.peak = max(self.peak, sum(k.startswith("hung") for k in self.running))
        try:
            if key.startswith("hung"):
                await self.release.wait()
        finally:
            self.running.discard(key)
        self.done.append(key)


def by_prefix(key: str) -> str:
    return key.split("-")[0]


async def test_a_group_holds_at_most_its_share_of_the_slots() -> None:
    """Ten keys of a hung server fall due before five of a healthy one: two slots of four
    go to the hung ones, the healthy ones run in the others meanwhile, and the other hung
    keys wait without a slot, still planned."""
    action = Hung()
    scheduler: Scheduler[str] = Scheduler(action, concurrency=4, per_group=2, group_of=by_prefix)
    now = time.time()
    for i in range(10):
        scheduler.schedule(f"hung-{i}", now - 10 + i)
    for i in range(5):
        scheduler.schedule(f"ok-{i}", now)
    task = asyncio.create_task(scheduler.run())
    await until(lambda: len(action.done) == 5)
    assert sorted(action.done) == [f"ok-{i}" for i in range(5)]
    assert action.running == {"hung-0", "hung-1"}, "the two due first, no more"
    assert len(scheduler) == 8, "the others are still planned"
    assert scheduler.when("hung-5") == pytest.approx(now - 5)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_parked_keys_run_in_due_order_as_their_group_frees_slots() -> None:
    action = Hung()
    scheduler: Scheduler[str] = Scheduler(action, concurrency=4, per_group=2, group_of=by_prefix)
    now = time.time()
    for i in range(6):
        scheduler.schedule(f"hung-{i}", now - 10 + i)
    task = asyncio.create_task(scheduler.run())
    await until(lambda: action.running == {"hung-0", "hung-1"})
    await until(lambda: scheduler.entries == 0)  # the others fell due: parked
    scheduler.cancel("hung-3")  # cancelled while it waits: it never runs
    scheduler.cancel("hung-4")
    action.release.set()  # the server answers again
    await until(lambda: len(scheduler) == 0 and not action.running)
    assert action.done[:2] == ["hung-0", "hung-1"]
    assert action.done[2:] == ["hung-2", "hung-5"]
    assert scheduler._parked == {}, "nothing left behind"
    assert scheduler._in_group == {}
    assert action.peak == 2
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_keys_of_no_group_are_not_bounded_by_one() -> None:
    action = Hung()
    scheduler: Scheduler[str] = Scheduler(
        action, concurrency=3, per_group=1, group_of=lambda key: None
    )
    for i in range(3):
        scheduler.poke(f"hung-{i}")
    task = asyncio.create_task(scheduler.run())
    await until(lambda: len(action.running) == 3)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
