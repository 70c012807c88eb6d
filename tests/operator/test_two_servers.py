"""The operator against both real authorization servers, oidc-provider and Keycloak
(issue 23): the same tests, parametrized by server, for what compatibility means to a
user: a token for every authentication method but `none` (Keycloak's `tls_client_auth`
through its X.509 client authenticator on its HTTPS listener), introspected active by the
server itself, revoked through the finalizer when its request goes (RFC 7009, proven by
introspection afterwards), adopted after a restart without a new token request, a user's
refresh token used with rotation and a narrower scope, the client's revoke-all, and the
operator's own introspection (RFC 7662, client-authenticated at both servers): an active
token is kept, one revoked behind its back replaced.

What differs between the servers is a field of `Server`, so each difference is stated
once and pinned by the tests: Keycloak adds its default scopes (`profile`, `email`) to
every token, and `status.grantedScopes` says so (the request is Ready, not re-requested);
it ignores `resource`, so its requests name none. Keycloak alone: `grant: token_exchange`
(its standard token exchange)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from oauth2_token_operator.api.annotations import RENEW_REQUESTED_AT as RENEW
from oauth2_token_operator.api.annotations import REVOKE_ALL_REQUESTED_AT
from oauth2_token_operator.util.rfc3339 import rfc3339
from tests.authserver.fixtures import PASSWORD, USERNAME, AuthServer, TestClient, client_auth
from tests.keycloak.fixtures import Keycloak
from tests.operator.conftest import Namespace, credentials, introspect, settle, wait_for
from tests.operator.runner import OperatorThread
from tests.operator.test_refresh_rotation import renew_now, revision

METHODS = ["client_secret_basic", "client_secret_post", "client_secret_jwt", "private_key_jwt",
           "tls_client_auth"]  # fmt: skip


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
    token_request: Callable[[TestClient, dict[str, str]], httpx.Response]
    """POST a form to the token endpoint as the client; the answer, whatever it is."""
    revoke: Callable[[str, TestClient], None]
    """Revoke an access token at the server, as the client (behind the operator's back)."""
    added_scopes: frozenset[str]
    """Scopes the server grants beyond those asked for (its defaults)."""
    scopes: tuple[str, str]
    """Two optional scopes the `client_secret_basic` client may ask for."""

    def user_grant(self, client: TestClient, scopes: list[str]) -> dict[str, Any]:
        """Alice's grant through `client` (the password grant): the token response."""
        form = {"grant_type": "password", "username": USERNAME, "password": PASSWORD,
                "scope": " ".join(scopes), **self.request_form}  # fmt: skip
        return self.token_request(client, form).raise_for_status().json()  # type: ignore[no-any-return]

    @property
    def request_form(self) -> dict[str, str]:
        """The request fields as token request parameters (the RFC 8707 resource)."""
        resources = self.request_fields.get("resources") or []
        return {"resource": resources[0]} if resources else {}


def oidc_provider(authserver: AuthServer) -> Server:
    def introspector(client: TestClient) -> TestClient:
        """`client`, unless it authenticates by its certificate, which is asked for on
        the mTLS listener only: then another (oidc-provider lets any confidential
        client introspect any token)."""
        if client.auth_method == "tls_client_auth":
            return authserver.clients["client_secret_post"]
        return client

    def post(url: str, client: TestClient, form: dict[str, str]) -> httpx.Response:
        headers, auth = client_auth(client, audience=authserver.issuer)
        with httpx.Client(verify=authserver.ssl_context(client), timeout=10.0) as http:
            return http.post(url, data={**form, **auth}, headers=headers)

    def revoke(token: str, client: TestClient) -> None:
        post(authserver.revocation_endpoint, client, {"token": token}).raise_for_status()

    return Server(
        name="oidc-provider",
        issuer=authserver.issuer,
        clients=authserver.clients,
        client_fields={"tls": {"caBundle": authserver.ca_bundle.read_text()}},
        request_fields={"scopes": ["read"], "resources": [authserver.resource]},
        introspect=lambda token, client: introspect(authserver, token, introspector(client)),
        token_request=lambda client, form: post(f"{authserver.issuer}/token", client, form),
        revoke=revoke,
        added_scopes=frozenset(),
        scopes=("read", "write"),
    )


def keycloak_server(keycloak: Keycloak) -> Server:
    """Keycloak through its HTTPS listener (the one where `tls_client_auth` works)."""
    endpoint = f"{keycloak.https_issuer}/protocol/openid-connect"

    def post(url: str, client: TestClient, form: dict[str, str]) -> httpx.Response:
        headers, auth = client_auth(client, audience=keycloak.https_issuer)
        with httpx.Client(verify=keycloak.ssl_context(client), timeout=10.0) as http:
            return http.post(url, data={**form, **auth}, headers=headers)

    def keycloak_introspect(token: str, client: TestClient) -> dict[str, Any]:
        response = post(f"{endpoint}/token/introspect", client, {"token": token})
        return response.raise_for_status().json()  # type: ignore[no-any-return]

    def revoke(token: str, client: TestClient) -> None:
        post(f"{endpoint}/revoke", client, {"token": token}).raise_for_status()

    return Server(
        name="keycloak",
        issuer=keycloak.https_issuer,
        clients=keycloak.clients,
        client_fields={"tls": {"caBundle": keycloak.ca_bundle.read_text()}},
        request_fields={"scopes": ["read"]},  # Keycloak ignores `resource`
        introspect=keycloak_introspect,
        token_request=lambda client, form: post(f"{endpoint}/token", client, form),
        revoke=revoke,
        added_scopes=frozenset({"profile", "email"}),  # its realm's default client scopes
        scopes=("read", "phone"),  # `phone`: one of a new realm's optional client scopes
    )


@pytest.fixture(params=["oidc-provider", pytest.param("keycloak", marks=pytest.mark.keycloak)])
def server(request: pytest.FixtureRequest) -> Server:
    if request.param == "keycloak":
        return keycloak_server(request.getfixturevalue("keycloak"))
    return oidc_provider(request.getfixturevalue("authserver"))


def client_for(ns: Namespace, server: Server, name: str, method: str, **spec: Any) -> TestClient:
    """OAuth2Client `name` of `server`'s client for `method`, its credential in a Secret;
    `spec` adds fields."""
    client = server.clients[method]
    authentication, data, secret_type = credentials(client, f"{name}-credentials", "RS256")
    ns.secret(f"{name}-credentials", data, type_=secret_type)
    ns.create("oauth2clients", name, {
        "issuer": server.issuer, "clientId": client.client_id,
        "authentication": authentication, **server.client_fields, **spec,
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


def test_a_users_refresh_token_rotates_and_narrows_the_scope(
    ns: Namespace, operator: OperatorThread, server: Server
) -> None:
    """grant: refresh_token with a narrower scope than the user granted: the token has
    only what was asked (and the server's defaults), each refresh's rotated refresh token
    is written back into the user's Secret, and the one just spent is refused after."""
    client = client_for(ns, server, "idp", "client_secret_basic")
    wide, narrow = server.scopes
    original = server.user_grant(client, [wide, narrow])["refresh_token"]
    ns.secret("user-grant", {"refresh_token": original})
    ns.create("accesstokenrequests", "api", {
        "clientRef": {"name": "idp"}, **server.request_fields, "scopes": [narrow],
        "grant": "refresh_token",
        "refreshTokenSecretRef": {"name": "user-grant", "key": "refresh_token"},
    })  # fmt: skip
    ns.wait_ready("api", timeout=60)
    data = ns.token_secret("api") or {}
    assert set(data["scope"].split()) == {narrow} | server.added_scopes, "narrowed"
    assert server.introspect(data["access_token"], client)["active"] is True

    def refresh_token() -> str:
        return (ns.token_secret("user-grant") or {})["refresh_token"]

    first = refresh_token()
    assert first != original, "the rotated refresh token was written back"
    renew_now(ns, "api")
    wait_for("revision 2", lambda: revision(ns, "api") >= 2, timeout=30)
    wait_for("the next rotation written back", lambda: refresh_token() != first, timeout=10)
    renewed = ns.token_secret("api") or {}
    assert renewed["access_token"] != data["access_token"]
    assert set(renewed["scope"].split()) == {narrow} | server.added_scopes
    assert server.introspect(renewed["access_token"], client)["active"] is True
    replay = server.token_request(
        client, {"grant_type": "refresh_token", "refresh_token": first, **server.request_form}
    )
    assert (replay.status_code, replay.json()["error"]) == (400, "invalid_grant")


def test_revoke_all_revokes_and_replaces_the_clients_tokens(
    ns: Namespace, operator: OperatorThread, server: Server
) -> None:
    """The client's `revoke-all-requested-at`: each token issued before that time is
    revoked (inactive at the server afterwards) and its request gets a new one."""
    client = client_for(ns, server, "idp", "client_secret_basic")
    names = {"a": [server.scopes[0]], "b": [server.scopes[1]]}  # two tokens, not one shared
    for name, scopes in names.items():
        spec = {"clientRef": {"name": "idp"}, **server.request_fields, "scopes": scopes}
        ns.create("accesstokenrequests", name, spec)
    for name in names:
        ns.wait_ready(name, timeout=60)

    def tokens() -> dict[str, str]:
        return {name: (ns.token_secret(name) or {}).get("access_token", "") for name in names}

    old = tokens()
    assert old["a"] != old["b"]
    at = rfc3339(time.time() + 2)  # after both issuances (whole seconds)
    ns.patch("oauth2clients", "idp", {"metadata": {"annotations": {REVOKE_ALL_REQUESTED_AT: at}}})
    wait_for(
        "every token replaced",
        lambda: all(tokens()[name] not in ("", old[name]) for name in names),
        timeout=30,
    )
    new = tokens()
    for name in names:
        ns.wait_ready(name)
        assert server.introspect(old[name], client)["active"] is False, name
        assert server.introspect(new[name], client)["active"] is True, name
        assert "Revoked" in {reason for reason, _ in ns.events(name)}
        assert revision(ns, name) == 2


def test_the_operators_introspection_keeps_an_active_token_and_replaces_a_revoked_one(
    ns: Namespace, operator: OperatorThread, server: Server
) -> None:
    client = client_for(ns, server, "idp", "client_secret_basic",
                        introspection={"minInterval": "10s"})  # fmt: skip
    ns.create("accesstokenrequests", "watched", {"clientRef": {"name": "idp"},
              **server.request_fields, "introspection": {"interval": "10s"}})  # fmt: skip
    ns.wait_ready("watched", timeout=60)
    token = (ns.token_secret("watched") or {})["access_token"]

    def status() -> dict[str, Any]:
        return (ns.get("accesstokenrequests", "watched") or {}).get("status") or {}

    first = wait_for("a first introspection", lambda: status().get("lastIntrospection"), 30)
    assert first["active"] is True
    assert status()["revision"] == 1, "an active token is kept"
    server.revoke(token, client)
    wait_for(
        "a new token",
        lambda: (ns.token_secret("watched") or {}).get("access_token") not in (None, token),
        timeout=30,
    )
    new = (ns.token_secret("watched") or {})["access_token"]
    assert server.introspect(new, client)["active"] is True
    assert "Introspected" in {reason for reason, _ in ns.events("watched")}
    assert status()["revision"] == 2


def renew(ns: Namespace, name: str) -> None:
    """Ask for a token issued after now (the renew annotation)."""
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 1))
    ns.patch("accesstokenrequests", name, {"metadata": {"annotations": {RENEW: at}}})


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

    server.revoke(first_subject, clients["subject"])
    renew(ns, "for-api")
    wait_for("the exchange's renewal", lambda: revision(ns, "for-api") == 2)
    renewed = (ns.token_secret("for-api") or {})["access_token"]
    assert renewed != exchanged
    assert server.introspect(renewed, api)["active"] is True

    server.revoke((ns.token_secret("service") or {})["access_token"], clients["subject"])
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
