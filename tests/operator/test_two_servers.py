"""The operator against both real authorization servers, oidc-provider and Keycloak
(issue 23): the same tests, parametrized by server, for what compatibility means to a
user: a token for every secret/JWT authentication method, introspected active by the
server itself, revoked through the finalizer when its request goes (RFC 7009, proven by
introspection afterwards), and adopted after a restart without a new token request."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.authserver.fixtures import AuthServer, TestClient, client_auth
from tests.keycloak.fixtures import Keycloak
from tests.operator.conftest import Namespace, credentials, introspect, settle, wait_for
from tests.operator.runner import OperatorThread

METHODS = ["client_secret_basic", "client_secret_post", "client_secret_jwt", "private_key_jwt"]


@dataclass(frozen=True)
class Server:
    """What these tests need of an authorization server, whichever it is."""

    name: str
    issuer: str
    clients: dict[str, TestClient]
    client_fields: dict[str, Any]
    """OAuth2Client spec fields for reaching it (TLS or plain http on loopback)."""
    request_fields: dict[str, Any]
    introspect: Callable[[str, TestClient], dict[str, Any]]


def oidc_provider(authserver: AuthServer) -> Server:
    return Server(
        name="oidc-provider",
        issuer=authserver.issuer,
        clients=authserver.clients,
        client_fields={"tls": {"caBundle": authserver.ca_bundle.read_text()}},
        request_fields={"scopes": ["read"], "resources": [authserver.resource]},
        introspect=lambda token, client: introspect(authserver, token, client),
    )


def keycloak_server(keycloak: Keycloak) -> Server:
    def keycloak_introspect(token: str, client: TestClient) -> dict[str, Any]:
        headers, form = client_auth(client, audience=keycloak.issuer)
        response = httpx.post(
            f"{keycloak.issuer}/protocol/openid-connect/token/introspect",
            data={"token": token, **form},
            headers=headers,
        )
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    return Server(
        name="keycloak",
        issuer=keycloak.issuer,
        clients=keycloak.clients,
        client_fields={"allowInsecureHTTP": True},  # loopback, in the tests only
        request_fields={"scopes": ["read"]},  # Keycloak ignores `resource`
        introspect=keycloak_introspect,
    )


@pytest.fixture(params=["oidc-provider", "keycloak"])
def server(request: pytest.FixtureRequest) -> Server:
    if request.param == "keycloak":
        return keycloak_server(request.getfixturevalue("keycloak"))
    return oidc_provider(request.getfixturevalue("authserver"))


def client_for(ns: Namespace, server: Server, name: str, method: str) -> TestClient:
    """OAuth2Client `name` of `server`'s client for `method`, its credential in a Secret."""
    client = server.clients[method]
    authentication, data, secret_type = credentials(client, f"{name}-credentials", "RS256")
    ns.secret(f"{name}-credentials", data, type_=secret_type)
    ns.create("oauth2clients", name, {
        "issuer": server.issuer, "clientId": client.client_id,
        "authentication": authentication, **server.client_fields,
    })  # fmt: skip
    return client


@pytest.mark.parametrize("method", METHODS)
def test_a_token_for_every_method_revoked_when_its_request_goes(
    ns: Namespace, operator: OperatorThread, server: Server, method: str
) -> None:
    client = client_for(ns, server, "idp", method)
    ns.create("accesstokenrequests", "billing", {"clientRef": {"name": "idp"},
                                                 **server.request_fields})  # fmt: skip
    assert ns.wait_ready("billing", timeout=60)["reason"] == "TokenValid"
    data = ns.token_secret("billing") or {}
    assert "read" in data["scope"].split()
    info = server.introspect(data["access_token"], client)
    assert info["active"] is True
    assert info["client_id"] == client.client_id

    ns.delete("accesstokenrequests", "billing")
    wait_for("the request to go", lambda: ns.get("accesstokenrequests", "billing") is None)
    assert server.introspect(data["access_token"], client)["active"] is False
    assert "Revoked" in {reason for reason, _ in ns.events("billing")}


def test_a_restarted_operator_adopts_the_token(
    ns: Namespace, operator_factory: Callable[..., OperatorThread], server: Server
) -> None:
    first = operator_factory()
    client_for(ns, server, "idp", "client_secret_basic")
    ns.create("accesstokenrequests", "billing", {"clientRef": {"name": "idp"},
                                                 **server.request_fields})  # fmt: skip
    ns.wait_ready("billing", timeout=60)
    issued = (ns.token_secret("billing") or {})["access_token"]
    first.stop()
    second = operator_factory()
    settle(second, ns, "billing")
    assert (ns.token_secret("billing") or {})["access_token"] == issued
    status = (ns.get("accesstokenrequests", "billing") or {})["status"]
    assert status["revision"] == 1, "no new token was requested"
