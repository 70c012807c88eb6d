"""The egress rules where connections are made: ``guarded_backend`` resolves a host once,
drops denied addresses and connects to the address it checked; the transport checks every
request's URL first; discovery refuses endpoints on hosts not allowed.

No packet leaves the machine. Loopback listeners count the connections they accept. For
addresses that are not loopback (169.254.169.254), httpcore's own connect records the host
it was asked for and refuses it (``tests.connects``): "nothing was attempted" is proved by
an empty record, and a control shows that, without the rule, the attempt is recorded there
(and still refused, never sent). Names are resolved by a patched
``socket.getaddrinfo`` that answers only for this file's names and ``localhost``.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import trustme

from oauth2_token_operator.oauth2 import (
    AddressNotAllowedError,
    EgressPolicy,
    HostNotAllowedError,
    InsecureHTTPForbiddenError,
    IssuerConfig,
    MetadataCache,
    NoResponseError,
    OAuth2Transport,
    ProxySettings,
    RetryPolicy,
    Timeouts,
    TLSConfig,
)
from oauth2_token_operator.oauth2.egress import DEFAULT_DENIED
from oauth2_token_operator.oauth2.transport import Replay
from tests.connects import record_connects
from tests.faults import Respond, fault_server
from tests.proxy import connect_proxy

NAME = "as.example.test"
DEFAULT = EgressPolicy.parse(DEFAULT_DENIED)
METADATA_ONLY = EgressPolicy.parse(["169.254.0.0/16"])
"""Denies the metadata range but not loopback, where the tests' servers listen."""
ONCE = RetryPolicy(attempts=1)


class Listener:
    """A TCP listener on 127.0.0.1 that counts the connections it accepts (and closes them)."""

    def __init__(self) -> None:
        self.accepted = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Listener:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _accept(self, _: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        writer.close()


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    return record_connects(monkeypatch)


Answers = Callable[[int], list[str]]
"""The addresses a name resolves to at its n-th lookup (from 1)."""


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> Callable[[Answers], list[str]]:
    """`resolver(answers)` makes NAME resolve as `answers` says; returns the list of names
    looked up. Other names than NAME and localhost fail, so nothing asks a real DNS."""
    real = socket.getaddrinfo
    lookups: list[str] = []

    def install(answers: Answers) -> list[str]:
        def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            name = host.decode() if isinstance(host, bytes) else str(host)
            lookups.append(name)
            if name == NAME:
                return [
                    (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port)))
                    for address in answers(lookups.count(NAME))
                ]
            if name == "localhost":
                return real(name, port, *args, **kwargs)
            raise socket.gaierror(socket.EAI_NONAME, "the tests resolve only their names")

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
        return lookups

    return install


async def get(transport: OAuth2Transport, url: str, tls: TLSConfig | None = None) -> int:
    response = await transport.request(
        "GET", url, endpoint="e", tls=tls or TLSConfig(), replay=Replay.SAFE
    )
    return response.status_code


@pytest.fixture
async def transport() -> AsyncIterator[Callable[..., OAuth2Transport]]:
    made: list[OAuth2Transport] = []

    def make(egress: EgressPolicy, **kwargs: Any) -> OAuth2Transport:
        made.append(OAuth2Transport(egress=egress, retry=ONCE, proxy=kwargs.pop("proxy", None)))
        return made[-1]

    yield make
    for each in made:
        await each.aclose()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_loopback_is_refused_before_any_connection(
    transport: Callable[..., OAuth2Transport],
    resolver: Callable[[Answers], list[str]],
    connects: list[str],
    host: str,
) -> None:
    """`localhost` is a name: it is refused for what it resolves to, after resolution."""
    lookups = resolver(lambda _: [])
    async with Listener() as listener:
        with pytest.raises(AddressNotAllowedError) as refused:
            await get(transport(DEFAULT), f"http://{host}:{listener.port}/")
        assert listener.accepted == 0
        assert connects == []
        assert "is denied by the operator's --deny-cidr" in str(refused.value)
        assert ("127.0.0.0/8" in str(refused.value)) or ("::1/128" in str(refused.value))
        assert lookups == (["localhost"] if host == "localhost" else [])

        # Control: without the rule the same request connects, and the listener counts it.
        with pytest.raises(NoResponseError):  # it closes without an answer
            await get(transport(EgressPolicy()), f"http://{host}:{listener.port}/")
        assert listener.accepted == 1


async def test_a_metadata_address_is_never_attempted(
    transport: Callable[..., OAuth2Transport],
    resolver: Callable[[Answers], list[str]],
    connects: list[str],
) -> None:
    resolver(lambda _: ["169.254.169.254"])
    for url in ("http://169.254.169.254/latest/meta-data/", f"https://{NAME}/token"):
        with pytest.raises(AddressNotAllowedError, match=r"169\.254\.0\.0/16 is denied"):
            await get(transport(DEFAULT), url)
    assert connects == []

    # Control: without the rule both reach the connect (the fixture refuses them there).
    for url in ("http://169.254.169.254/latest/meta-data/", f"https://{NAME}/token"):
        with pytest.raises(NoResponseError):
            await get(transport(EgressPolicy()), url)
    assert connects == ["169.254.169.254", NAME]


async def test_a_name_is_resolved_once_and_connected_by_the_address_checked(
    transport: Callable[..., OAuth2Transport],
    resolver: Callable[[Answers], list[str]],
    connects: list[str],
) -> None:
    """DNS rebinding gains nothing: the name's second lookup would answer the metadata
    address, but there is none; the denied address of the first is skipped; and TLS
    still verifies the name (the certificate names only NAME, not 127.0.0.1)."""
    lookups = resolver(
        lambda n: ["169.254.169.254", "127.0.0.1"] if n == 1 else ["169.254.169.254"]
    )
    ca = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(NAME).configure_cert(server_tls)
    async with fault_server(Respond(200), tls=server_tls) as server:
        tls = TLSConfig(ca_pem=ca.cert_pem.bytes().decode())
        assert await get(transport(METADATA_ONLY), f"https://{NAME}:{server.port}/", tls) == 200
    assert lookups == [NAME]
    assert connects == ["127.0.0.1"]
    assert server.requests[0].headers["host"] == f"{NAME}:{server.port}"


async def test_the_next_permitted_address_is_tried_when_one_refuses(
    transport: Callable[..., OAuth2Transport],
    resolver: Callable[[Answers], list[str]],
    connects: list[str],
) -> None:
    async with Listener() as listener:
        resolver(lambda _: ["169.254.169.254", "127.0.0.2", "127.0.0.1"])
        with pytest.raises(NoResponseError):  # the listener closes without an answer
            await get(transport(METADATA_ONLY), f"http://{NAME}:{listener.port}/")
    assert connects == ["127.0.0.2", "127.0.0.1"]  # nothing listens on 127.0.0.2
    assert listener.accepted == 1


async def test_resolution_is_bounded_by_the_connect_timeout(
    resolver: Callable[[Answers], list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    resolver(lambda _: ["127.0.0.1"])
    slow = socket.getaddrinfo

    def hanging(*args: Any, **kwargs: Any) -> Any:
        time.sleep(3.0)
        return slow(*args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", hanging)
    egress_transport = OAuth2Transport(
        egress=METADATA_ONLY, retry=ONCE, timeouts=Timeouts(connect=0.1), proxy=None
    )
    started = time.monotonic()
    try:
        with pytest.raises(NoResponseError, match=r"ConnectTimeout \(connection to"):
            await get(egress_transport, f"https://{NAME}/")
        assert time.monotonic() - started < 2.0  # the lookup itself was cut short
    finally:
        await egress_transport.aclose()


async def test_through_a_proxy_only_addresses_in_urls_are_checked(
    transport: Callable[..., OAuth2Transport], connects: list[str]
) -> None:
    """The operator connects to the proxy (its administrator's choice, here on loopback,
    which the default list denies): that connection is not checked. The proxy resolves
    the authorization server's name, so the deny list cannot see where it leads (here to
    127.0.0.1); a URL whose host is an address is refused before the proxy hears of it."""
    ca = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(NAME).configure_cert(server_tls)
    async with (
        fault_server(Respond(200), tls=server_tls) as server,
        connect_proxy({NAME: "127.0.0.1"}) as proxy,
    ):
        proxied = transport(DEFAULT, proxy=ProxySettings(https_proxy=proxy.url))
        with pytest.raises(AddressNotAllowedError, match=r"169\.254\.169\.254, port 443"):
            await get(proxied, "https://169.254.169.254/latest/meta-data/")
        assert proxy.requests == []
        tls = TLSConfig(ca_pem=ca.cert_pem.bytes().decode())
        assert await get(proxied, f"https://{NAME}:{server.port}/x", tls) == 200
        assert proxy.tunnels == [f"{NAME}:{server.port}"]
    assert connects == ["127.0.0.1"]  # the proxy's address


def discovery(base: str, **fields: Any) -> dict[str, Any]:
    return {"issuer": base, "token_endpoint": f"{base}/token", **fields}


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"token_endpoint": "http://elsewhere.example.test/token"}, "the token_endpoint"),
        ({"revocation_endpoint": "http://elsewhere.example.test/r"}, "the revocation_endpoint"),
        (
            {"mtls_endpoint_aliases": {"token_endpoint": "http://elsewhere.example.test/t"}},
            "the mtls alias of the token_endpoint",
        ),
    ],
)
async def test_discovery_may_not_point_the_operator_at_a_host_not_allowed(
    transport: Callable[..., OAuth2Transport], fields: dict[str, Any], named: str
) -> None:
    async with fault_server() as server:
        server.then(Respond(200, discovery(server.url, **fields)))
        egress = EgressPolicy.parse(allowed_hosts=["127.0.0.1"])
        cache = MetadataCache(transport(egress))
        with pytest.raises(HostNotAllowedError) as refused:
            await cache.get(IssuerConfig(server.url, allow_insecure_http=True))
        assert f"{named} of {server.url} is on a host that matches no --allow-issuer" in str(
            refused.value
        )
        assert "elsewhere" not in str(refused.value)  # the server's text is not repeated
        assert len(server.requests) == 1  # the discovery document, nothing more

        # Control: the same document is fine when its hosts are allowed.
        allowed = EgressPolicy.parse(allowed_hosts=["127.0.0.1", "*.example.test"])
        metadata = await MetadataCache(transport(allowed)).get(
            IssuerConfig(server.url, allow_insecure_http=True)
        )
        assert metadata.issuer == server.url


async def test_an_endpoint_from_the_spec_is_checked_too(
    transport: Callable[..., OAuth2Transport],
) -> None:
    async with fault_server(Respond(200)) as server:
        cache = MetadataCache(transport(EgressPolicy.parse(allowed_hosts=["127.0.0.1"])))
        config = IssuerConfig(
            server.url,
            allow_insecure_http=True,
            discovery=False,
            metadata_overrides={"introspection_endpoint": "http://other.example.test/i"},
        )
        with pytest.raises(HostNotAllowedError, match="the introspection_endpoint of"):
            await cache.get(config)
        assert server.requests == []


async def test_an_issuer_not_allowed_or_plain_http_forbidden_sends_nothing(
    transport: Callable[..., OAuth2Transport],
) -> None:
    async with fault_server(Respond(200)) as server:
        config = IssuerConfig(server.url, allow_insecure_http=True)
        for egress, refusal in (
            (EgressPolicy.parse(allowed_hosts=["*.example.test"]), HostNotAllowedError),
            (EgressPolicy(forbid_insecure_http=True), InsecureHTTPForbiddenError),
        ):
            with pytest.raises(refusal):
                await MetadataCache(transport(egress)).get(config)
            with pytest.raises(refusal):  # and a request without discovery
                await get(transport(egress), f"{server.url}/token")
        assert server.requests == []
