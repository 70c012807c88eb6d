"""A small HTTP proxy on 127.0.0.1 for the egress-proxy tests.

``CONNECT host:port`` opens a tunnel, but only to a loopback address: a host
name is looked up in ``routes`` (the test's own name → loopback address map)
and anything else is refused with 403, so no test traffic can leave the
machine through it. Other methods (``HTTP_PROXY`` forwarding) are recorded and
answered 403 without forwarding.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

from tests.loopback import LoopbackServer, read_head


@dataclass(frozen=True)
class ProxyRequest:
    method: str
    target: str
    headers: dict[str, str]


class ConnectProxy(LoopbackServer):
    def __init__(self, routes: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self.routes = dict(routes or {})
        self.requests: list[ProxyRequest] = []

    @property
    def tunnels(self) -> list[str]:
        """``host:port`` of every CONNECT received."""
        return [r.target for r in self.requests if r.method == "CONNECT"]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        (method, target, _), headers = await read_head(reader)
        self.requests.append(ProxyRequest(method, target, headers))
        if method != "CONNECT":
            writer.write(b"HTTP/1.1 403 Not Forwarding\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            return
        host, _, port = target.rpartition(":")
        address = self.routes.get(host.strip("[]"), host.strip("[]"))
        if not _is_loopback(address):
            writer.write(b"HTTP/1.1 403 Loopback Only\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            return
        upstream_reader, upstream_writer = await asyncio.open_connection(address, int(port))
        writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        await writer.drain()
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    sink.close()


@asynccontextmanager
async def connect_proxy(routes: Mapping[str, str] | None = None) -> AsyncIterator[ConnectProxy]:
    proxy = ConnectProxy(routes)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()
