"""Freed memory goes back to the system (`controller.heap`): glibc's heaps are trimmed
and limited in number, and the operator trims them periodically."""

from __future__ import annotations

import asyncio
import itertools
import logging
import subprocess
import sys
import textwrap

import pytest

from oauth2_token_operator.controller.process import heap
from tests.memory import rss
from tests.polling import until

needs_glibc = pytest.mark.skipif(heap.glibc() is None, reason="the C library is not glibc")

MiB = 2**20


@needs_glibc
def test_trim_returns_the_free_middle_of_a_heap() -> None:
    """Blocks freed below one still in use stay in the process until trimmed: 100 MB of
    1500-byte objects (too large for Python's own allocator: glibc's), one in ten kept."""
    blocks = [bytes(1500) for _ in range(70_000)]
    kept = blocks[::10]
    del blocks
    before = rss()
    assert heap.trim()
    assert before - rss() > 50 * MiB
    assert len(kept) == 7000


ARENAS = """
import ctypes, sys, tempfile, threading
sys.path[:0] = {path!r}
from oauth2_token_operator.controller.process import heap
if {limit}:
    assert heap.limit_arenas()
started = threading.Barrier(8)
def allocate():
    started.wait()  # all at once: each thread's first allocation picks its heap
    blocks = [bytes(1000) for _ in range(1000)]
    started.wait()
threads = [threading.Thread(target=allocate) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
with tempfile.NamedTemporaryFile() as out:
    stream = libc.fopen(out.name.encode(), b"w")
    libc.malloc_info(0, ctypes.c_void_p(stream))
    libc.fclose(ctypes.c_void_p(stream))
    print(open(out.name).read().count("<heap nr="))
"""


@needs_glibc
@pytest.mark.parametrize(("limit", "most"), [(True, heap.ARENAS), (False, None)])
def test_limit_arenas_bounds_the_heaps_of_many_threads(limit: bool, most: int | None) -> None:
    """Eight threads allocating: one heap each without the limit (glibc allows eight per
    core), at most two with it. In a process of its own: heaps once made stay."""
    script = textwrap.dedent(ARENAS).format(path=sys.path, limit=limit)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    heaps = int(out.stdout)
    if most is not None:
        assert heaps <= most
    else:
        assert heaps > heap.ARENAS


async def test_the_trimmer_trims_every_interval_until_stopped() -> None:
    calls: list[float] = []
    loop = asyncio.get_running_loop()
    trimmer = heap.HeapTrimmer(0.02, trim_heaps=lambda: calls.append(loop.time()))
    trimmer.start()
    await until(lambda: len(calls) >= 3)
    await trimmer.stop()
    stopped = len(calls)
    await asyncio.sleep(0.06)
    assert stopped >= 3
    assert len(calls) == stopped
    assert all(b - a >= 0.015 for a, b in itertools.pairwise(calls))


async def test_an_interval_of_zero_never_trims() -> None:
    calls: list[int] = []
    trimmer = heap.HeapTrimmer(0, trim_heaps=lambda: calls.append(1))
    trimmer.start()
    await asyncio.sleep(0.05)
    await trimmer.stop()
    assert calls == []


async def test_a_failing_trim_is_logged_and_tried_again(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []

    def failing() -> None:
        calls.append(1)
        raise OSError("no")

    trimmer = heap.HeapTrimmer(0.02, trim_heaps=failing)
    with caplog.at_level(logging.WARNING, logger=heap.__name__):
        trimmer.start()
        await until(lambda: len(calls) >= 2)
        await trimmer.stop()
    assert len(calls) >= 2
    assert "Could not return freed memory" in caplog.text
