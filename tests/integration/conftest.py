"""Builds library configuration from the test authorization server's clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from oauth2_token_operator.manager import InMemoryTokenStore, TokenManager, TokenManagerConfig
from oauth2_token_operator.oauth2 import ClientConfig, IssuerConfig, OAuth2Transport
from tests.authserver.fixtures import AuthServer, TestClient


def client_config(client: TestClient, alg: str | None = None, **overrides: object) -> ClientConfig:
    """The library's ClientConfig for one of the server's registered clients."""
    fields: dict[str, object] = {"client_id": client.client_id, "auth_method": client.auth_method}
    if client.client_secret is not None:
        fields["client_secret"] = client.client_secret
    if client.auth_method == "private_key_jwt":
        alg = alg or "RS256"
        fields.update(
            private_key=client.private_keys[alg], signing_alg=alg, key_id=client.kids.get(alg)
        )
    if client.auth_method == "tls_client_auth":
        assert client.cert_file is not None
        assert client.key_file is not None
        fields.update(
            tls_client_cert=client.cert_file.read_text(), tls_client_key=client.key_file.read_text()
        )
    fields.update(overrides)
    return ClientConfig(**fields)


@pytest.fixture(scope="session")
def issuer(authserver: AuthServer) -> IssuerConfig:
    return IssuerConfig(issuer=authserver.issuer, ca_pem=authserver.ca_bundle.read_text())


@pytest.fixture(scope="session")
def config_for(authserver: AuthServer) -> Callable[..., ClientConfig]:
    def make(method: str, alg: str | None = None, **overrides: object) -> ClientConfig:
        return client_config(authserver.clients[method], alg, **overrides)

    return make


@pytest.fixture
async def transport() -> AsyncIterator[OAuth2Transport]:
    t = OAuth2Transport()
    yield t
    await t.aclose()


@pytest.fixture
async def manager(transport: OAuth2Transport) -> TokenManager:
    return TokenManager(InMemoryTokenStore(), transport=transport, config=TokenManagerConfig())


class Counters:
    """Deltas of the server's request counters (oidc-provider instrumentation)."""

    def __init__(self, authserver: AuthServer) -> None:
        self._authserver = authserver
        self._start = authserver.counters()

    def delta(self, key: str) -> int:
        return self._authserver.counters().get(key, 0) - self._start.get(key, 0)


@pytest.fixture
def counters(authserver: AuthServer) -> Counters:
    return Counters(authserver)
