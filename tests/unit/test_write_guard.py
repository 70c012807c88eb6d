"""The write guard: a request writing past its budget is held back, once logged, counted."""

from __future__ import annotations

import logging

import pytest

from oauth2_token_operator.controller.request.record import RequestRecords
from oauth2_token_operator.controller.request.write_guard import WriteGuard


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_writes_within_the_budget_hold_nothing_back() -> None:
    clock = Clock()
    trips: list[None] = []
    guard = WriteGuard(clock, limit=10, window=60.0, on_trip=lambda: trips.append(None))
    a = guard.budget("a")
    for _ in range(100):  # 100 writes over 10 minutes: one every 6 s
        a.wrote("status")
        assert a.held_until() is None
        clock.now += 6.0
    assert trips == []


def test_a_write_loop_is_held_back_until_its_window_passes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    trips: list[None] = []
    guard = WriteGuard(clock, limit=10, window=60.0, on_trip=lambda: trips.append(None))
    caplog.set_level(logging.ERROR, "oauth2_token_operator.controller.request.write_guard")
    loop, other = guard.budget("loop"), guard.budget("other")
    other.wrote("status")
    for _ in range(11):
        assert loop.held_until() is None
        loop.wrote("Secret s")
        clock.now += 0.01
    assert loop.held_until() == pytest.approx(1060.0)
    assert other.held_until() is None, "only the looping request"
    loop.wrote("status")  # a write already in flight: no second report
    assert len(trips) == 1
    assert len([r for r in caplog.records if "write loop" in r.getMessage()]) == 1
    assert "loop: 11 writes" in caplog.records[0].getMessage(), "names the request"
    clock.now = 1060.0
    assert loop.held_until() is None
    loop.wrote("status")
    assert loop.held_until() is None, "a fresh window after the hold"


def test_forget_drops_a_request() -> None:
    clock = Clock()
    records = RequestRecords(WriteGuard(clock, limit=1, window=60.0))
    records.of(("ns", "a")).writes.wrote("status")
    records.of(("ns", "a")).writes.wrote("status")
    assert records.of(("ns", "a")).writes.held_until() is not None
    records.forget(("ns", "a"))
    assert records.of(("ns", "a")).writes.held_until() is None
