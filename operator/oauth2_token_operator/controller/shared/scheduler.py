"""One scheduler for every timed action (renewals, retries, introspections).

A heap of (due time, key) served by a single task, instead of one kopf daemon or timer
per object: 10 000 requests cost 10 000 heap entries, not 10 000 sleeping tasks, and
the work that falls due runs with bounded concurrency. Rescheduling a key replaces its
time (older heap entries are skipped when popped).

One task serves the heap (`start`, idempotent). While it sleeps, only an entry earlier
than the one it sleeps for wakes it: the thousands of renewals planned minutes ahead by
a burst of issuances cost a heap push each, not a wake-up each.

Keys may belong to groups (`group_of`; for requests, the authorization server their token
requests go to), and at most `per_group` of the slots run keys of one group. A key that
falls due while its group has all of its share waits without a slot, parked, and goes
back into the heap, with the time it was due, when one of its group's actions ends. So a
server that hangs holds its share of the slots for as long as its calls take (the
library's deadline), and keys of every other server still find slots: limiting the calls
themselves instead would leave each call waiting for its server with a slot in hand.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar, cast

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)


class Scheduler(Generic[K]):
    def __init__(
        self,
        action: Callable[[K], Awaitable[None]],
        *,
        concurrency: int = 16,
        per_group: int | None = None,
        group_of: Callable[[K], Hashable | None] = lambda _: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`per_group`: at most that many of the `concurrency` slots run keys of one group
        (`group_of` a key; None: in no group); None: no such bound."""
        self._action = action
        self._clock = clock
        self._heap: list[tuple[float, int, K]] = []
        self._due: dict[K, float] = {}
        self._counter = itertools.count()
        self._wakeup = asyncio.Event()
        self._slots = asyncio.Semaphore(concurrency)
        self._per_group = per_group
        self._group_of = group_of
        self._in_group: dict[Hashable, int] = {}
        """Actions running per group."""
        self._parked: dict[Hashable, dict[K, None]] = {}
        """Per group whose share is taken, its keys that fell due meanwhile, in order; each
        stays planned in `_due` (so `when`, `cancel` and `len` see it), not in the heap."""
        self._running: set[asyncio.Task[None]] = set()
        self._sleeping_until = float("-inf")
        """While the serving task sleeps, until when (`inf`: nothing due); `-inf` awake."""
        self._task: asyncio.Task[None] | None = None

    def start(self, name: str) -> None:
        """Serve the heap in a task of its own; calling it again while it runs does nothing
        (each kopf handler may call it: there must be one task, not one per call)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self.run(), name=name)

    async def stop(self) -> None:
        """Cancel the task `start` made (and the actions running)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def schedule(self, key: K, when: float) -> None:
        """Run `action(key)` at `when` (epoch seconds), replacing any earlier plan.

        The same plan again (every reconcile of a settled request plans its renewal
        anew) adds nothing: its heap entry is there already. Otherwise each reconcile
        would leave one more entry, skipped only when it falls due, minutes later."""
        if self._due.get(key) == when:
            return
        self._due[key] = when
        heapq.heappush(self._heap, (when, next(self._counter), key))
        if when < self._sleeping_until:
            self._wakeup.set()

    def poke(self, key: K) -> None:
        """Run `action(key)` as soon as a slot is free."""
        self.schedule(key, self._clock())

    def cancel(self, key: K) -> None:
        self._due.pop(key, None)

    def when(self, key: K) -> float | None:
        return self._due.get(key)

    def __len__(self) -> int:
        return len(self._due)

    @property
    def entries(self) -> int:
        """Heap entries, those of replaced or cancelled plans included (they leave when
        they fall due)."""
        return len(self._heap)

    async def run(self) -> None:
        """Serve the heap until cancelled; cancelling also cancels the actions running."""
        try:
            while True:
                await self._next_due()
        finally:
            for task in list(self._running):
                task.cancel()
            await asyncio.gather(*self._running, return_exceptions=True)

    async def _next_due(self) -> None:
        while self._heap:
            when, _, key = self._heap[0]
            if self._due.get(key) != when:
                heapq.heappop(self._heap)  # rescheduled or cancelled since
                continue
            delay = when - self._clock()
            if delay > 0:
                timer = asyncio.get_running_loop().call_later(delay, self._wakeup.set)
                try:
                    await self._sleep(until=when)
                finally:
                    timer.cancel()
                return
            heapq.heappop(self._heap)
            group = self._group_of(key) if self._per_group is not None else None
            if group is not None and self._in_group.get(group, 0) >= cast(int, self._per_group):
                self._parked.setdefault(group, {})[key] = None  # no slot until one ends
                continue
            del self._due[key]
            await self._slots.acquire()
            if group is not None:  # only this task starts actions: the count is still below
                self._in_group[group] = self._in_group.get(group, 0) + 1
            task = asyncio.create_task(self._run_one(key, group))
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        await self._sleep(until=float("inf"))

    async def _sleep(self, *, until: float) -> None:
        """Until `_wakeup` is set: by the timer, or by `schedule` for an entry due sooner."""
        self._wakeup.clear()
        self._sleeping_until = until
        try:
            await self._wakeup.wait()
        finally:
            self._sleeping_until = float("-inf")

    async def _run_one(self, key: K, group: Hashable | None) -> None:
        try:
            await self._action(key)
        except Exception:
            # The action reports its own failures (status, Events); this is a bug net.
            log.exception("scheduled action for %s failed", key)
        finally:
            self._slots.release()
            if group is not None:
                self._group_ended(group)

    def _group_ended(self, group: Hashable) -> None:
        """One of `group`'s actions ended: its first parked key still planned goes back
        into the heap, with the time it is planned for (due already, so it runs next)."""
        left = self._in_group[group] - 1
        if left:
            self._in_group[group] = left
        else:
            del self._in_group[group]
        parked = self._parked.get(group)
        while parked:
            key = next(iter(parked))
            del parked[key]
            when = self._due.get(key)
            if when is not None:  # else cancelled, or run meanwhile (its group changed)
                heapq.heappush(self._heap, (when, next(self._counter), key))
                if when < self._sleeping_until:
                    self._wakeup.set()
                break
        if not parked:
            self._parked.pop(group, None)
