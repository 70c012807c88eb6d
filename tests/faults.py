"""A scripted HTTP/1.1 server on 127.0.0.1 for fault injection.

Used only for faults a real authorization server cannot be made to produce on
demand: 5xx and 429 answers with ``Retry-After``, dropped connections and
stalls. Every OAuth2 behaviour is tested against the real oidc-provider.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Respond:
    status: int = 200
    body: object = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Drop:
    """Close the connection after reading the request, without an answer."""


@dataclass(frozen=True)
class Stall:
    """Read the request and answer nothing for ``seconds``."""

    seconds: float = 5.0


@dataclass(frozen=True)
class Trickle:
    """Send the status line and headers at once, then one body byte every ``interval``.

    Every single read finishes well within a read timeout, so only a deadline
    over the whole call ends it.
    """

    interval: float = 2.0
    length: int = 10_000


Action = Respond | Drop | Stall | Trickle


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class FaultServer:
    """Answers each request with the next scripted action; the last one repeats.

    With ``tls`` (a server-side context) it speaks https; ``url`` always names
    127.0.0.1, and ``port`` is there to build URLs with another host name.
    """

    def __init__(self, *actions: Action, tls: ssl.SSLContext | None = None) -> None:
        self.script: list[Action] = list(actions) or [Respond()]
        self.requests: list[Request] = []
        self.url = ""
        self.port = 0
        self._tls = tls
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._arrived = asyncio.Event()

    def then(self, *actions: Action) -> None:
        self.script = list(actions)

    async def wait_for_requests(self, count: int) -> None:
        """Until ``count`` requests have arrived (answered or not)."""
        while len(self.requests) < count:
            self._arrived.clear()
            await self._arrived.wait()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self._tls)
        self.port = self._server.sockets[0].getsockname()[1]
        self.url = f"{'https' if self._tls else 'http'}://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            # Stalled or trickling answers would otherwise outlive the test.
            for task in list(self._handlers):
                task.cancel()
            await asyncio.gather(*self._handlers, return_exceptions=True)
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._answer(reader, writer)
        except asyncio.CancelledError:
            pass  # stop(): end quietly (asyncio logs a handler that ends cancelled)
        finally:
            self._handlers.discard(task)
            writer.close()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    name, value = line.split(":", 1)
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append(Request(method, path, headers, body))
            self._arrived.set()
            action = self.script.pop(0) if len(self.script) > 1 else self.script[0]
            if isinstance(action, Stall):
                await asyncio.sleep(action.seconds)
            elif isinstance(action, Trickle):
                writer.write(
                    f"HTTP/1.1 200 X\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {action.length}\r\n\r\n".encode()
                )
                for _ in range(action.length):
                    writer.write(b" ")
                    await writer.drain()
                    await asyncio.sleep(action.interval)
            elif isinstance(action, Respond):
                payload = json.dumps(action.body).encode()
                extra = "".join(f"{k}: {v}\r\n" for k, v in action.headers.items())
                writer.write(
                    f"HTTP/1.1 {action.status} X\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(payload)}\r\nConnection: close\r\n{extra}\r\n".encode()
                    + payload
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass


@asynccontextmanager
async def fault_server(
    *actions: Action, tls: ssl.SSLContext | None = None
) -> AsyncIterator[FaultServer]:
    server = FaultServer(*actions, tls=tls)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
