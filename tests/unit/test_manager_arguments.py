"""Arguments the manager refuses before any request is made (no server needed)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from oauth2_token_operator.manager import (
    CLIENT_CREDENTIALS,
    InMemoryTokenStore,
    TokenKey,
    TokenManager,
)
from oauth2_token_operator.oauth2 import ClientConfig, IssuerConfig

# Nothing listens here: a request would fail with a transport error, not a TypeError.
ISSUER = IssuerConfig("https://127.0.0.1:9")
CLIENT = ClientConfig(client_id="c", auth_method="client_secret_basic", client_secret="s")


@pytest.fixture
async def manager() -> AsyncIterator[TokenManager]:
    async with TokenManager(InMemoryTokenStore()) as m:
        yield m


async def test_a_str_of_scopes_is_refused_not_split_into_letters(manager: TokenManager) -> None:
    """Issue 6: get(..., scopes="read") asked for the scopes {a, d, e, r}."""
    with pytest.raises(TypeError, match="not a str"):
        await manager.get(ISSUER, CLIENT_CREDENTIALS, CLIENT, scopes="read")
    with pytest.raises(TypeError, match="not a str"):
        await manager.add_refresh_token("rt", ISSUER, "alice", CLIENT, scopes="openid")
    alice = TokenKey(ISSUER.issuer, "alice", CLIENT.client_id)
    assert await manager.store.find_refresh_tokens(alice) == []


async def test_options_are_keyword_only(manager: TokenManager) -> None:
    with pytest.raises(TypeError, match="positional"):
        await manager.get(ISSUER, CLIENT_CREDENTIALS, CLIENT, ["read"])  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="positional"):
        await manager.add_refresh_token("rt", ISSUER, "alice", CLIENT, ["x"])  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="positional"):
        await manager.register("at", ISSUER, CLIENT, "Bearer")  # type: ignore[call-arg]
