"""No token, secret or key reaches a log record, at any level, from us or from httpx."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from oauth2_token_operator.manager import CLIENT_CREDENTIALS, InMemoryTokenStore, TokenManager
from oauth2_token_operator.oauth2 import ClientConfig, IssuerConfig, OAuth2Transport
from oauth2_token_operator.oauth2.client_auth import basic_credentials
from oauth2_token_operator.oauth2.errors import InvalidClientError, InvalidGrantError
from tests.authserver.fixtures import AuthServer

pytestmark = pytest.mark.authserver


async def test_a_full_lifecycle_logs_no_secret(
    authserver: AuthServer,
    issuer: IssuerConfig,
    transport: OAuth2Transport,
    config_for: Callable[..., ClientConfig],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    basic = config_for("client_secret_basic")
    jwt_client = config_for("private_key_jwt", "ES256")
    manager = TokenManager(InMemoryTokenStore(), transport=transport)
    res = [authserver.resource]
    secrets: list[str] = []

    token = await manager.get(issuer, CLIENT_CREDENTIALS, basic, scopes=["read"], resources=res)
    await manager.introspect(token.value, issuer, basic)
    await manager.delete(token.value, issuer, basic)
    secrets.append(token.value)

    signed = await manager.get(
        issuer, CLIENT_CREDENTIALS, jwt_client, scopes=["read"], resources=res
    )
    secrets.append(signed.value)

    grant = authserver.password_grant(authserver.clients["client_secret_basic"], ["openid"])
    await manager.add_refresh_token(
        grant["refresh_token"], issuer, "alice", basic, scopes=["openid"]
    )
    refreshed = await manager.get(issuer, "alice", basic, scopes=["openid"])
    secrets += [grant["refresh_token"], refreshed.value]
    for stored in await manager.store.find_refresh_tokens(refreshed.key):
        secrets.append(stored.value)

    # Failures log too: a refused refresh token and a wrong secret.
    await manager.add_refresh_token("dead-refresh-token-value", issuer, "bob", basic, scopes=["x"])
    with pytest.raises(InvalidGrantError):
        await manager.get(issuer, "bob", basic, scopes=["x"])
    wrong = config_for("client_secret_basic", client_secret="wrong-secret-value-123")
    with pytest.raises(InvalidClientError):
        await manager.get(issuer, CLIENT_CREDENTIALS, wrong, scopes=["read"], resources=res)
    secrets += ["dead-refresh-token-value", "wrong-secret-value-123"]

    assert basic.client_secret is not None
    secret = basic.client_secret.get_secret_value()
    secrets += [secret, basic_credentials(basic.client_id, secret).removeprefix("Basic ")]
    assert jwt_client.private_key is not None
    key_lines = jwt_client.private_key.get_secret_value().splitlines()[1:-1]
    secrets += [line for line in key_lines if len(line) > 20]

    assert caplog.records, "nothing was logged: the test would prove nothing"
    logged = "\n".join(f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records)
    for value in secrets:
        assert value not in logged
