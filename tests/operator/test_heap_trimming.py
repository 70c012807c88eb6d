"""The running operator returns freed memory to the system periodically
(`controller.heap.HeapTrimmer`, started with kopf and stopped with it)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from oauth2_token_operator.controller.process import heap
from tests.operator.conftest import wait_for
from tests.operator.runner import OperatorThread


def test_the_operator_trims_its_heaps_until_it_stops(
    operator_factory: Callable[..., OperatorThread], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[float] = []
    monkeypatch.setattr(heap, "trim", lambda: calls.append(time.monotonic()))
    operator = operator_factory(heap_trim_interval=0.05)
    wait_for("three trims", lambda: len(calls) >= 3, timeout=10)
    operator.stop()
    stopped = len(calls)
    time.sleep(0.2)
    assert len(calls) == stopped
