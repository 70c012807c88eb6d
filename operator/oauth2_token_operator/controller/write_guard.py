"""A last line of defence against write loops: no request writes more than its budget.

No correct schedule writes a request's Secret and status more than about twice a second
(a renewal is never scheduled sooner than a second after issuance, see
`policies.renewal`), so more than `limit` writes of one request within `window` seconds
is a defect of the operator's. A defect of that kind once renewed a token of unknown
lifetime into itself about a hundred times a second. The guard logs it once at ERROR,
counts it in a metric, and holds the request's reconciles back until the window has
passed, so that no such defect can hammer the API server.
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
        self._clock = clock
        self._limit = limit
        self._window = window
        self._on_trip = on_trip
        self._writes: dict[Hashable, deque[float]] = {}
        self._held_until: dict[Hashable, float] = {}

    def wrote(self, key: Hashable, what: str) -> None:
        """Count one write of `key`'s; past the budget, hold the key back."""
        now = self._clock()
        writes = self._writes.setdefault(key, deque(maxlen=self._limit + 1))
        writes.append(now)
        while writes and writes[0] <= now - self._window:
            writes.popleft()
        if len(writes) > self._limit and key not in self._held_until:
            self._held_until[key] = writes[0] + self._window
            log.error(
                "%s: %d writes within %.0fs (the last: %s): a write loop, which is a bug of"
                " the operator's; holding this request back until the window has passed",
                key, len(writes), self._window, what,
            )  # fmt: skip
            if self._on_trip is not None:
                self._on_trip()

    def held_until(self, key: Hashable) -> float | None:
        """While `key` is held back, when it may go on; else `None`."""
        until = self._held_until.get(key)
        if until is None:
            return None
        if self._clock() >= until:
            del self._held_until[key]
            self._writes.pop(key, None)
            return None
        return until

    def forget(self, key: Hashable) -> None:
        self._writes.pop(key, None)
        self._held_until.pop(key, None)
