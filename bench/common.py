"""What every benchmark case needs: the running test server and a client of it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass

from oauth2_token_operator.oauth2 import ClientConfig, IssuerConfig
from oauth2_token_operator.oauth2.client_auth import basic_credentials
from tests.authserver.fixtures import AuthServer


@dataclass(frozen=True)
class Setup:
    server: AuthServer
    issuer: IssuerConfig
    client: ClientConfig
    """The server's client_secret_basic client."""
    basic: dict[str, str]
    """Its ``Authorization`` header, for raw httpx requests."""
    form: dict[str, str]
    """A client_credentials request for ``read`` at the test resource server."""

    def short_ttl_client(self) -> ClientConfig:
        """A client whose access tokens live ``tests.authserver.fixtures.SHORT_TTL`` seconds."""
        registered = self.server.clients["short_ttl"]
        assert registered.client_secret is not None
        return ClientConfig(
            client_id=registered.client_id,
            auth_method="client_secret_basic",
            client_secret=registered.client_secret,
        )


def setup(server: AuthServer) -> Setup:
    registered = server.clients["client_secret_basic"]
    assert registered.client_secret is not None
    return Setup(
        server=server,
        issuer=IssuerConfig(server.issuer, ca_pem=server.ca_bundle.read_text()),
        client=ClientConfig(
            client_id=registered.client_id,
            auth_method="client_secret_basic",
            client_secret=registered.client_secret,
        ),
        basic={"Authorization": basic_credentials(registered.client_id, registered.client_secret)},
        form={"grant_type": "client_credentials", "scope": "read", "resource": server.resource},
    )


async def at_most(limit: int, calls: Iterable[Awaitable[None]]) -> None:
    """Await every call, `limit` of them at a time."""
    gate = asyncio.Semaphore(limit)

    async def gated(call: Awaitable[None]) -> None:
        async with gate:
            await call

    await asyncio.gather(*(gated(call) for call in calls))
