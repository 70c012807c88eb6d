"""HTTP transport for every OAuth2 call: pooled clients, deadlines, TLS, proxies and retries.

One ``httpx.AsyncClient`` exists per TLS configuration (at most ``max_pools``,
least recently used evicted first), so connections to an authorization server
are reused across calls and tokens. Retries use exponential backoff with full
jitter for transport errors, 429 and 5xx, and respect ``Retry-After``; OAuth
4xx errors are final and never retried.

Every call has a total deadline (``Timeouts.total``) over all its attempts and
the waits between them: per-read timeouts alone let a server that sends a byte
at a time hold a call forever. A retry that cannot finish its wait before the
deadline is not started.

Requests that must not be replayed (a refresh-token grant against a server
that rotates refresh tokens: a replay after the server already answered would
present a consumed token and may revoke the whole grant) are retried only when
the request provably did not reach the server, or the server said so (429/503).

Nothing is taken from the environment except the proxy variables
(``proxy.py``): ``trust_env`` stays off, so ``SSL_CERT_FILE``, ``.netrc`` and
``ALL_PROXY`` are ignored.

Every request passes the egress rules (``egress.py``) first, and a direct connection
goes only to an address they permit (``guarded_backend.py``). The default rules refuse
nothing; the operator passes its own.
"""

from __future__ import annotations

import asyncio
import contextvars
import email.utils
import enum
import logging
import os
import random
import ssl
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import httpcore
import httpx

from oauth2_token_operator.oauth2.bounded import ACCEPT_ENCODING, MAX_RESPONSE, read_bounded
from oauth2_token_operator.oauth2.egress import EgressPolicy
from oauth2_token_operator.oauth2.errors import (
    DeadlineExceededError,
    NoResponseError,
    UnexpectedStatusError,
    describe_error_code,
)
from oauth2_token_operator.oauth2.guarded_backend import GuardedBackend
from oauth2_token_operator.oauth2.proxy import ProxySettings
from oauth2_token_operator.oauth2.tls import TLSConfig, system_trust_context

__all__ = [
    "EgressPolicy",
    "OAuth2Transport",
    "ProxySettings",
    "Replay",
    "RetryPolicy",
    "TLSConfig",
    "Timeouts",
    "parse_retry_after",
]

log = logging.getLogger(__name__)

#: Errors raised before a single byte of the request reached the server.
_NOT_SENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_NOT_PROCESSED_STATUSES = frozenset({429, 503})

#: The loop time by which the current OAuth2 call must be done (see ``OAuth2Transport.deadline``).
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "oauth2_deadline", default=None
)


class Replay(enum.Enum):
    """Whether a request may be sent again after an unclear outcome."""

    SAFE = "safe"
    """Harmless to repeat: discovery, client_credentials, introspection, revocation."""
    UNSAFE = "unsafe"
    """Retry only when the server cannot have processed it (not sent, 429, 503)."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    """Total tries, the first included."""
    base_delay: float = 0.25
    max_delay: float = 8.0
    max_retry_after: float = 30.0
    """A ``Retry-After`` longer than this is not waited for: the error goes to the caller."""

    def backoff(self, retry: int, rng: random.Random) -> float:
        """Full-jitter exponential backoff for the ``retry``-th retry (1-based)."""
        return rng.uniform(0, min(self.max_delay, self.base_delay * 2 ** (retry - 1)))


MAX_RETRY_AFTER = 3600.0
"""A server's ``Retry-After`` is honoured up to an hour: a longer (or absurd) one is read
as an hour, so no server can push a time out of range into a schedule or a status."""


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), at most
    ``MAX_RETRY_AFTER``; ``None`` when absent or unreadable (a hostile server's header is
    ignored, never an exception)."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)  # a thousand digits: inf, then an hour
    try:
        when = email.utils.parsedate_to_datetime(value)
        seconds = when.timestamp() - now
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER)


@dataclass(frozen=True)
class Timeouts:
    connect: float = 5.0
    read: float = 10.0
    """Longest wait for any single read; see ``total`` for the whole call."""
    write: float = 10.0
    pool: float = 5.0
    total: float = 30.0
    """Deadline of one OAuth2 call: every attempt, every read and every wait between them."""

    def __post_init__(self) -> None:
        if self.total <= 0:
            raise ValueError("the total deadline must be positive")

    def httpx(self) -> httpx.Timeout:
        return httpx.Timeout(connect=self.connect, read=self.read, write=self.write, pool=self.pool)


Sleep = Callable[[float], Awaitable[None]]


@dataclass
class _Pool:
    client: httpx.AsyncClient
    slots: asyncio.Semaphore
    """One per connection the client may open: a request waits here, not in httpx's pool.

    httpcore (1.0.9) leaks a connection slot when a request queued in its pool is
    cancelled just after the pool handed it a new connection (encode/httpcore#1093,
    unfixed): every deadline that expires during a burst against a stalled server can
    do that, and once all slots are gone every request fails with PoolTimeout, however
    healthy the server is again. Waiting on an asyncio semaphore can be cancelled
    safely, and no request ever queues inside httpcore."""
    users: int = 0
    """Requests in flight on this pool: a retired pool is closed when the last one ends."""


CallObserver = Callable[[str, str, float], None]
"""``(endpoint, outcome, seconds)`` of one OAuth2 call: outcome is ``ok``, an RFC 6749
§5.2 error code, or the kind of failure (``no_response``, ``deadline_exceeded``…)."""


class OAuth2Transport:
    """Owns the pooled HTTP clients; close it with ``aclose`` when done.

    ``proxy`` defaults to ``ProxySettings.from_environment()``, read once here;
    ``egress``, to rules that refuse nothing. After ``aclose`` every ``client`` or
    ``request`` call raises ``RuntimeError``.
    """

    def __init__(
        self,
        *,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        limits: httpx.Limits | None = None,
        proxy: ProxySettings | None = None,
        max_pools: int = 32,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        user_agent: str = "oauth2-token-operator",
        observer: CallObserver | None = None,
        egress: EgressPolicy | None = None,
    ) -> None:
        if max_pools < 1:
            raise ValueError("max_pools must be at least 1")
        self.timeouts = timeouts or Timeouts()
        self.retry = retry or RetryPolicy()
        self.proxy = proxy if proxy is not None else ProxySettings.from_environment()
        self.egress = egress or EgressPolicy()
        """Where calls may go: checked for every request and direct connection."""
        self.max_pools = max_pools
        self._limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20)
        self._connections = self._limits.max_connections or 100
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._user_agent = user_agent
        self._pools: OrderedDict[TLSConfig, _Pool] = OrderedDict()
        self._retired: list[_Pool] = []
        self._closed = False
        self.observer = observer
        """Told the endpoint, outcome and duration of every OAuth2 call (for metrics)."""

    # -- connection pools ------------------------------------------------------------

    def client(self, tls: TLSConfig) -> httpx.AsyncClient:
        """The pooled client for ``tls``. It is closed once evicted or dropped: send
        through ``request``, which keeps a pool open while a request uses it."""
        return self._pool(tls).client

    def _pool(self, tls: TLSConfig) -> _Pool:
        if self._closed:
            raise RuntimeError("the OAuth2Transport is closed")
        pool = self._pools.get(tls)
        if pool is not None:
            self._pools.move_to_end(tls)
            return pool
        pool = _Pool(self._new_client(tls), asyncio.Semaphore(self._connections))
        self._pools[tls] = pool
        while len(self._pools) > self.max_pools:
            _, evicted = self._pools.popitem(last=False)
            self._retired.append(evicted)
        return pool

    def _new_client(self, tls: TLSConfig) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=_ProxyRouter(
                self.proxy, verify=tls.ssl_context(), limits=self._limits, egress=self.egress
            ),
            timeout=self.timeouts.httpx(),
            headers={"User-Agent": self._user_agent, "Accept": "application/json"},
            follow_redirects=False,
            trust_env=False,
        )

    async def close_pool(self, tls: TLSConfig) -> None:
        """Drop the connections of one TLS configuration, e.g. after its CA or client
        certificate changed. Idle connections close now, busy ones when their requests
        end; the next request with ``tls`` opens a new pool."""
        pool = self._pools.pop(tls, None)
        if pool is not None:
            self._retired.append(pool)
        await self._close_idle_retired()

    async def _close_idle_retired(self) -> None:
        idle = [pool for pool in self._retired if pool.users == 0]
        self._retired = [pool for pool in self._retired if pool.users > 0]
        for pool in idle:
            await pool.client.aclose()

    @property
    def pool_count(self) -> int:
        """Pools not closed yet: in use, and retired ones waiting for their requests to end."""
        return len(self._pools) + len(self._retired)

    async def aclose(self) -> None:
        self._closed = True
        pools = [*self._pools.values(), *self._retired]
        self._pools, self._retired = OrderedDict(), []
        for pool in pools:
            await pool.client.aclose()

    # -- deadline ----------------------------------------------------------------------

    @contextmanager
    def deadline(self) -> Iterator[float]:
        """Bound every request made inside to one ``timeouts.total`` from now.

        Nested deadlines keep the sooner one, so a call made of several requests
        (discovery, then the token request) shares one budget. Yields the deadline
        in event-loop time.
        """
        when = asyncio.get_running_loop().time() + self.timeouts.total
        outer = _DEADLINE.get()
        if outer is not None and outer <= when:
            yield outer
            return
        token = _DEADLINE.set(when)
        try:
            yield when
        finally:
            _DEADLINE.reset(token)

    # -- requests ----------------------------------------------------------------------

    async def request(
        self,
        method: str,
        url: str,
        *,
        endpoint: str,
        tls: TLSConfig,
        replay: Replay,
        data: Mapping[str, str | list[str]] | None = None,
        headers: Mapping[str, str] | None = None,
        max_body: int = MAX_RESPONSE,
    ) -> httpx.Response:
        """Send with retries within the deadline; return the final response whatever its status.

        The body is read whole, but never more than ``max_body`` bytes after
        decompression (``ResponseTooLargeError``, see ``bounded``).

        Raises ``NoResponseError`` when no answer came (``DeadlineExceededError``
        when the deadline cut the call short), and ``UnexpectedStatusError`` when
        a retryable status persisted or asked for a wait beyond
        ``RetryPolicy.max_retry_after`` or the deadline.
        """
        pool = self._pool(tls)
        pool.users += 1
        try:
            if self._retired:
                await self._close_idle_retired()
            with self.deadline() as when:
                return await self._send(
                    pool, method, url, endpoint, replay, data, headers, when, max_body
                )
        finally:
            pool.users -= 1
            if pool.users == 0 and any(p is pool for p in self._retired):
                await self._close_idle_retired()

    async def _send(
        self,
        pool: _Pool,
        method: str,
        url: str,
        endpoint: str,
        replay: Replay,
        data: Mapping[str, str | list[str]] | None,
        headers: Mapping[str, str] | None,
        when: float,
        max_body: int,
    ) -> httpx.Response:
        loop = asyncio.get_running_loop()
        attempt = 0
        last_failure = ""
        while True:
            attempt += 1
            scope = asyncio.timeout_at(when)
            try:
                async with scope, pool.slots:
                    response = await _fetch(
                        pool.client, method, url, data, headers, max_body, endpoint
                    )
            except TimeoutError:
                if not scope.expired():
                    raise
                earlier = f"; earlier: {last_failure}" if last_failure else ""
                raise DeadlineExceededError(
                    f"no complete answer from {_origin(url)} within the "
                    f"{self.timeouts.total:g} s deadline (attempt {attempt}{earlier})",
                    endpoint=endpoint,
                ) from None
            except httpx.TransportError as exc:
                address = _connects_to(url, self.proxy)
                cause = describe_transport_error(exc, self.timeouts, address=address)
                retryable = replay is Replay.SAFE or isinstance(exc, _NOT_SENT_ERRORS)
                where = "" if _host_port(url) in cause else f" talking to {_origin(url)}"
                failure = f"{cause}{where} after {attempt} attempt(s)"
                if not retryable or attempt >= self.retry.attempts:
                    raise NoResponseError(failure, endpoint=endpoint) from exc
                delay = self.retry.backoff(attempt, self._rng)
                if loop.time() + delay >= when:
                    raise NoResponseError(
                        f"{failure}; no time left to retry within the "
                        f"{self.timeouts.total:g} s deadline",
                        endpoint=endpoint,
                    ) from exc
                last_failure = cause
                log.info(
                    "%s: %s, retrying in %.2fs (attempt %d/%d)",
                    endpoint, cause, delay, attempt, self.retry.attempts,
                )  # fmt: skip
                await self._sleep(delay)
                continue

            status = response.status_code
            if status not in _RETRY_STATUSES:
                return response
            retry_after = parse_retry_after(response.headers.get("Retry-After"), time.time())
            retryable = replay is Replay.SAFE or status in _NOT_PROCESSED_STATUSES
            delay = (
                retry_after if retry_after is not None else self.retry.backoff(attempt, self._rng)
            )
            too_long = retry_after is not None and retry_after > self.retry.max_retry_after
            past_deadline = loop.time() + delay >= when
            if not retryable or too_long or past_deadline or attempt >= self.retry.attempts:
                reason = " (no time left to retry within the deadline)" if past_deadline else ""
                raise UnexpectedStatusError(
                    f"HTTP {status}{_error_code_suffix(response)} from {_origin(url)} "
                    f"after {attempt} attempt(s){reason}",
                    endpoint=endpoint,
                    status_code=status,
                    retry_after=retry_after,
                )
            last_failure = f"HTTP {status}"
            log.info(
                "%s: HTTP %d, retrying in %.2fs (attempt %d/%d)",
                endpoint, status, delay, attempt, self.retry.attempts,
            )  # fmt: skip
            await self._sleep(delay)


async def _fetch(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    data: Mapping[str, str | list[str]] | None,
    headers: Mapping[str, str] | None,
    max_body: int,
    endpoint: str,
) -> httpx.Response:
    """One exchange, its body streamed in with a cap (`bounded`); the response returned
    holds the decoded body."""
    request = client.build_request(
        method, url, data=data, headers={"Accept-Encoding": ACCEPT_ENCODING, **(headers or {})}
    )
    streamed = await client.send(request, stream=True)
    try:
        body = await read_bounded(streamed, max_body, endpoint=endpoint)
    finally:
        await streamed.aclose()
    kept = [
        (name, value)
        for name, value in streamed.headers.multi_items()
        if name.lower() not in ("content-encoding", "content-length", "transfer-encoding")
    ]
    return httpx.Response(streamed.status_code, headers=kept, content=body, request=request)


class _ProxyRouter(httpx.AsyncBaseTransport):
    """Sends each request directly or through the proxy ``ProxySettings`` picks for its URL,
    once the egress rules let it.

    httpx's own ``mounts`` cannot express ``NO_PROXY`` CIDR blocks or Go's
    loopback rule, hence the routing here. Each route keeps its own pool.
    """

    def __init__(
        self,
        settings: ProxySettings,
        *,
        verify: ssl.SSLContext,
        limits: httpx.Limits,
        egress: EgressPolicy,
    ) -> None:
        self._settings = settings
        self._verify = verify
        self._limits = limits
        self._egress = egress
        self._routes: dict[httpx.URL | None, httpx.AsyncHTTPTransport] = {}

    def _route(self, proxy: httpx.URL | None) -> httpx.AsyncHTTPTransport:
        route = self._routes.get(proxy)
        if route is None:
            route = httpx.AsyncHTTPTransport(
                verify=self._verify,
                limits=self._limits,
                trust_env=False,
                proxy=None if proxy is None else _proxy(proxy),
            )
            if proxy is None and self._egress.denied:
                _connect_through(route, GuardedBackend(self._egress), self._verify, self._limits)
            self._routes[proxy] = route
        return route

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self._egress.check_request(request.url)
        return await self._route(self._settings.proxy_for(request.url)).handle_async_request(
            request
        )

    async def aclose(self) -> None:
        routes, self._routes = list(self._routes.values()), {}
        for route in routes:
            await route.aclose()


def _connect_through(
    route: httpx.AsyncHTTPTransport,
    backend: httpcore.AsyncNetworkBackend,
    verify: ssl.SSLContext,
    limits: httpx.Limits,
) -> None:
    """Make a direct route open its connections through ``backend``. httpx (0.28, 0.29)
    takes no network backend: its transport keeps an httpcore pool in ``_pool``, made
    again here as httpx makes it, over ``backend`` (tests/unit/test_egress_guard.py
    fails should httpx change that)."""
    route._pool = httpcore.AsyncConnectionPool(
        ssl_context=verify,
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=backend,
    )


def _proxy(url: httpx.URL) -> httpx.Proxy:
    """An ``https://`` proxy is verified with the system's trust store, not ``SSL_CERT_FILE``."""
    if url.scheme == "https":
        return httpx.Proxy(url, ssl_context=system_trust_context())
    return httpx.Proxy(url)


def describe_transport_error(
    exc: httpx.TransportError, timeouts: Timeouts, *, address: str | None = None
) -> str:
    """``ConnectTimeout (connection to as.example:443 timed out after 5 s)``,
    ``ReadTimeout (no data for 10 s)``, ``ConnectError (connection refused)``…

    httpx leaves many messages empty; the operating system's reason is found down the
    exception chain, and only for errors that are no timeouts: a timeout is its own
    reason, and an errno in its chain would be some other failure's (an exception being
    handled when the call was made, say a missing file: "no such file or directory").
    """
    details: list[str] = []
    if isinstance(exc, httpx.TimeoutException):
        where = address or "the server"
        details.append(_TIMEOUT_TEXT.get(type(exc), "timed out").format(t=timeouts, where=where))
    else:
        text = str(exc).strip()
        if text:
            details.append(text)
        reason = _os_reason(exc)
        if reason and all(reason.lower() not in d.lower() for d in details):
            details.append(reason)
    return f"{type(exc).__name__} ({'; '.join(details)})" if details else type(exc).__name__


_TIMEOUT_TEXT: dict[type[httpx.TimeoutException], str] = {
    httpx.ConnectTimeout: "connection to {where} timed out after {t.connect:g} s",
    httpx.ReadTimeout: "no data for {t.read:g} s",
    httpx.WriteTimeout: "could not send for {t.write:g} s",
    httpx.PoolTimeout: "no free connection within {t.pool:g} s",
}


def _os_reason(exc: BaseException) -> str | None:
    """The reason of the first ``OSError`` down the chain of causes (``connection
    refused``…): explicit causes (``raise … from``), and the exception an error wraps
    (httpcore raises ``ConnectError(exc)`` while handling ``exc``). Never any other
    implicit context: that is whatever was being handled when the call was made,
    unrelated to its failure. An ``ssl.SSLError``'s errno is OpenSSL's code, not an OS
    errno (1 would read "operation not permitted"): its own text says why. A group
    (anyio's attempts at each address of a name) has a reason if all agree."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLError):
            return None
        if isinstance(current, BaseExceptionGroup):
            reasons = {_os_reason(each) for each in current.exceptions}
            return reasons.pop() if len(reasons) == 1 else None
        if isinstance(current, OSError) and (current.errno or current.strerror):
            # asyncio's strerror says "Connect call failed (addr)"; the errno says why.
            reason = os.strerror(current.errno) if current.errno else str(current.strerror)
            return reason.lower()
        current = current.__cause__ or _wrapped(current)
    return None


def _wrapped(exc: BaseException) -> BaseException | None:
    """The exception ``exc`` was made from and raised while handling, if any."""
    inner = exc.args[0] if exc.args else None
    return inner if isinstance(inner, BaseException) and inner is exc.__context__ else None


def _error_code_suffix(response: httpx.Response) -> str:
    """`` (temporarily_unavailable)`` when the body is an RFC 6749 §5.2 error."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return f" ({describe_error_code(body['error'])})"
    return ""


def _origin(url: str) -> str:
    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.netloc.decode('ascii')}"


def _connects_to(url: str, proxy: ProxySettings) -> str:
    """Where a request to ``url`` opens its connection: ``as.example:443``, or ``the proxy
    proxy.example:3128``."""
    via = proxy.proxy_for(url)
    return _host_port(url) if via is None else f"the proxy {_host_port(str(via))}"


def _host_port(url: str) -> str:
    """``as.example:443``: the host and port a connection goes to (the scheme's default
    port when the URL names none)."""
    parsed = httpx.URL(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
    return f"{host}:{port}"
