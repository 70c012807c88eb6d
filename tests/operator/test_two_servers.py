"""The operator against both real authorization servers, oidc-provider and Keycloak
(issue 23): the same tests, parametrized by server, for what compatibility means to a
user: a token for every secret/JWT authentication method, introspected active by the
server itself, revoked through the finalizer when its request goes (RFC 7009, proven by
introspection afterwards), and adopted after a restart without a new token request."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from oauth2_token_operator.api.annotations import RENEW_REQUESTED_AT as RENEW
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


def renew(ns: Namespace, name: str) -> None:
    """Ask for a token issued after now (the renew annotation)."""
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 1))
    ns.patch("accesstokenrequests", name, {"metadata": {"annotations": {RENEW: at}}})


def revision(ns: Namespace, name: str) -> int:
    status = (ns.get("accesstokenrequests", name) or {}).get("status") or {}
    return int(status.get("revision") or 0)


def test_token_exchange_with_keycloak(
    ns: Namespace, operator_factory: Callable[..., OperatorThread], keycloak: Keycloak
) -> None:
    """`grant: token_exchange` (RFC 8693) against Keycloak's standard token exchange: the
    request waits for the request whose token it exchanges (created later), goes on as
    soon as that one holds a token (not at its failure backoff, a minute here), and gets
    a token for the audience asked (the server's introspection says so). The exchanged
    token lives its own life: the subject's renewal leaves it alone, and its own renewal
    exchanges the subject's token of the moment (the older one, revoked meanwhile, would
    be refused). A subject token revoked behind the operator's back makes the next
    exchange fail as `SubjectTokenRejected`, the token in hand still Ready. Deleting the
    request revokes its token, and a restarted operator adopts it."""
    config = {"min_renewal_lead": 5.0, "revocation_deadline": 5.0, "retry_base_delay": 60.0}
    first = operator_factory(**config)
    clients = keycloak.exchange_clients
    server = keycloak_server(keycloak)
    server = dataclasses.replace(server, clients={**server.clients, **clients})
    for name in ("subject", "exchanger"):
        client_for(ns, server, name, name)
    api = clients["api"]
    ns.create("accesstokenrequests", "for-api", {
        "clientRef": {"name": "exchanger"}, "grant": "token_exchange", "audience": "api",
        "tokenExchange": {"subjectTokenFrom": {"accessTokenRequestRef": {"name": "service"}}},
    })  # fmt: skip
    ns.wait_ready("for-api", "False", "SubjectRequestNotFound")
    ns.create("accesstokenrequests", "service", {"clientRef": {"name": "subject"}})
    ns.wait_ready("service")
    ns.wait_ready("for-api", timeout=20)  # far sooner than the failure's backoff
    exchanged = (ns.token_secret("for-api") or {})["access_token"]
    info = server.introspect(exchanged, api)
    assert info["active"] is True
    assert info["client_id"] == "exchanger"
    assert "api" in info["aud"]
    first.stop()  # a restarted operator adopts both tokens, and exchanges nothing
    settle(operator_factory(**config), ns, "for-api")
    assert (ns.token_secret("for-api") or {})["access_token"] == exchanged
    assert revision(ns, "for-api") == 1

    first_subject = (ns.token_secret("service") or {})["access_token"]
    renew(ns, "service")
    wait_for("the subject's renewal", lambda: revision(ns, "service") == 2)
    time.sleep(2)  # anything the subject's renewal would cause happens by now
    assert (ns.token_secret("for-api") or {})["access_token"] == exchanged
    assert revision(ns, "for-api") == 1

    revoke(server, first_subject, clients["subject"])
    renew(ns, "for-api")
    wait_for("the exchange's renewal", lambda: revision(ns, "for-api") == 2)
    renewed = (ns.token_secret("for-api") or {})["access_token"]
    assert renewed != exchanged
    assert server.introspect(renewed, api)["active"] is True

    revoke(server, (ns.token_secret("service") or {})["access_token"], clients["subject"])
    renew(ns, "for-api")
    wait_for(
        "the refused exchange",
        lambda: (ns.condition("for-api", "Issuing") or {}).get("reason") == "SubjectTokenRejected",
    )
    assert (ns.condition("for-api") or {})["status"] == "True"  # the token in hand is valid
    assert revision(ns, "for-api") == 2

    ns.delete("accesstokenrequests", "for-api")
    wait_for("the request to go", lambda: ns.get("accesstokenrequests", "for-api") is None)
    assert server.introspect(renewed, api)["active"] is False


def revoke(server: Server, token: str, client: TestClient) -> None:
    """Revoke `token` at the server itself, as its client (behind the operator's back)."""
    headers, form = client_auth(client, audience=server.issuer)
    httpx.post(
        f"{server.issuer}/protocol/openid-connect/revoke",
        data={"token": token, "token_type_hint": "access_token", **form},
        headers=headers,
    ).raise_for_status()
