"""A TCP pass-through on 127.0.0.1 that a test can close and open: the authorization
server "goes down" and "comes back" while the real one keeps running (a session fixture
shared by other tests). TLS passes through untouched, so the client still verifies the
real server's certificate. Runs its own event loop in a thread, for synchronous tests.

While `stalling`, the gate accepts connections and never answers (nor forwards): a call
is then in flight for as long as the test likes, e.g. to kill its caller mid-call."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator


class Gate:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.open = True
        self.refused = 0
        """Connections turned away while closed."""
        self.stalling = False
        self.stalled = 0
        """Connections accepted while stalling (each stays unanswered until its client
        goes away or the gate stops)."""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.open:
            self.refused += 1
            writer.close()  # down: the connection ends before any answer
            return
        if self.stalling:
            self.stalled += 1
            await self._hold(reader, writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            self._tasks.discard(task)

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read and drop what the client sends until it goes away; never answer."""
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                while await reader.read(65536):
                    pass
        finally:
            self._tasks.discard(task)
            writer.close()

    def start(self) -> Gate:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", 0), self._loop
        ).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@contextlib.contextmanager
def gate(target_port: int) -> Iterator[Gate]:
    opened = Gate(target_port).start()
    try:
        yield opened
    finally:
        opened.stop()
