"""Token requests through an egress proxy from HTTPS_PROXY, bypassed by NO_PROXY,
and nothing else taken from the environment.

Go's rules never proxy loopback addresses, and every test server listens on
127.0.0.1, so the authorization server is addressed by a name of its own,
``as.example.test``: the proxy (``tests/proxy.py``) maps it to 127.0.0.1, and
for direct connections name resolution is patched to do the same, refusing
every other name so that no lookup leaves the machine. The token endpoint is
the scripted server (``tests/faults.py``) with TLS, since oidc-provider's
certificate names only 127.0.0.1.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme

from oauth2_token_operator.oauth2 import (
    AuthorizationServer,
    ClientConfig,
    IssuerConfig,
    MetadataCache,
    NoResponseError,
    OAuth2Transport,
    RetryPolicy,
    TLSConfig,
)
from oauth2_token_operator.oauth2.transport import Replay
from tests.faults import FaultServer, Respond, fault_server
from tests.proxy import ConnectProxy, connect_proxy

NAME = "as.example.test"
TOKEN = {"access_token": "at-1", "token_type": "Bearer", "expires_in": 300}
PROXY_VARIABLES = (
    "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy",
    "ALL_PROXY", "all_proxy", "SSL_CERT_FILE", "SSL_CERT_DIR", "NETRC",
)  # fmt: skip


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for variable in PROXY_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    return monkeypatch


@pytest.fixture
def resolve_to_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name == NAME:
            name = "127.0.0.1"
        elif name not in ("127.0.0.1", "localhost", "::1"):
            raise socket.gaierror(socket.EAI_NONAME, f"tests resolve only {NAME}")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@dataclass
class Setup:
    server: FaultServer
    proxy: ConnectProxy
    ca_pem: str

    @property
    def base(self) -> str:
        return f"https://{NAME}:{self.server.port}"

    def authorization_server(self, transport: OAuth2Transport) -> AuthorizationServer:
        issuer = IssuerConfig(
            self.base,
            discovery=False,
            metadata_overrides={"token_endpoint": f"{self.base}/token"},
            ca_pem=self.ca_pem,
        )
        return AuthorizationServer(
            issuer,
            ClientConfig(client_id="c", client_secret="s"),
            transport=transport,
            metadata_cache=MetadataCache(transport),
        )


@pytest.fixture
async def setup(ca: trustme.CA, resolve_to_loopback: None) -> AsyncIterator[Setup]:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(NAME).configure_cert(server_context)
    async with (
        fault_server(Respond(200, TOKEN), tls=server_context) as server,
        connect_proxy({NAME: "127.0.0.1"}) as proxy,
    ):
        yield Setup(server, proxy, ca.cert_pem.bytes().decode())


@pytest.mark.parametrize("variable", ["HTTPS_PROXY", "https_proxy"])
async def test_the_token_request_goes_through_the_proxy(
    setup: Setup, clean_env: pytest.MonkeyPatch, variable: str
) -> None:
    clean_env.setenv(variable, setup.proxy.url.replace("http://", "http://user:pw@"))
    transport = OAuth2Transport()  # reads the environment
    token = await setup.authorization_server(transport).client_credentials()
    await transport.aclose()
    assert token.access_token == "at-1"
    assert setup.proxy.tunnels == [f"{NAME}:{setup.server.port}"]
    assert setup.proxy.requests[0].headers["proxy-authorization"].startswith("Basic ")
    assert [r.path for r in setup.server.requests] == ["/token"]


@pytest.mark.parametrize(
    "no_proxy", [NAME, ".example.test", "example.test", "*.example.test", f"{NAME}:PORT", "*"]
)
async def test_no_proxy_bypasses_the_proxy(
    setup: Setup, clean_env: pytest.MonkeyPatch, no_proxy: str
) -> None:
    clean_env.setenv("HTTPS_PROXY", setup.proxy.url)
    clean_env.setenv(
        "no_proxy", f"other.example, {no_proxy.replace('PORT', str(setup.server.port))}"
    )
    transport = OAuth2Transport()
    token = await setup.authorization_server(transport).client_credentials()
    await transport.aclose()
    assert token.access_token == "at-1"
    assert setup.proxy.requests == []
    assert len(setup.server.requests) == 1


async def test_no_proxy_for_another_port_still_proxies(
    setup: Setup, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("HTTPS_PROXY", setup.proxy.url)
    clean_env.setenv("NO_PROXY", f"{NAME}:{setup.server.port + 1}")
    transport = OAuth2Transport()
    await setup.authorization_server(transport).client_credentials()
    await transport.aclose()
    assert setup.proxy.tunnels == [f"{NAME}:{setup.server.port}"]


async def test_http_proxy_serves_plain_http_only(
    setup: Setup, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("HTTP_PROXY", setup.proxy.url)
    transport = OAuth2Transport(retry=RetryPolicy(attempts=1))
    await setup.authorization_server(transport).client_credentials()  # https: direct
    assert setup.proxy.requests == []
    response = await transport.request(
        "GET", f"http://{NAME}:{setup.server.port}/x", endpoint="e", tls=TLSConfig(),
        replay=Replay.SAFE,
    )  # fmt: skip
    await transport.aclose()
    assert response.status_code == 403  # the test proxy records and does not forward
    assert setup.proxy.requests[0].target == f"http://{NAME}:{setup.server.port}/x"


@pytest.fixture
def netrc(tmp_path: Path) -> Path:
    path = tmp_path / "netrc"
    path.write_text(f"machine {NAME} login netrc-user password netrc-password\n")
    path.chmod(0o600)
    return path


async def test_nothing_else_from_the_environment_is_honoured(
    setup: Setup, clean_env: pytest.MonkeyPatch, tmp_path: Path, netrc: Path
) -> None:
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text(setup.ca_pem)
    for variable in ("ALL_PROXY", "all_proxy"):
        clean_env.setenv(variable, setup.proxy.url)
    clean_env.setenv("SSL_CERT_FILE", str(ca_file))
    clean_env.setenv("SSL_CERT_DIR", str(tmp_path))
    clean_env.setenv("NETRC", str(netrc))
    transport = OAuth2Transport(retry=RetryPolicy(attempts=1))
    url = f"{setup.base}/anything"

    # SSL_CERT_FILE would make the test CA trusted; without ca_pem it must not be.
    with pytest.raises(NoResponseError, match="CERTIFICATE_VERIFY_FAILED"):
        await transport.request("GET", url, endpoint="e", tls=TLSConfig(), replay=Replay.SAFE)

    trusted = TLSConfig(ca_pem=setup.ca_pem)
    response = await transport.request("GET", url, endpoint="e", tls=trusted, replay=Replay.SAFE)
    await transport.aclose()
    assert response.status_code == 200
    assert "authorization" not in setup.server.requests[-1].headers  # no .netrc
    assert setup.proxy.requests == []  # no ALL_PROXY
