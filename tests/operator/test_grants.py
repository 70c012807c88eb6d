"""The refresh_token, register and token_exchange grants end to end (token_exchange
against a server that supports it: `test_two_servers`, with Keycloak; a ServiceAccount's
token as the subject token: against Keycloak's legacy token exchange)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from kubernetes import client as k8s

from oauth2_token_operator.api.crd import GROUP, VERSION
from tests.authserver.fixtures import basic_authorization
from tests.cluster.harness import KubeCluster, unique_name
from tests.faults import Respond, threaded_server
from tests.integration.conftest import Counters
from tests.keycloak.fixtures import (
    REALM,
    SERVICE_ACCOUNT_IDP,
    Keycloak,
    admin,
    exchange_service_account_tokens,
)
from tests.operator.conftest import USABLE, Namespace, introspect, settle, wait_for
from tests.operator.runner import OperatorThread
from tests.operator.test_refresh_rotation import renew_now, revision
from tests.operator.test_service_account_tokens import (
    TENANT_RULES,
    cluster_issuer,
    cluster_tokens,
    federation,  # noqa: F401 (a fixture: Keycloak trusts the control plane's issuer)
    service_account,
)


def test_refresh_token_grant_renews_and_persists_each_rotation(
    ns: Namespace, operator: OperatorThread
) -> None:
    server = ns.authserver
    client = server.clients["renewal_ttl"]  # 20 s access tokens; refresh tokens rotate
    granted = server.password_grant(client, ["read"], resource=server.resource)
    original = granted["refresh_token"]
    ns.secret("user-grant", {"refresh_token": original})
    ns.client("idp", client)
    ns.refresh_request("api", "idp", "user-grant")
    ns.wait_ready("api")
    first = ns.token_secret("api")
    assert first is not None
    assert introspect(server, first["access_token"], client)["active"] is True
    stored = (ns.token_secret("user-grant") or {})["refresh_token"]
    assert stored != original, "the rotated refresh token was not written back"

    # Two renewals of 20 s tokens: each rotates the refresh token, each is persisted.
    refresh_tokens = {stored}
    access_tokens = {first["access_token"]}
    end = time.monotonic() + 40
    while time.monotonic() < end and len(access_tokens) < 3:
        data = ns.token_secret("api") or {}
        access_tokens.add(data.get("access_token", ""))
        refresh_tokens.add((ns.token_secret("user-grant") or {})["refresh_token"])
        time.sleep(0.5)
    assert len(access_tokens) >= 3
    assert len(refresh_tokens) >= 3
    latest = (ns.token_secret("api") or {})["access_token"]
    assert introspect(server, latest, client)["active"] is True
    condition = ns.condition("api", "Issuing")
    assert condition is not None
    assert condition["reason"] == "UpToDate"


def test_a_rejected_refresh_token_is_a_condition_not_a_loop(
    ns: Namespace, operator: OperatorThread, counters: object
) -> None:
    ns.secret("user-grant", {"refresh_token": "not-a-refresh-token"})
    ns.client("idp", ns.authserver.clients["renewal_ttl"])
    ns.refresh_request("api", "idp", "user-grant")
    ready = ns.wait_ready("api", status="False", reason="RefreshTokenRejected")
    assert "needs a change" in ready["message"]
    attempts = (ns.get("accesstokenrequests", "api") or {})["status"]["failedAttempts"]
    settle(operator, ns, "api")  # its next look is 5 minutes away
    assert (ns.get("accesstokenrequests", "api") or {})["status"]["failedAttempts"] == attempts


def test_register_tracks_and_revokes_an_external_token(
    ns: Namespace, operator: OperatorThread
) -> None:
    server = ns.authserver
    client = server.clients["client_secret_basic"]
    external = ns.external_token(client)
    ns.secret("external", {"token": external})
    ns.client("idp", client)
    ns.register_request("tracked", "idp", "external")
    ns.wait_ready("tracked")
    data = ns.token_secret("tracked")
    assert data is not None
    assert data["access_token"] == external
    assert data["scope"] == "read"
    assert data["expires_at"]
    status = (ns.get("accesstokenrequests", "tracked") or {})["status"]
    assert "renewalTime" not in status
    issuing = ns.condition("tracked", "Issuing")
    assert issuing is not None
    assert issuing["reason"] == "Registered"

    ns.delete("accesstokenrequests", "tracked")
    wait_for("deletion", lambda: ns.get("accesstokenrequests", "tracked") is None)
    assert introspect(server, external, client)["active"] is False


def test_register_refuses_an_inactive_token(ns: Namespace, operator: OperatorThread) -> None:
    ns.secret("external", {"token": "made-up"})
    ns.client("idp", ns.authserver.clients["client_secret_basic"])
    ns.register_request("tracked", "idp", "external")
    ns.wait_ready("tracked", status="False", reason="TokenInactive")
    assert ns.token_secret("tracked") is None


def test_renew_annotation_gets_a_new_token(ns: Namespace, operator: OperatorThread) -> None:
    """A time three seconds ahead: nothing before it, then one new token (acting early
    would issue tokens older than the time asked for, in a loop until it came)."""
    ns.client("idp", ns.authserver.clients["client_secret_basic"])
    ns.request("billing", "idp")
    ns.wait_ready("billing")
    token = (ns.token_secret("billing") or {})["access_token"]
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3))
    ns.patch(
        "accesstokenrequests",
        "billing",
        {"metadata": {"annotations": {"oauth2.token-operator.io/renew-requested-at": at}}},
    )
    time.sleep(1)
    assert (ns.token_secret("billing") or {})["access_token"] == token, "not before its time"
    wait_for(
        "a renewed token",
        lambda: (ns.token_secret("billing") or {}).get("access_token") != token,
        timeout=10,
    )
    settle(operator, ns, "billing")
    assert (ns.get("accesstokenrequests", "billing") or {})["status"]["revision"] == 2
    assert "Renewed" in {reason for reason, _ in ns.events("billing")}, "asked for: an Event"


def test_deleting_a_refresh_token_request_ends_the_users_grant(
    ns: Namespace, operator: OperatorThread, counters: Counters
) -> None:
    """Issue 21: the refresh token itself is revoked (RFC 7009, token_type_hint
    refresh_token), not only the access token: Keycloak keeps the session and its refresh
    tokens alive when only the access token is revoked."""
    server = ns.authserver
    client = server.clients["client_secret_basic"]
    ns.user_grant("client_secret_basic")
    ns.refresh_request("api", "idp", "user-grant")
    ns.wait_ready("api")
    access = (ns.token_secret("api") or {})["access_token"]
    refresh = (ns.token_secret("user-grant") or {})["refresh_token"]
    revocations = counters.delta("client=cs-basic /token/revocation")
    ns.delete("accesstokenrequests", "api")
    wait_for("the request to go", lambda: ns.get("accesstokenrequests", "api") is None, 15)
    assert counters.delta("client=cs-basic /token/revocation") - revocations == 2
    assert introspect(server, refresh, client)["active"] is False
    assert introspect(server, access, client)["active"] is False
    assert "Revoked" in {reason for reason, _ in ns.events("api")}


def test_a_secret_name_naming_the_refresh_token_secret_stops_all_work(
    ns: Namespace, operator: OperatorThread, counters: Counters
) -> None:
    """Issue 21: the condition said SecretConflict, "left untouched", while the refresh ran
    and rotated the refresh token in that very Secret, and no Event said so."""
    original = ns.user_grant("client_secret_basic")
    tokens = counters.delta("client=cs-basic /token")
    ns.request(
        "api", "idp", grant="refresh_token", secretName="user-grant",
        refreshTokenSecretRef={"name": "user-grant", "key": "refresh_token"},
    )  # fmt: skip
    ready = ns.wait_ready("api", status="False", reason="SecretConflict")
    assert "choose another spec.secretName" in ready["message"]
    issuing = ns.condition("api", "Issuing")
    assert issuing is not None
    assert (issuing["status"], issuing["reason"]) == ("False", "SecretConflict")
    wait_for("the Event", lambda: "SecretConflict" in {r for r, _ in ns.events("api")}, 10)
    assert ns.token_secret("user-grant") == {"refresh_token": original}
    assert counters.delta("client=cs-basic /token") == tokens, "no refresh was made"


def test_a_rejected_refresh_token_is_not_sent_again_after_a_restart(
    ns: Namespace, operator_factory: Callable[..., OperatorThread], counters: Counters
) -> None:
    """Issue 21: the rejection is kept in status (a digest of the token), so a restarted
    operator does not send it again; a new refresh token in the Secret is used."""
    first = operator_factory(min_renewal_lead=5.0, revocation_deadline=5.0)
    ns.secret("user-grant", {"refresh_token": "not-a-refresh-token"})
    ns.client("idp", ns.authserver.clients["client_secret_basic"])
    ns.refresh_request("api", "idp", "user-grant")
    ns.wait_ready("api", status="False", reason="RefreshTokenRejected")
    status = (ns.get("accesstokenrequests", "api") or {})["status"]
    assert len(status["rejectedRefreshToken"]) == 16
    first.stop()
    sent = counters.delta("client=cs-basic /token")

    # Looks again every 3 s: it would have sent the refused token by now.
    operator_factory(retry_max_delay=3.0, credentials_cache_ttl=0.0)
    time.sleep(7)
    assert counters.delta("client=cs-basic /token") == sent, "the refused token was sent"
    ns.wait_ready("api", status="False", reason="RefreshTokenRejected")

    granted = ns.authserver.password_grant(
        ns.authserver.clients["client_secret_basic"], ["read"], resource=ns.authserver.resource
    )
    ns.core.patch_namespaced_secret(
        "user-grant", ns.name, {"stringData": {"refresh_token": granted["refresh_token"]}}
    )
    ns.wait_ready("api", timeout=15)
    assert "rejectedRefreshToken" not in (ns.get("accesstokenrequests", "api") or {})["status"]


def test_the_subject_introspection_names_is_in_status(
    ns: Namespace, operator: OperatorThread
) -> None:
    """Issue 21: `status.subject` was never set, though introspection says `sub`."""
    ns.user_grant("client_secret_basic")
    ns.patch("oauth2clients", "idp", {"spec": {"introspection": {"minInterval": "10s"}}})
    ns.request(
        "api", "idp", grant="refresh_token", introspection={"interval": "10s"},
        refreshTokenSecretRef={"name": "user-grant", "key": "refresh_token"},
    )  # fmt: skip
    ns.wait_ready("api")
    access = (ns.token_secret("api") or {})["access_token"]
    expected = introspect(ns.authserver, access, ns.authserver.clients["client_secret_basic"])
    assert expected["sub"]
    wait_for(
        "status.subject",
        lambda: (
            ((ns.get("accesstokenrequests", "api") or {}).get("status") or {}).get("subject")
            == expected["sub"]
        ),
        timeout=25,
    )


def test_a_token_exchange_sends_another_requests_token_only_to_its_server(
    ns: Namespace, operator: OperatorThread
) -> None:
    """`token_exchange` from another request's token: through an OAuth2Client of the same
    issuer but another token endpoint (anyone who may create clients could name one of
    their own), the token is not sent (`SubjectTokenElsewhere`: that endpoint hears
    nothing); nor can a request name itself (`SubjectIsSelf`)."""
    test_client = ns.authserver.clients["client_secret_basic"]
    ns.client("idp", test_client)
    ns.request("service", "idp")
    ns.wait_ready("service")
    with threaded_server(Respond(body={"access_token": "x", "token_type": "Bearer"})) as other:
        ns.client("elsewhere", test_client, endpoints={"token": f"{other.url}/token"},
                  allowInsecureHTTP=True)  # fmt: skip
        for name, client, subject in (("stolen", "elsewhere", "service"), ("self", "idp", "self")):
            ns.create("accesstokenrequests", name, {
                "clientRef": {"name": client}, "grant": "token_exchange",
                "tokenExchange": {"subjectTokenFrom": {"accessTokenRequestRef": {"name": subject}}},
            })  # fmt: skip
        ns.wait_ready("stolen", "False", "SubjectTokenElsewhere")
        ns.wait_ready("self", "False", "SubjectIsSelf")
        assert other.requests == []
    assert ns.token_secret("stolen") is None


@pytest.mark.keycloak
@pytest.mark.usefixtures("federation")
def test_a_token_exchange_sends_a_service_accounts_token(
    kube_cluster: KubeCluster,
    ns: Namespace,
    operator_factory: Callable[..., OperatorThread],
    keycloak: Keycloak,
    kube_admin: k8s.ApiClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`token_exchange` from `subjectTokenFrom.serviceAccountRef` against Keycloak's
    legacy token exchange (an OpenID Connect identity provider trusting the control
    plane's ServiceAccount issuer: tests/keycloak/README.md). Keycloak gives the
    exchanging client a token of the user it brokers for that ServiceAccount, as its
    introspection says; a renewal exchanges again (the ServiceAccount token in memory,
    minted once); the client's permission taken back, Keycloak's 403 `access_denied` is
    `SubjectTokenRejected`, the token in hand still Ready; deleting the request revokes
    its token. Keycloak does not check the
    subject token's audience: that the one minted is the one asked (default: the
    client's issuer) is seen in the minting home's record. Refusals, played by a tenant
    holding only its namespace's RBAC: a ServiceAccount without the opt-in label, an
    audience the API server accepts and a missing ServiceAccount each leave the request
    not Ready with the reason of `service_account_token` clients, nothing minted (so
    nothing sent: an exchange mints its subject token only when it is made,
    tests/unit/test_token_exchange.py); the label given and the ServiceAccount created,
    they go on without any change to them, far sooner than their failure backoff."""
    caplog.set_level(logging.DEBUG)
    operator = operator_factory(
        retry_base_delay=60.0, retry_max_delay=120.0, revocation_deadline=5.0
    )
    tokens = operator.ctx.credentials.service_accounts
    exchanger = keycloak.clients["client_secret_basic"]
    issuer = cluster_issuer(kube_admin)
    exchange_service_account_tokens(keycloak, issuer, exchanger.client_id)
    for account, usable in (("billing", True), ("deployer", False)):
        service_account(ns, account, usable=usable)
    tenant = kube_cluster.service_account(unique_name("tenant"), ns.name, rules=TENANT_RULES)
    ns.client("sts", exchanger, issuer=keycloak.issuer, allowInsecureHTTP=True)
    cases = {
        # request: (ServiceAccount, its audience, the request's reason)
        "as-billing": ("billing", None, None),
        "for-sts": ("billing", "https://sts.example.test", None),
        "unlabelled": ("deployer", None, "ServiceAccountNotUsable"),
        "kube-audience": ("billing", "https://KUBERNETES.default.svc/", "AudienceNotAllowed"),
        "ghost": ("ghost", None, "ServiceAccountNotFound"),
    }
    with tenant.client() as api:
        custom = k8s.CustomObjectsApi(api)
        for name, (account, audience, _) in cases.items():
            source = {"name": account, **({"audience": audience} if audience else {})}
            custom.create_namespaced_custom_object(GROUP, VERSION, ns.name,
                                                   "accesstokenrequests", {
                "apiVersion": f"{GROUP}/{VERSION}", "kind": "AccessTokenRequest",
                "metadata": {"name": name},
                "spec": {"clientRef": {"name": "sts"}, "grant": "token_exchange",
                         "tokenExchange": {"subjectTokenFrom": {"serviceAccountRef": source}}},
            })  # fmt: skip
            if name == "as-billing":
                # Keycloak makes the ServiceAccount's user at its first exchange: two at
                # once may both try, and one gets HTTP 409 (tried again after a backoff).
                ns.wait_ready(name)
    ns.wait_ready("for-sts")
    for name, (_, _, reason) in cases.items():
        if reason is not None:
            ns.wait_ready(name, "False", reason)
            assert ns.token_secret(name) is None
    assert "kubectl label serviceaccount deployer" in (ns.condition("unlabelled") or {})["message"]
    assert tokens.minted_for() == {
        (ns.name, "billing", keycloak.issuer), (ns.name, "billing", "https://sts.example.test"),
    }  # fmt: skip

    exchanged = (ns.token_secret("as-billing") or {})["access_token"]
    info = introspect_at_keycloak(keycloak, exchanged)
    assert info["active"] is True
    assert info["client_id"] == exchanger.client_id
    username = f"system:serviceaccount:{ns.name}:billing"
    assert info["username"] == username
    with admin(keycloak.url) as http:
        (user,) = http.get(
            f"/admin/realms/{REALM}/users", params={"username": username, "exact": "true"}
        ).json()
        links = http.get(f"/admin/realms/{REALM}/users/{user['id']}/federated-identity").json()
    assert info["sub"] == user["id"]
    assert [(link["identityProvider"], link["userId"]) for link in links] == [
        (SERVICE_ACCOUNT_IDP, username)  # the ServiceAccount token's `sub`
    ]

    # A renewal exchanges again, with the ServiceAccount token in memory.
    renew_now(ns, "as-billing")
    wait_for("the renewal", lambda: revision(ns, "as-billing") == 2)
    renewed = (ns.token_secret("as-billing") or {})["access_token"]
    assert renewed != exchanged
    assert introspect_at_keycloak(keycloak, renewed)["username"] == username
    assert tokens.mints == 2

    # The server refuses the exchange (the client's permission taken back): said so; the
    # token in hand still Ready.
    exchange_service_account_tokens(keycloak, issuer, exchanger.client_id, allowed=False)
    renew_now(ns, "as-billing")
    wait_for("the refusal", lambda: (ns.condition("as-billing", "Issuing") or {}).get(
        "reason") == "SubjectTokenRejected")  # fmt: skip
    issuing = ns.condition("as-billing", "Issuing") or {}
    assert "does not let this client exchange the token of ServiceAccount" in issuing["message"]
    assert f"ServiceAccount {ns.name}/billing" in issuing["message"]
    assert (ns.condition("as-billing") or {})["status"] == "True"
    assert revision(ns, "as-billing") == 2
    exchange_service_account_tokens(keycloak, issuer, exchanger.client_id)

    # Recovery, within seconds: no change to the requests.
    ns.core.patch_namespaced_service_account("deployer", ns.name, {"metadata": {"labels": USABLE}})
    service_account(ns, "ghost")
    for name in ("unlabelled", "ghost"):
        ns.wait_ready(name, timeout=40)
    assert ns.condition("kube-audience")["status"] != "True"  # type: ignore[index]
    assert tokens.minted_for() == {
        (ns.name, "billing", keycloak.issuer), (ns.name, "billing", "https://sts.example.test"),
        (ns.name, "deployer", keycloak.issuer), (ns.name, "ghost", keycloak.issuer),
    }  # fmt: skip

    ns.delete("accesstokenrequests", "as-billing")
    wait_for("the request to go", lambda: ns.get("accesstokenrequests", "as-billing") is None)
    assert introspect_at_keycloak(keycloak, renewed)["active"] is False
    assert cluster_tokens(ns, issuer, caplog.text) == []


def introspect_at_keycloak(keycloak: Keycloak, token: str) -> Any:
    """Keycloak's introspection of `token`, by the client `basic` (whose tokens name it)."""
    client = keycloak.clients["client_secret_basic"]
    assert client.client_secret is not None
    response = httpx.post(
        f"{keycloak.issuer}/protocol/openid-connect/token/introspect",
        data={"token": token},
        headers={"Authorization": basic_authorization(client.client_id, client.client_secret)},
    )
    assert response.status_code == 200, response.text
    return response.json()
