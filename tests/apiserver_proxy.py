"""An HTTP-level proxy in front of the real kube-apiserver that answers chosen requests
with faults the real server cannot be made to produce on demand: 500 Internal Server
Error, 429 Too Many Requests with `Retry-After`. Everything else is forwarded (watches
streamed as they come) with the admin identity, and every request is recorded.

It listens on 127.0.0.1 with TLS: a throw-away `trustme` CA and a 127.0.0.1 certificate
(as the tests' other TLS listeners), so the clients in front verify it as they would the
API server; `configuration()` is how to reach it. Runs its own event loop in a thread,
for synchronous tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import ssl
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import trustme
from kubernetes import client as k8s

from tests.loopback import LoopbackServer, read_head

HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "te", "upgrade"}
)
DROP = 0
"""A `Fault` status: no answer, the connection closed."""
REASONS = {429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable"}


@dataclass
class Fault:
    """Answer requests matching `method` and `path` (a regular expression searched in the
    path, without the query) with `status`, `times` times (None: until cleared). Status
    0: close the connection without an answer once the request is read (the client
    cannot know whether it was applied)."""

    method: str
    path: re.Pattern[str]
    status: int
    times: int | None = None
    retry_after: int | None = None
    agent: str | None = None
    """Only requests whose User-Agent contains this (kopf's own: "kopf")."""
    answered: int = 0

    def matches(self, method: str, path: str, agent: str = "") -> bool:
        return (
            method == self.method
            and self.path.search(path) is not None
            and (self.agent is None or self.agent in agent)
            and (self.times is None or self.answered < self.times)
        )


@dataclass(frozen=True)
class Seen:
    """One request the proxy received: what it answered, when (monotonic seconds)."""

    method: str
    path: str
    query: str
    status: int
    at: float
    injected: bool
    agent: str = ""
    """Its User-Agent: kopf's ("kopf/…") or the kubernetes client's ("OpenAPI-Generator/…")."""


@dataclass
class _Head:
    method: str
    target: str
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]

    @property
    def query(self) -> str:
        return self.target.partition("?")[2]


class _Listener(LoopbackServer):
    def __init__(self, proxy: ApiServerProxy, tls: ssl.SSLContext) -> None:
        super().__init__(tls=tls)
        self.proxy = proxy

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:  # keep-alive: requests one after the other on this connection
            try:
                (method, target, _), headers = await read_head(reader)
            except asyncio.IncompleteReadError:
                return  # the client closed between requests
            head = _Head(method, target, headers)
            if "chunked" in headers.get("transfer-encoding", ""):
                raise ConnectionError("chunked request bodies are not proxied")  # none send it
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            fault = self.proxy.fault_for(head)
            if fault is not None:
                self.proxy.record(head, fault.status, injected=True)
                if fault.status == DROP:
                    return
                await _answer_fault(writer, fault)
            else:
                await self.proxy.forward(head, body, writer)
            if headers.get("connection", "").lower() == "close":
                return


async def _answer_fault(writer: asyncio.StreamWriter, fault: Fault) -> None:
    reason = REASONS.get(fault.status, "InternalError")
    status: dict[str, object] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f"injected by the test proxy: {reason}",
        "reason": reason,
        "code": fault.status,
    }
    extra = ""
    if fault.retry_after is not None:
        status["details"] = {"retryAfterSeconds": fault.retry_after}
        extra = f"Retry-After: {fault.retry_after}\r\n"
    body = json.dumps(status).encode()
    writer.write(
        f"HTTP/1.1 {fault.status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n".encode()
        + body
    )
    await writer.drain()


class ApiServerProxy:
    def __init__(self, upstream: k8s.Configuration) -> None:
        self.upstream = upstream
        self.seen: list[Seen] = []
        self.faults: list[Fault] = []
        self._lock = threading.Lock()
        self._dir = Path(tempfile.mkdtemp(prefix="apiserver-proxy-"))
        ca = trustme.CA(organization_name="oauth2-token-operator apiserver proxy")
        ca.cert_pem.write_to_path(str(self._dir / "ca.crt"))
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(tls)
        self._listener = _Listener(self, tls)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._http: httpx.AsyncClient | None = None

    # -- for the test ----------------------------------------------------------------------

    def configuration(self) -> k8s.Configuration:
        """How a client reaches the API server through the proxy (it adds the identity)."""
        cfg = k8s.Configuration()
        cfg.host = self._listener.url
        cfg.ssl_ca_cert = str(self._dir / "ca.crt")
        cfg.verify_ssl = True
        return cfg

    def fail(
        self,
        method: str,
        path: str,
        status: int,
        *,
        times: int | None = None,
        retry_after: int | None = None,
        agent: str | None = None,
    ) -> Fault:
        fault = Fault(method, re.compile(path), status, times, retry_after, agent)
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()

    def requests(self, method: str, path: str, agent: str = "") -> list[Seen]:
        """What was received for `method` and `path` (a regular expression), in order."""
        pattern = re.compile(path)
        with self._lock:
            return [
                s
                for s in self.seen
                if s.method == method and pattern.search(s.path) and agent in s.agent
            ]

    # -- inside ----------------------------------------------------------------------------

    def fault_for(self, head: _Head) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.matches(head.method, head.path, head.headers.get("user-agent", "")):
                    fault.answered += 1
                    return fault
        return None

    def record(self, head: _Head, status: int, *, injected: bool) -> None:
        with self._lock:
            self.seen.append(
                Seen(
                    head.method,
                    head.path,
                    head.query,
                    status,
                    time.monotonic(),
                    injected,
                    head.headers.get("user-agent", ""),
                )
            )

    async def forward(self, head: _Head, body: bytes, writer: asyncio.StreamWriter) -> None:
        """Send the request upstream; relay the answer chunk by chunk as it arrives (a
        watch's events as they happen), chunked to the client."""
        assert self._http is not None
        headers = {k: v for k, v in head.headers.items() if k not in HOP_BY_HOP}
        headers.pop("authorization", None)  # the proxy's identity is the admin's
        request = self._http.build_request(
            head.method, self.upstream.host.rstrip("/") + head.target, headers=headers, content=body
        )
        try:
            response = await self._http.send(request, stream=True)
        except httpx.TransportError:
            raise ConnectionError("the API server cannot be reached") from None  # as if down
        try:
            self.record(head, response.status_code, injected=False)
            lines = [f"HTTP/1.1 {response.status_code} {response.reason_phrase}"]
            passed = response.headers.multi_items()
            lines += [f"{k}: {v}" for k, v in passed if k.lower() not in HOP_BY_HOP]
            lines.append("Transfer-Encoding: chunked")
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            await writer.drain()
            async for chunk in response.aiter_raw():
                if chunk:
                    writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                    await writer.drain()
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        except httpx.TransportError:
            raise ConnectionError("the API server went away mid-answer") from None
        finally:
            await response.aclose()

    def _upstream_client(self) -> httpx.AsyncClient:
        cfg = self.upstream
        verify = ssl.create_default_context(cafile=cfg.ssl_ca_cert)
        if cfg.cert_file and cfg.key_file:
            verify.load_cert_chain(cfg.cert_file, cfg.key_file)
        token = cfg.api_key.get("authorization") or cfg.api_key.get("BearerToken")
        return httpx.AsyncClient(
            verify=verify,
            headers={"Authorization": token} if token else None,
            timeout=httpx.Timeout(30.0, read=None),  # a watch may be quiet for minutes
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=20),
        )

    def start(self) -> ApiServerProxy:
        self._thread.start()

        async def start() -> None:
            self._http = self._upstream_client()
            await self._listener.start()

        asyncio.run_coroutine_threadsafe(start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        async def stop() -> None:
            await self._listener.stop()
            if self._http is not None:
                await self._http.aclose()

        try:
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()
            for path in self._dir.iterdir():
                path.unlink()
            self._dir.rmdir()


@contextlib.contextmanager
def apiserver_proxy(upstream: k8s.Configuration) -> Iterator[ApiServerProxy]:
    proxy = ApiServerProxy(upstream).start()
    try:
        yield proxy
    finally:
        proxy.stop()
