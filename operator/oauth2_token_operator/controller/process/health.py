"""The liveness endpoint while kopf's own is not up yet.

kopf serves `/healthz` once its startup handlers have finished. Before that the process
is alive but busy: standing by for the Lease (`run`), or listing every object the
informers keep (`handlers.start`, seconds with tens of thousands of tokens, and for as
long as the API server does not answer). The kubelet would otherwise count those as
failed probes and restart a healthy process.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


@contextlib.asynccontextmanager
async def answering_alive(
    port: int | None,
    state: bytes,
    address: str = "0.0.0.0",  # noqa: S104 - a pod's port
) -> AsyncIterator[None]:
    """Answer every request on `address`, `port` with 200 and `state` until the block ends
    (and the port is free for kopf's endpoint)."""
    if port is None:
        yield
        return
    body = state + b"\n"

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                + f"Content-Length: {len(body)}\r\n".encode()
                + b"Connection: close\r\n\r\n"
                + body
            )
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, address, port, reuse_address=True)
    try:
        yield
    finally:
        server.close()
        await server.wait_closed()
