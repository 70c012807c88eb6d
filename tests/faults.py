"""A scripted HTTP/1.1 server on 127.0.0.1 for fault injection.

Used only for faults a real authorization server cannot be made to produce on
demand: 5xx and 429 answers with ``Retry-After``, dropped connections and
stalls. Every OAuth2 behaviour is tested against the real oidc-provider.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field

from tests.loopback import LoopbackServer, read_head


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


@dataclass(frozen=True)
class RawRespond:
    """Answer these exact body bytes (with ``headers``, e.g. a Content-Encoding): what a
    hostile server can send that no real one would, such as a gzip bomb."""

    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 200


@dataclass(frozen=True)
class Endless:
    """A 200 whose chunked body never ends (``chunk`` after ``chunk``) until the client
    hangs up."""

    chunk: bytes = b" " * 16_384


Action = Respond | Drop | Stall | Trickle | RawRespond | Endless


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class FaultServer(LoopbackServer):
    """Answers each request with the next scripted action; the last one repeats.

    With ``tls`` (a server-side context) it speaks https; ``url`` always names
    127.0.0.1, and ``port`` is there to build URLs with another host name.
    """

    def __init__(self, *actions: Action, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(tls=tls)
        self.script: list[Action] = list(actions) or [Respond()]
        self.requests: list[Request] = []
        self._arrived = asyncio.Event()

    def then(self, *actions: Action) -> None:
        self.script = list(actions)

    async def wait_for_requests(self, count: int) -> None:
        """Until ``count`` requests have arrived (answered or not)."""
        while len(self.requests) < count:
            self._arrived.clear()
            await self._arrived.wait()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        (method, path, _), headers = await read_head(reader)
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
        elif isinstance(action, RawRespond):
            extra = "".join(f"{k}: {v}\r\n" for k, v in action.headers.items())
            writer.write(
                f"HTTP/1.1 {action.status} X\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(action.body)}\r\nConnection: close\r\n{extra}\r\n".encode()
                + action.body
            )
            await writer.drain()
        elif isinstance(action, Endless):
            writer.write(
                b"HTTP/1.1 200 X\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
            )
            chunk = f"{len(action.chunk):x}\r\n".encode() + action.chunk + b"\r\n"
            with contextlib.suppress(ConnectionError):
                for _ in range(100_000):  # bounded: 1.6 GB at most, far past any cap
                    writer.write(chunk)
                    await writer.drain()
        elif isinstance(action, Respond):
            payload = json.dumps(action.body).encode()
            extra = "".join(f"{k}: {v}\r\n" for k, v in action.headers.items())
            writer.write(
                f"HTTP/1.1 {action.status} X\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n{extra}\r\n".encode()
                + payload
            )
            await writer.drain()


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


@contextmanager
def threaded_server(*actions: Action) -> Iterator[FaultServer]:
    """For synchronous tests: a `FaultServer` served from its own thread."""
    loop = asyncio.new_event_loop()
    server = FaultServer(*actions)
    loop.run_until_complete(server.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@contextmanager
def stalled_server() -> Iterator[str]:
    """For synchronous tests: an endpoint URL that accepts connections and never answers
    (a hung peer, which the real server cannot be made to be), served from its own thread."""
    with threaded_server(Stall(seconds=3600)) as server:
        yield f"{server.url}/hung"
