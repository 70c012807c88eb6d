"""Memory the operator has freed goes back to the system (glibc's allocator).

A burst of issuances, or a restart, allocates and frees hundreds of megabytes: response
bodies and decoded objects in the kubernetes client's threads, watch events and JSON in
the event loop. glibc keeps what is freed inside its heaps and gives memory back to the
system only from a heap's top, so a heap whose top is still in use holds its free middle
for good. It also gives each new thread a heap of its own, up to eight per core, each
left with free holes after the burst. The process's RSS stays at the
burst's high-water mark. Measured (BENCHMARKS.md, "Fifth round": 2000 tokens issued, the
operator in process, 10 s idle): 251 MB of RSS, 53 MB of it free inside glibc's heaps.

Two remedies through glibc's own interface, both measured there:

* `limit_arenas`: at most two heaps for all threads, as ``MALLOC_ARENA_MAX=2`` would set
  (free memory after the burst 53 → 16 MB, RSS 251 → 216 MB);
* `HeapTrimmer`: every so often ``malloc_trim(0)``, which returns every whole free page
  inside the heaps, not only the top (RSS 251 → 202 MB).

Both do nothing where the C library is not glibc (musl, macOS): `glibc()` is None.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

M_ARENA_MAX = -8
"""`mallopt`'s parameter for the most heaps ("arenas") glibc makes (glibc's malloc.h)."""
ARENAS = 2
"""One for the event loop's thread and one shared by the kubernetes client's threads:
they hardly allocate at the same time, since the GIL lets one thread run Python at once."""


@functools.cache
def glibc() -> ctypes.CDLL | None:
    """The process's C library if it is glibc, else None."""
    try:
        libc = ctypes.CDLL(None)  # the symbols already loaded into the process
    except OSError:
        return None
    if not all(hasattr(libc, f) for f in ("gnu_get_libc_version", "malloc_trim", "mallopt")):
        return None
    return libc


def limit_arenas(arenas: int = ARENAS) -> bool:
    """At most `arenas` heaps from now on (call it before threads start allocating: a heap
    already made stays). True if glibc took the setting."""
    libc = glibc()
    return bool(libc is not None and libc.mallopt(M_ARENA_MAX, arenas))


def trim() -> bool:
    """Returns the free pages of every heap to the system. True if any was returned."""
    libc = glibc()
    return bool(libc is not None and libc.malloc_trim(0))


class HeapTrimmer:
    """Trims the heaps every `interval` seconds, in a thread (it walks every free chunk
    and holds each heap's lock meanwhile: a few milliseconds after a burst, next to
    nothing when there is nothing to return).

    Periodic rather than after each burst: an idle operator costs one call per interval,
    and what a burst freed goes back within one interval of its end."""

    def __init__(self, interval: float, trim_heaps: Callable[[], object] | None = None) -> None:
        """`trim_heaps`: this module's `trim` unless given (looked up at each call)."""
        self.interval = interval
        self._trim = trim_heaps or (lambda: trim())
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.interval > 0 and self._task is None:
            self._task = asyncio.create_task(self.run(), name="heap-trimmer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await asyncio.to_thread(self._trim)
            except Exception:  # memory not returned is no reason to stop trimming
                log.warning("Could not return freed memory to the system", exc_info=True)
