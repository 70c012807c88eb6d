"""Connections only to addresses the deny list permits (``EgressPolicy.denied``).

An httpcore network backend, used for every direct connection of an OAuth2 call
(``transport._ProxyRouter``). It resolves the host itself, drops each address in the deny
list, and connects to one of the others by that address: the address checked is the
address connected to. A name that answers differently at a second lookup (DNS rebinding)
gains nothing, as there is no second lookup. TLS still verifies, and sends as SNI, the
URL's host name: httpcore takes those from the request, not from the connection.

The permitted addresses are tried one at a time, in the resolver's order, within the
connect timeout, as urllib3 does (httpcore's default backend would start the next one
250 ms into the previous attempt).

Through a proxy (``HTTPS_PROXY``) the operator connects to the proxy, an address its
administrator chose, which is not checked: the proxy resolves the authorization
server's name, and only a URL whose host is an address is checked here
(``EgressPolicy.check_request``). The proxy's own rules must deny the rest.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterable

import httpcore

from oauth2_token_operator.oauth2.egress import EgressPolicy, IPAddress, address_of
from oauth2_token_operator.oauth2.errors import AddressNotAllowedError

SocketOption = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """``connect_tcp`` resolves, refuses denied addresses, connects to a permitted one
    through ``delegate`` (httpcore's own asyncio backend by default)."""

    def __init__(
        self, policy: EgressPolicy, delegate: httpcore.AsyncNetworkBackend | None = None
    ) -> None:
        self._policy = policy
        self._delegate = delegate or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        resolved = await _resolve(host, port, deadline)
        permitted = []
        refusal: AddressNotAllowedError | None = None
        for address in resolved:
            try:
                self._policy.check_address(host, port, address)
            except AddressNotAllowedError as exc:
                refusal = refusal or exc
            else:
                permitted.append(address)
        if refusal is not None and not permitted:
            raise refusal
        failure = httpcore.ConnectError(f"{host} resolves to no address")
        for address in permitted:
            try:
                return await self._delegate.connect_tcp(
                    str(address),
                    port,
                    timeout=None if deadline is None else max(0.0, deadline - loop.time()),
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore.ConnectError as exc:  # refused, unreachable: the next one
                failure = exc
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("the operator never connects to a Unix socket")

    async def sleep(self, seconds: float) -> None:
        await self._delegate.sleep(seconds)


async def _resolve(host: str, port: int, deadline: float | None) -> list[IPAddress]:
    """The addresses of ``host`` (itself when it is one), in the resolver's order, each
    once. Failures are httpcore's, as its own backend raises them."""
    address = address_of(host)
    if address is not None:
        return [address]
    try:
        async with asyncio.timeout_at(deadline):
            answers = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
    except TimeoutError as exc:
        raise httpcore.ConnectTimeout(exc) from exc
    except OSError as exc:  # socket.gaierror: no such name, no resolver
        raise httpcore.ConnectError(exc) from exc
    found: list[IPAddress] = []
    for *_, sockaddr in answers:
        each = address_of(str(sockaddr[0]))
        if each is not None and each not in found:
            found.append(each)
    return found
