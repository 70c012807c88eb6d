"""The manager's cache of protocol clients is bounded and can be told to forget, and a
closed manager stays closed (issue 6, defect 7). No request is made."""

from __future__ import annotations

import pytest
import trustme

from oauth2_token_operator.manager import (
    CLIENT_CREDENTIALS,
    InMemoryTokenStore,
    TokenManager,
    TokenManagerConfig,
)
from oauth2_token_operator.oauth2 import ClientConfig, IssuerConfig, OAuth2Transport

ISSUER = IssuerConfig("https://127.0.0.1:9")  # nothing listens: no request may be made
OTHER_ISSUER = IssuerConfig("https://127.0.0.1:10")


def client(client_id: str, secret: str = "s") -> ClientConfig:
    return ClientConfig(
        client_id=client_id, auth_method="client_secret_basic", client_secret=secret
    )


async def test_forget_client_drops_one_configuration_or_every_one_of_a_client() -> None:
    async with TokenManager(InMemoryTokenStore()) as manager:
        old, rotated, other = client("a", "old"), client("a", "rotated"), client("b")
        first = manager.server(ISSUER, old)
        assert manager.server(ISSUER, old) is first  # cached
        manager.server(ISSUER, rotated)
        kept = manager.server(ISSUER, other)
        elsewhere = manager.server(OTHER_ISSUER, old)

        assert await manager.forget_client(ISSUER, old) == 1
        assert manager.server(ISSUER, old) is not first
        assert await manager.forget_client(ISSUER, "a") == 2  # every configuration of "a"
        assert await manager.forget_client(ISSUER, "a") == 0
        assert manager.server(ISSUER, other) is kept
        assert manager.server(OTHER_ISSUER, old) is elsewhere


def mtls_client(ca: trustme.CA, client_id: str) -> ClientConfig:
    """A tls_client_auth client with a certificate of its own (one per call)."""
    issued = ca.issue_cert(f"{client_id}.example")
    return ClientConfig(
        client_id=client_id,
        auth_method="tls_client_auth",
        tls_client_cert=issued.cert_chain_pems[0].bytes().decode(),
        tls_client_key=issued.private_key_pem.bytes().decode(),
    )


async def test_forget_client_closes_the_pools_only_it_used() -> None:
    """A rotated client certificate: the old certificate's connections are closed; a
    pool other clients share stays open."""
    ca = trustme.CA()
    old_cert, new_cert = mtls_client(ca, "m"), mtls_client(ca, "m")
    transport = OAuth2Transport()
    async with TokenManager(InMemoryTokenStore(), transport=transport) as manager:
        pools = {}
        for config in (old_cert, new_cert, client("a"), client("b")):
            manager.server(ISSUER, config)
            pools[config] = transport.client(config.tls(ISSUER.ca_pem))
        assert pools[client("a")] is pools[client("b")]  # no client certificate: shared

        assert await manager.forget_client(ISSUER, old_cert) == 1
        assert pools[old_cert].is_closed
        assert not pools[new_cert].is_closed
        assert await manager.forget_client(ISSUER, "a") == 1
        assert not pools[client("b")].is_closed  # b still uses it
    await transport.aclose()


async def test_the_cache_of_protocol_clients_is_bounded_least_recently_used_first() -> None:
    config = TokenManagerConfig(max_cached_clients=2)
    async with TokenManager(InMemoryTokenStore(), config=config) as manager:
        a = manager.server(ISSUER, client("a"))
        b = manager.server(ISSUER, client("b"))
        assert manager.server(ISSUER, client("a")) is a  # a is now the most recent
        manager.server(ISSUER, client("c"))  # evicts b
        assert manager.server(ISSUER, client("a")) is a
        assert manager.server(ISSUER, client("b")) is not b


async def test_a_closed_manager_does_not_reopen() -> None:
    manager = TokenManager(InMemoryTokenStore())
    await manager.aclose()
    await manager.aclose()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        manager.server(ISSUER, client("a"))
    with pytest.raises(RuntimeError, match="closed"):
        await manager.get(ISSUER, CLIENT_CREDENTIALS, client("a"), scopes=["read"])
    with pytest.raises(RuntimeError, match="closed"):
        await manager.add_refresh_token("rt", ISSUER, "alice", client("a"), scopes=["x"])
    with pytest.raises(RuntimeError, match="closed"):
        await manager.delete_all(ISSUER, "alice", client("a"))
