"""Stop what the tests started when the interpreter exits or is told to stop.

Anything with a ``stop()`` method (a control plane, a kind cluster) is ``track``-ed while
it runs. At interpreter exit and on SIGTERM/SIGHUP every tracked object is stopped; the
signal then gets its previous disposition (so the process still dies of it). Ctrl-C is
left alone: it raises KeyboardInterrupt, which unwinds the context managers and fixtures
that stop things the ordinary way.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import threading
from types import FrameType
from typing import Any, Protocol


class Stoppable(Protocol):
    def stop(self) -> None: ...


_PR_SET_PDEATHSIG = 1
_live: list[Stoppable] = []
_live_lock = threading.RLock()  # re-entered from signal handlers
_previous_handlers: dict[int, Any] = {}
_installed = False


def track(thing: Stoppable) -> None:
    """Stop ``thing`` at exit or on SIGTERM/SIGHUP unless it is untracked first."""
    _install()
    with _live_lock:
        if thing not in _live:
            _live.append(thing)


def untrack(thing: Stoppable) -> None:
    with _live_lock:
        if thing in _live:
            _live.remove(thing)


def stop_all() -> None:
    """Stop every tracked object, the most recent first."""
    with _live_lock:
        things = list(reversed(_live))
    for thing in things:
        thing.stop()


def pdeathsig() -> None:  # pragma: no cover - runs in the child between fork and exec
    """``preexec_fn``: the kernel kills the child when the thread that started it dies
    (even by SIGKILL)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def child_preexec() -> Any:
    """``pdeathsig`` where it is safe: only the main thread outlives the whole run."""
    return pdeathsig if threading.current_thread() is threading.main_thread() else None


def _on_signal(signum: int, frame: FrameType | None) -> None:
    stop_all()
    previous = _previous_handlers.get(signum, signal.SIG_DFL)
    if callable(previous):
        previous(signum, frame)
        return
    signal.signal(signum, previous)
    os.kill(os.getpid(), signum)


def _install() -> None:
    global _installed
    if _installed:
        return
    _installed = True
    atexit.register(stop_all)
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGHUP):
        previous = signal.getsignal(signum)
        if previous is signal.SIG_IGN:
            continue
        _previous_handlers[signum] = previous
        signal.signal(signum, _on_signal)
