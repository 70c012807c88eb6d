"""Waiting for something a test cannot be told about, only poll for."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30.0, every: float = 0.2) -> Any:
    """Poll `check` until it returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


async def until(condition: Callable[[], bool], patience: float = 10.0) -> None:
    """In a test on the event loop: until `condition` holds, however slow the machine
    (the patience is a failure's deadline, never a margin a passing test relies on)."""
    deadline = time.monotonic() + patience
    while not condition():
        assert time.monotonic() < deadline, f"not within the test's patience ({patience}s)"
        await asyncio.sleep(0.005)
