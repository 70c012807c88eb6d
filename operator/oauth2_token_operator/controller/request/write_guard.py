"""A last line of defence against write loops: no request writes more than its budget.

No correct schedule writes a request's Secret and status more than about twice a second
(a renewal is never scheduled sooner than a second after issuance, see
`policies.renewal`), so more than `limit` writes of one request within `window` seconds
is a defect of the operator's. A defect of that kind once renewed a token of unknown
lifetime into itself about a hundred times a second. The guard logs it once at ERROR,
counts it in a metric, and holds the request's reconciles back until the window has
passed, so that no such defect can hammer the API server.

`WriteGuard` is the rule (one per reconciler); each request's `WriteBudget` (in its
`RequestRecord`) counts that request's writes by it.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Hashable

log = logging.getLogger(__name__)

WRITE_LIMIT = 240
"""Writes (Secret and status) of one request allowed within `WRITE_WINDOW`."""
WRITE_WINDOW = 60.0
"""Seconds."""


class WriteGuard:
    def __init__(
        self,
        clock: Callable[[], float],
        *,
        limit: int = WRITE_LIMIT,
        window: float = WRITE_WINDOW,
        on_trip: Callable[[], None] | None = None,
    ) -> None:
        self.clock = clock
        self.limit = limit
        self.window = window
        self.on_trip = on_trip

    def budget(self, key: Hashable) -> WriteBudget:
        """A new request's budget, `key` naming it in the log."""
        return WriteBudget(self, key)


class WriteBudget:
    """One request's writes within the window, and while it is held back, until when."""

    __slots__ = ("_guard", "_held_until", "_key", "_writes")

    def __init__(self, guard: WriteGuard, key: Hashable) -> None:
        self._guard = guard
        self._key = key
        self._writes: deque[float] | None = None
        self._held_until: float | None = None

    def wrote(self, what: str) -> None:
        """Count one write; past the budget, hold the request back."""
        guard = self._guard
        now = guard.clock()
        if self._writes is None:
            self._writes = deque(maxlen=guard.limit + 1)
        writes = self._writes
        writes.append(now)
        while writes and writes[0] <= now - guard.window:
            writes.popleft()
        if len(writes) > guard.limit and self._held_until is None:
            self._held_until = writes[0] + guard.window
            log.error(
                "%s: %d writes within %.0fs (the last: %s): a write loop, which is a bug of"
                " the operator's; holding this request back until the window has passed",
                self._key, len(writes), guard.window, what,
            )  # fmt: skip
            if guard.on_trip is not None:
                guard.on_trip()

    def held_until(self) -> float | None:
        """While the request is held back, when it may go on; else `None`."""
        until = self._held_until
        if until is None:
            return None
        if self._guard.clock() >= until:
            self._held_until = None
            self._writes = None
            return None
        return until
