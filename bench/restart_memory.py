"""What a restart's memory peak is made of: a census by type at the peak.

``python -m bench.restart_memory N`` starts the control plane and oidc-provider, runs the
operator in this process (as `bench.operator_memory` does), issues N distinct requests,
stops that operator and starts another. At a start kopf runs no handler before every
listed object is indexed, and every object's worker waits meanwhile: the peak is the
instant kopf's set of index toggles turns on for the last time. The census is taken at
that instant, on the event loop, inside the toggle change that turns it on
(`controller.kopf_toggles._change`, wrapped here): every live Python object by type,
against the same census once the first operator has stopped, per token.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from kopf._cogs.aiokits import aiotoggles

from bench.operator_env import load_average
from bench.operator_memory import by_type, in_process_setup, issue, rss
from oauth2_token_operator.controller import kopf_toggles
from tests.operator.runner import OperatorThread

SETTLE = 30.0
"""Seconds the restarted operator runs before the census at its peak is printed."""


@dataclass
class Snapshot:
    rss: int = 0
    sizes: Counter[str] = field(default_factory=Counter)
    counts: Counter[str] = field(default_factory=Counter)
    tasks: int = 0
    at: float = 0.0

    @classmethod
    def take(cls) -> Snapshot:
        gc.collect()
        sizes, counts = by_type()
        return cls(rss(), sizes, counts, at=time.monotonic())


@dataclass
class PeakSpy:
    """Takes a snapshot whenever a toggle set turns on, once armed; the last one is the
    peak (kopf's index set may turn on early, before every kind's watcher exists)."""

    armed: bool = False
    peak: Snapshot | None = None
    transitions: int = 0

    def install(self) -> Callable[[], None]:
        original = kopf_toggles._change

        async def spying(toggle_set: aiotoggles.ToggleSet, change: Callable[[], None]) -> None:
            was_on = toggle_set.is_on()
            await original(toggle_set, change)
            if self.armed and not was_on and toggle_set.is_on():
                self.transitions += 1
                self.peak = Snapshot.take()
                self.peak.tasks = len(asyncio.all_tasks())

        kopf_toggles._change = spying

        def uninstall() -> None:
            kopf_toggles._change = original

        return uninstall


def main(n: int) -> None:
    logging.basicConfig(level=logging.WARNING)
    print(f"load average before: {load_average()}")
    spy = PeakSpy()
    uninstall = spy.install()
    with in_process_setup("bench-restart-memory-") as (bench, cluster, namespace, config):
        # What the peak holds, not what a trim returned meanwhile.
        config = config.model_copy(update={"heap_trim_interval": 0})
        first = OperatorThread(cluster.configuration(), config).start(timeout=60)
        try:
            bench.wait_client_ready(namespace, "idp")
            issue(bench, namespace, "tok", n)
            time.sleep(5)
        finally:
            first.stop()
        del first
        base = Snapshot.take()
        print(f"{n} issued, that operator stopped: RSS {base.rss / 2**20:.1f} MiB")
        spy.armed = True
        started = time.monotonic()
        second = OperatorThread(cluster.configuration(), config).start(timeout=120)
        try:
            time.sleep(SETTLE)
        finally:
            second.stop()
            uninstall()
        report(spy, base, started, n)


def report(spy: PeakSpy, base: Snapshot, started: float, n: int) -> None:
    peak = spy.peak
    if peak is None:
        print("kopf's index set never turned on")
        return
    print(
        f"peak {peak.at - started:.1f} s after the restart ({spy.transitions} turn(s) on):"
        f" RSS {peak.rss / 2**20:.1f} MiB, {peak.tasks} asyncio tasks"
    )
    grown = peak.sizes.copy()
    grown.subtract(base.sizes)
    counts = peak.counts.copy()
    counts.subtract(base.counts)
    total = sum(grown.values())
    print(f"live Python objects grown: {total / n:.0f} B per token; by type, largest 25:")
    for name, size in grown.most_common(25):
        print(f"  {name:<32} {size / n:>7.0f} B {counts[name] / n:>7.2f} objects per token")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
