"""HTTP transport for every OAuth2 call: pooled clients, timeouts, TLS and retries.

One ``httpx.AsyncClient`` exists per TLS configuration, so connections to an
authorization server are reused across calls and tokens. Retries use
exponential backoff with full jitter for transport errors, 429 and 5xx, and
respect ``Retry-After``; OAuth 4xx errors are final and never retried.

Requests that must not be replayed (a refresh-token grant against a server
that rotates refresh tokens: a replay after the server already answered would
present a consumed token and may revoke the whole grant) are retried only when
the request provably did not reach the server, or the server said so (429/503).
"""

from __future__ import annotations

import asyncio
import email.utils
import enum
import logging
import os
import random
import ssl
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import httpx

from oauth2_token_operator.oauth2.errors import (
    HTTPStatusError,
    TransportError,
    sanitize_server_text,
)

log = logging.getLogger(__name__)

#: Errors raised before a single byte of the request reached the server.
_NOT_SENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_NOT_PROCESSED_STATUSES = frozenset({429, 503})


class Replay(enum.Enum):
    """Whether a request may be sent again after an unclear outcome."""

    SAFE = "safe"
    """Harmless to repeat: discovery, client_credentials, introspection, revocation."""
    UNSAFE = "unsafe"
    """Retry only when the server cannot have processed it (not sent, 429, 503)."""


@dataclass(frozen=True)
class TLSConfig:
    """How to verify the server and, for ``tls_client_auth``, who we are.

    Certificates are held as PEM text, not paths, so a rotated Secret yields a
    new configuration (and a new connection pool) instead of a stale one.
    """

    ca_pem: str | None = None
    client_cert_pem: str | None = field(default=None, repr=False)
    client_key_pem: str | None = field(default=None, repr=False)

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if self.ca_pem:
            context.load_verify_locations(cadata=self.ca_pem)
        if self.client_cert_pem:
            _load_client_certificate(context, self.client_cert_pem, self.client_key_pem)
        return context


def _load_client_certificate(context: ssl.SSLContext, cert_pem: str, key_pem: str | None) -> None:
    # ssl can only read a certificate chain from a file: write it to a private
    # temporary file (mode 0600) and remove it at once.
    fd, path = tempfile.mkstemp(prefix="oauth2-client-", suffix=".pem")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(cert_pem.strip() + "\n")
            if key_pem:
                handle.write(key_pem.strip() + "\n")
        context.load_cert_chain(path)
    finally:
        os.unlink(path)


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


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date)."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


@dataclass(frozen=True)
class Timeouts:
    connect: float = 5.0
    read: float = 10.0
    write: float = 10.0
    pool: float = 5.0

    def httpx(self) -> httpx.Timeout:
        return httpx.Timeout(connect=self.connect, read=self.read, write=self.write, pool=self.pool)


Sleep = Callable[[float], Awaitable[None]]


class HTTPTransport:
    """Owns the pooled HTTP clients; close it with ``aclose`` when done."""

    def __init__(
        self,
        *,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        limits: httpx.Limits | None = None,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        user_agent: str = "oauth2-token-operator",
    ) -> None:
        self.timeouts = timeouts or Timeouts()
        self.retry = retry or RetryPolicy()
        self._limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20)
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._user_agent = user_agent
        self._clients: dict[TLSConfig, httpx.AsyncClient] = {}

    def client(self, tls: TLSConfig) -> httpx.AsyncClient:
        existing = self._clients.get(tls)
        if existing is not None:
            return existing
        created = httpx.AsyncClient(
            verify=tls.ssl_context(),
            timeout=self.timeouts.httpx(),
            limits=self._limits,
            headers={"User-Agent": self._user_agent, "Accept": "application/json"},
            follow_redirects=False,
            trust_env=False,
        )
        self._clients[tls] = created
        return created

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()

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
    ) -> httpx.Response:
        """Send with retries; return the final response whatever its status.

        Raises ``TransportError`` when no answer came, and ``HTTPStatusError``
        when a retryable status persisted or asked for a longer wait than
        ``RetryPolicy.max_retry_after``.
        """
        client = self.client(tls)
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await client.request(method, url, data=data, headers=headers)
            except httpx.TransportError as exc:
                retryable = replay is Replay.SAFE or isinstance(exc, _NOT_SENT_ERRORS)
                if not retryable or attempt >= self.retry.attempts:
                    raise TransportError(
                        f"{type(exc).__name__} talking to {_origin(url)} after {attempt} "
                        f"attempt(s): {exc}",
                        endpoint=endpoint,
                    ) from exc
                delay = self.retry.backoff(attempt, self._rng)
                log.info(
                    "%s: %s, retrying in %.2fs (attempt %d/%d)",
                    endpoint, type(exc).__name__, delay, attempt, self.retry.attempts,
                )  # fmt: skip
                await self._sleep(delay)
                continue

            status = response.status_code
            if status not in _RETRY_STATUSES:
                return response
            retry_after = parse_retry_after(response.headers.get("Retry-After"), time.time())
            retryable = replay is Replay.SAFE or status in _NOT_PROCESSED_STATUSES
            too_long = retry_after is not None and retry_after > self.retry.max_retry_after
            if not retryable or too_long or attempt >= self.retry.attempts:
                raise HTTPStatusError(
                    f"HTTP {status}{_error_code_suffix(response)} from {_origin(url)} "
                    f"after {attempt} attempt(s)",
                    endpoint=endpoint,
                    status_code=status,
                    retry_after=retry_after,
                )
            delay = (
                retry_after if retry_after is not None else self.retry.backoff(attempt, self._rng)
            )
            log.info(
                "%s: HTTP %d, retrying in %.2fs (attempt %d/%d)",
                endpoint, status, delay, attempt, self.retry.attempts,
            )  # fmt: skip
            await self._sleep(delay)


def _error_code_suffix(response: httpx.Response) -> str:
    """`` (temporarily_unavailable)`` when the body is an RFC 6749 §5.2 error."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return f" ({sanitize_server_text(body['error'])})"
    return ""


def _origin(url: str) -> str:
    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.netloc.decode('ascii')}"
