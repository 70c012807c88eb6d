"""httpcore's own connect, recorded and kept on loopback: tests that must prove "no
connection to a metadata address" cannot let a packet go there, so they prove that no
connection was attempted.

`record_connects` replaces ``httpcore.AnyIOBackend.connect_tcp``, under both the
operator's guarded backend and httpcore's default one, with one that records the host it
is asked for, connects to loopback addresses for real and refuses every other host there,
before any packet is sent. It affects the test's process only (the operator of
tests/operator runs in a thread of it; its API server calls do not go through httpcore).
"""

from __future__ import annotations

from typing import Any

import httpcore
import pytest

LOOPBACK = ("127.0.0.1", "127.0.0.2", "localhost", "::1")


def record_connects(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The hosts httpcore's connect is asked for from now on, in order."""
    attempted: list[str] = []
    real = httpcore.AnyIOBackend.connect_tcp

    async def connect_tcp(
        self: httpcore.AnyIOBackend, host: str, port: int, *args: Any, **kwargs: Any
    ) -> httpcore.AsyncNetworkStream:
        attempted.append(host)
        if host in LOOPBACK:
            return await real(self, host, port, *args, **kwargs)
        raise httpcore.ConnectError("the test refuses every address but loopback")

    monkeypatch.setattr(httpcore.AnyIOBackend, "connect_tcp", connect_tcp)
    return attempted
