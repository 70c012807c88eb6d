"""The OAuth2 core against Keycloak, the second real authorization server (issue 23).

What behaves differently from oidc-provider is pinned here, each with what the operator
makes of it: Keycloak adds its realm's default scopes to what was asked for (and keeps
them when a refresh narrows the scope), answers a
wrong client secret with `unauthorized_client` and HTTP 401 (the operator reads a 401 as
`InvalidClient`),
rotates refresh tokens (with `revokeRefreshToken`) and refuses a reused one, ignores the
`resource` and `audience` parameters, and answers the revocation of a token it does not
know with HTTP 200 and an `invalid_token` body. The CLI prints its whole token response
(`refresh_expires_in`, `not-before-policy`, `session_state`) and does its refresh grant."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from oauth2_token_operator.cli.main import main
from oauth2_token_operator.oauth2 import (
    AuthorizationServer,
    ClientConfig,
    IssuerConfig,
    MetadataCache,
    OAuth2Transport,
)
from oauth2_token_operator.oauth2.authorization_server import ACCESS_TOKEN_TYPE
from oauth2_token_operator.oauth2.errors import (
    InvalidClientError,
    InvalidGrantError,
    OAuth2ErrorResponse,
)
from oauth2_token_operator.policies.exchange import exchange_refusal
from oauth2_token_operator.policies.failures import classify
from tests.authserver.fixtures import TestClient
from tests.integration.conftest import client_config
from tests.keycloak.fixtures import Keycloak

pytestmark = pytest.mark.keycloak

METHODS = ["client_secret_basic", "client_secret_post", "client_secret_jwt", "private_key_jwt"]


@pytest.fixture
async def transport() -> AsyncIterator[OAuth2Transport]:
    t = OAuth2Transport()
    yield t
    await t.aclose()


def server_for(keycloak: Keycloak, client: ClientConfig, t: OAuth2Transport) -> AuthorizationServer:
    issuer = IssuerConfig(issuer=keycloak.issuer, allow_insecure_http=True)
    return AuthorizationServer(issuer, client, transport=t, metadata_cache=MetadataCache(t))


async def test_discovery(keycloak: Keycloak, transport: OAuth2Transport) -> None:
    config = IssuerConfig(issuer=keycloak.issuer, allow_insecure_http=True)
    metadata = await MetadataCache(transport).get(config)
    assert metadata.issuer == keycloak.issuer
    assert metadata.token_endpoint == f"{keycloak.issuer}/protocol/openid-connect/token"
    assert metadata.introspection_endpoint is not None
    assert metadata.revocation_endpoint is not None


@pytest.mark.parametrize("method", METHODS)
async def test_each_auth_method_obtains_a_client_credentials_token(
    keycloak: Keycloak, transport: OAuth2Transport, method: str
) -> None:
    client = client_config(keycloak.clients[method])
    server = server_for(keycloak, client, transport)
    token = await server.client_credentials(frozenset({"read"}))
    # Keycloak grants its default scopes besides the one asked for.
    assert "read" in token.scopes
    assert token.expires_at is not None
    introspection = await server.introspect(token.access_token)
    assert introspection.active  # the client is in the token's audience (realm.json)
    assert introspection.client_id == client.client_id


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
async def test_a_wrong_secret_is_invalid_client(
    keycloak: Keycloak, transport: OAuth2Transport, method: str
) -> None:
    """Keycloak says `unauthorized_client` (RFC 6749: a grant type the client may not use)
    with HTTP 401; the core reports the code as said, and the operator reads a 401 as
    the client failing to authenticate (`InvalidClient`, retried once fixed)."""
    client = client_config(keycloak.clients[method], client_secret="not-the-secret")
    with pytest.raises(OAuth2ErrorResponse) as refused:
        await server_for(keycloak, client, transport).client_credentials(frozenset({"read"}))
    assert (refused.value.error, refused.value.status_code) == ("unauthorized_client", 401)
    assert classify(refused.value).reason == "InvalidClient"
    assert "not-the-secret" not in str(refused.value)


async def test_introspection_active_then_inactive_after_revocation(
    keycloak: Keycloak, transport: OAuth2Transport
) -> None:
    server = server_for(keycloak, client_config(keycloak.clients["client_secret_post"]), transport)
    token = await server.client_credentials(frozenset({"read"}))
    assert (await server.introspect(token.access_token)).active
    await server.revoke(token.access_token)
    assert (await server.introspect(token.access_token)).active is False
    # RFC 7009 §2.2: unknown tokens too (Keycloak: HTTP 200 with an invalid_token body).
    await server.revoke("never-issued-token")


async def test_refresh_rotates_narrows_and_refuses_a_reused_token(
    keycloak: Keycloak, transport: OAuth2Transport
) -> None:
    test_client = keycloak.clients["client_secret_post"]
    async with httpx.AsyncClient() as http:  # the user's grant, as an app would get it
        granted = (await http.post(
            f"{keycloak.issuer}/protocol/openid-connect/token",
            data={"grant_type": "password", "client_id": test_client.client_id,
                  "client_secret": test_client.client_secret, "username": "alice",
                  "password": "wonderland:P@ss w0rd+&=", "scope": "read email"},
        )).raise_for_status().json()  # fmt: skip
    server = server_for(keycloak, client_config(test_client), transport)
    assert "read" in granted["scope"].split()
    # Narrowed to a default scope: the optional `read` goes (the defaults always stay).
    renewed = await server.refresh(granted["refresh_token"], scopes=frozenset({"profile"}))
    assert "profile" in renewed.scopes
    assert "read" not in renewed.scopes
    assert renewed.refresh_token not in (None, granted["refresh_token"])  # rotated
    with pytest.raises(InvalidGrantError):
        await server.refresh(granted["refresh_token"])


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def password_grant(keycloak: Keycloak, client: TestClient, scope: str) -> dict[str, Any]:
    """Alice's grant through `client` (the password grant), as an app would get it."""
    response = httpx.post(
        f"{keycloak.issuer}/protocol/openid-connect/token",
        data={"grant_type": "password", "client_id": client.client_id,
              "client_secret": client.client_secret, "username": "alice",
              "password": "wonderland:P@ss w0rd+&=", "scope": scope},
    )  # fmt: skip
    return response.raise_for_status().json()  # type: ignore[no-any-return]


def test_the_cli_prints_keycloaks_whole_token_response_and_refreshes(
    keycloak: Keycloak,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """`get --json` keeps Keycloak's own members (`refresh_expires_in`,
    `not-before-policy`); `refresh` uses a refresh token from a file (writing the rotated
    one back) or stdin (then the rotated one is in the --json response), and narrows the
    scope; the spent refresh token is refused afterwards."""
    client = keycloak.clients["client_secret_post"]
    assert client.client_secret is not None
    monkeypatch.setenv("KC_SECRET", client.client_secret)
    flags = ["--issuer", keycloak.issuer, "--allow-insecure-http", "--client-id",
             client.client_id, "--auth-method", "client_secret_post",
             "--client-secret-env", "KC_SECRET"]  # fmt: skip
    code, out, err = cli(capsys, "get", *flags, "--scope", "read", "--json")
    assert code == 0, err
    got = json.loads(out)
    assert {"refresh_expires_in", "not-before-policy"} <= got.keys()
    assert "read" in got["scope"].split()

    granted = password_grant(keycloak, client, "read email")
    stored = tmp_path / "refresh-token"
    stored.write_text(granted["refresh_token"] + "\n")
    code, out, err = cli(capsys, "refresh", *flags, "--refresh-token-file", str(stored),
                         "--scope", "profile", "--json")  # fmt: skip
    assert code == 0, err
    refreshed = json.loads(out)
    assert {"refresh_expires_in", "not-before-policy", "session_state"} <= refreshed.keys()
    assert "profile" in refreshed["scope"].split()
    assert "read" not in refreshed["scope"].split(), "narrowed"
    rotated = refreshed["refresh_token"]
    assert rotated != granted["refresh_token"]
    assert stored.read_text() == rotated + "\n", "the rotated refresh token is kept"
    assert f"the new one is in {stored}" in err
    for secret in (rotated, granted["refresh_token"], refreshed["access_token"]):
        assert secret not in err

    # The rotated one from stdin works (its successor is in the response, no file written).
    monkeypatch.setattr("sys.stdin", io.StringIO(rotated + "\n"))
    code, out, err = cli(capsys, "refresh", *flags, "--json")
    assert code == 0, err
    latest = json.loads(out)["refresh_token"]
    assert latest not in (None, rotated)
    assert stored.read_text() == rotated + "\n", "stdin: no file written"
    # The one just spent is refused: exit 1, nothing on stdout.
    monkeypatch.setattr("sys.stdin", io.StringIO(rotated))
    code, out, err = cli(capsys, "refresh", *flags, "--json")
    assert (code, out) == (1, "")
    assert "invalid_grant" in err


async def test_resource_and_audience_are_ignored_and_an_unknown_token_revoked_is_200(
    keycloak: Keycloak, transport: OAuth2Transport
) -> None:
    """Keycloak issues the token without the RFC 8707 `resource` or the `audience`
    parameter showing in it (no error either: a request naming them is Ready with a token
    that does not carry them), and answers the revocation of a token it never issued with
    HTTP 200 and an `invalid_token` body, which RFC 7009 §2.2 makes a success."""
    test_client = keycloak.clients["client_secret_post"]
    server = server_for(keycloak, client_config(test_client), transport)
    api = "https://api.example.test"
    token = await server.client_credentials(frozenset({"read"}), resources=[api], audience=api)
    info = await server.introspect(token.access_token)
    audiences = [info.aud] if isinstance(info.aud, str) else list(info.aud or [])
    assert info.active
    assert test_client.client_id in audiences  # the audience mapper's (realm.json)
    assert api not in audiences
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            f"{keycloak.issuer}/protocol/openid-connect/revoke",
            data={"token": "never-issued-token", "client_id": test_client.client_id,
                  "client_secret": test_client.client_secret},
        )  # fmt: skip
    assert (answer.status_code, answer.json()["error"]) == (200, "invalid_token")


async def test_token_exchange_for_another_audience(
    keycloak: Keycloak, transport: OAuth2Transport
) -> None:
    """Keycloak's standard token exchange (V2): `exchanger` (allowed to exchange, and in
    the subject token's audience) gets a token for the audience `api` alone, in
    exchange for `subject`'s client_credentials token. What Keycloak does not support
    is pinned too: an unknown audience is `invalid_client` "Audience not found" (HTTP
    400); a revoked subject token is `invalid_request` (HTTP 400), which the operator
    says is the subject token's refusal; the exchanged token outlives neither the
    subject token's `exp` nor survives its own revocation, but does survive the subject
    token's."""
    clients = keycloak.exchange_clients
    subject = server_for(keycloak, client_config(clients["subject"]), transport)
    exchanger = server_for(keycloak, client_config(clients["exchanger"]), transport)
    api = server_for(keycloak, client_config(clients["api"]), transport)
    subject_token = await subject.client_credentials()

    exchanged = await exchanger.token_exchange(subject_token.access_token, audience="api")
    assert exchanged.token_type == "Bearer"
    assert exchanged.refresh_token is None
    assert exchanged.extra["issued_token_type"] == ACCESS_TOKEN_TYPE
    assert exchanged.expires_at is not None
    assert subject_token.expires_at is not None
    assert exchanged.expires_at <= subject_token.expires_at + 2  # capped at the subject's
    info = await api.introspect(exchanged.access_token)
    assert info.active
    assert info.client_id == "exchanger"
    assert "api" in (info.aud if isinstance(info.aud, list) else [info.aud])
    # Narrower than asked for by the audience: the exchanger itself cannot see it.
    assert (await exchanger.introspect(exchanged.access_token)).active is False

    with pytest.raises(InvalidClientError) as unknown:
        await exchanger.token_exchange(subject_token.access_token, audience="no-such-client")
    assert unknown.value.status_code == 400

    await subject.revoke(subject_token.access_token)
    with pytest.raises(OAuth2ErrorResponse) as refused:
        await exchanger.token_exchange(subject_token.access_token, audience="api")
    assert (refused.value.error, refused.value.status_code) == ("invalid_request", 400)
    refusal = exchange_refusal(refused.value, "subject-request")
    assert refusal is not None
    assert classify(refusal).reason == "SubjectTokenRejected"
    assert subject_token.access_token not in str(refusal)
    assert (await api.introspect(exchanged.access_token)).active  # lives its own life

    await exchanger.revoke(exchanged.access_token)
    assert (await api.introspect(exchanged.access_token)).active is False


async def test_token_exchange_by_a_client_that_may_not(
    keycloak: Keycloak, transport: OAuth2Transport
) -> None:
    """A client that may not exchange the subject token (here: neither enabled for
    standard token exchange nor in the token's audience) is refused, no token given. The
    session's Keycloak runs the legacy token exchange too (`FEATURES`, for a
    ServiceAccount's token as the subject token), which answers such a client first: 403
    `access_denied` ("Client not allowed to exchange"; without those features the
    standard exchange says 400 `invalid_request`, as for a revoked subject token). The
    operator's `SubjectTokenRejected` says the client is not let exchange that token."""
    clients = keycloak.exchange_clients
    subject = server_for(keycloak, client_config(clients["subject"]), transport)
    other = server_for(keycloak, client_config(keycloak.clients["client_secret_basic"]), transport)
    subject_token = await subject.client_credentials()
    with pytest.raises(OAuth2ErrorResponse) as refused:
        await other.token_exchange(subject_token.access_token)
    assert (refused.value.error, refused.value.status_code) == ("access_denied", 403)
    refusal = exchange_refusal(refused.value, "subject-request")
    assert refusal is not None
    assert classify(refusal).reason == "SubjectTokenRejected"
    assert "does not let this client exchange" in refusal.message
