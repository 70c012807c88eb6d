"""The refresh_token, register and token_exchange grants end to end (token_exchange
against a server that supports it: `test_two_servers`, with Keycloak; a ServiceAccount's
token as the subject token: against a recording token endpoint)."""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import pytest
from kubernetes import client as k8s

from oauth2_token_operator.api.crd import GROUP, VERSION
from oauth2_token_operator.oauth2.authorization_server import ACCESS_TOKEN_TYPE
from oauth2_token_operator.policies.service_accounts import (
    DEFAULT_API_AUDIENCES,
    MIN_EXPIRATION_SECONDS,
)
from tests.cluster.harness import KubeCluster, unique_name
from tests.faults import Respond, threaded_server
from tests.integration.conftest import Counters
from tests.operator.conftest import USABLE, Namespace, introspect, settle, wait_for
from tests.operator.runner import OperatorThread
from tests.operator.test_refresh_rotation import renew_now, revision
from tests.operator.test_service_account_tokens import (
    TENANT_RULES,
    cluster_issuer,
    cluster_tokens,
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


def claims(jwt: str) -> dict[str, Any]:
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))  # type: ignore[no-any-return]


def test_a_token_exchange_sends_a_service_accounts_token(
    kube_cluster: KubeCluster,
    kube_admin: k8s.ApiClient,
    ns: Namespace,
    operator_factory: Callable[..., OperatorThread],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`token_exchange` from `subjectTokenFrom.serviceAccountRef`, to a token endpoint
    that records what it hears (no server here accepts a ServiceAccount token in its
    token exchange but Keycloak's legacy one, which the test session's Keycloak does not
    run: tests/keycloak/README.md). The subject token is a token of that ServiceAccount
    for that audience (default: the client's issuer), short-lived, as the API server's
    own TokenReview says, and no credential for the API server itself; sent as a JWT;
    minted once and reused by the renewal; never written anywhere. A refusal by the
    server is `SubjectTokenRejected`, the token in hand still Ready. Refusals, played by
    a tenant holding only its namespace's RBAC: a ServiceAccount without the opt-in
    label, an audience the API server accepts and a missing ServiceAccount each leave
    the request not Ready with the reason of `service_account_token` clients, nothing
    minted or sent for them; the label given and the ServiceAccount created, they go on
    without any change to them, far sooner than their failure backoff (a minute)."""
    caplog.set_level(logging.DEBUG)
    operator = operator_factory(retry_base_delay=60.0, retry_max_delay=120.0)
    tokens = operator.ctx.credentials.service_accounts
    issuer = ns.authserver.issuer
    answer = {"token_type": "Bearer", "expires_in": 600, "issued_token_type": ACCESS_TOKEN_TYPE}
    for account, usable in (("billing", True), ("deployer", False)):
        service_account(ns, account, usable=usable)
    tenant = kube_cluster.service_account(unique_name("tenant"), ns.name, rules=TENANT_RULES)
    cases = {
        # request: (ServiceAccount, its audience, the request's reason)
        "as-billing": ("billing", None, None),
        "for-sts": ("billing", "https://sts.example.test", None),
        "unlabelled": ("deployer", None, "ServiceAccountNotUsable"),
        "kube-audience": ("billing", "https://KUBERNETES.default.svc/", "AudienceNotAllowed"),
        "ghost": ("ghost", None, "ServiceAccountNotFound"),
    }

    def answers(*tokens: str) -> list[Respond]:
        """One answer per exchange, a token of its own each (the last one repeats)."""
        return [Respond(body={"access_token": token, **answer}) for token in tokens]

    with threaded_server(*answers("exchanged-1a", "exchanged-1b")) as server:
        ns.client("sts", ns.authserver.clients["client_secret_basic"],
                  endpoints={"token": f"{server.url}/token"}, allowInsecureHTTP=True)  # fmt: skip
        with tenant.client() as api:
            custom = k8s.CustomObjectsApi(api)
            for name, (account, audience, _) in cases.items():
                source = {"name": account, **({"audience": audience} if audience else {})}
                custom.create_namespaced_custom_object(GROUP, VERSION, ns.name,
                                                       "accesstokenrequests", {
                    "apiVersion": f"{GROUP}/{VERSION}", "kind": "AccessTokenRequest",
                    "metadata": {"name": name},
                    "spec": {"clientRef": {"name": "sts"}, "grant": "token_exchange",
                             "scopes": [name],
                             "tokenExchange": {"subjectTokenFrom": {"serviceAccountRef": source}}},
                })  # fmt: skip
        for name in ("as-billing", "for-sts"):
            ns.wait_ready(name)
        for name, (_, _, reason) in cases.items():
            if reason is not None:
                ns.wait_ready(name, "False", reason)
                assert ns.token_secret(name) is None
        message = (ns.condition("unlabelled") or {})["message"]
        assert "kubectl label serviceaccount deployer" in message
        forms = {}
        for heard in server.requests:
            form = {k: v[0] for k, v in parse_qs(heard.body.decode()).items()}
            forms[form["scope"]] = form
        assert sorted(forms) == ["as-billing", "for-sts"], "nothing sent for the refusals"
        authentication = k8s.AuthenticationV1Api(kube_admin)
        for name, audience in (("as-billing", issuer), ("for-sts", "https://sts.example.test")):
            form = forms[name]
            assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:token-exchange"
            assert form["subject_token_type"] == "urn:ietf:params:oauth:token-type:jwt"
            assert form["requested_token_type"] == ACCESS_TOKEN_TYPE
            subject_token = form["subject_token"]
            review = authentication.create_token_review(k8s.V1TokenReview.model_validate(
                {"spec": {"token": subject_token, "audiences": [audience]}}))  # fmt: skip
            assert review.status is not None
            assert review.status.authenticated, name
            assert review.status.user is not None
            assert review.status.user.username == f"system:serviceaccount:{ns.name}:billing"
            assert review.status.audiences == [audience]
            for api_audience in DEFAULT_API_AUDIENCES:  # no credential for the cluster itself
                rejected = authentication.create_token_review(k8s.V1TokenReview.model_validate(
                    {"spec": {"token": subject_token, "audiences": [api_audience]}}))  # fmt: skip
                assert rejected.status is not None
                assert not rejected.status.authenticated
            jwt = claims(subject_token)
            assert jwt["aud"] == [audience]
            assert jwt["exp"] - jwt["iat"] == MIN_EXPIRATION_SECONDS
        assert tokens.mints == 2

        # A renewal exchanges again, with the ServiceAccount token in memory.
        server.then(*answers("exchanged-2"))
        renew_now(ns, "as-billing")
        wait_for("the renewal", lambda: revision(ns, "as-billing") == 2)
        assert (ns.token_secret("as-billing") or {})["access_token"] == "exchanged-2"
        last = {k: v[0] for k, v in parse_qs(server.requests[-1].body.decode()).items()}
        assert last["subject_token"] == forms["as-billing"]["subject_token"]
        assert tokens.mints == 2

        # The server refuses the subject token: said so; the token in hand stays Ready.
        server.then(Respond(400, {"error": "invalid_grant", "error_description": "untrusted"}))
        renew_now(ns, "as-billing")
        wait_for("the refusal", lambda: (ns.condition("as-billing", "Issuing") or {}).get(
            "reason") == "SubjectTokenRejected")  # fmt: skip
        issuing = ns.condition("as-billing", "Issuing") or {}
        assert f"ServiceAccount {ns.name}/billing" in issuing["message"]
        assert "untrusted" not in issuing["message"]
        assert (ns.condition("as-billing") or {})["status"] == "True"

        # Recovery, within seconds: no change to the requests.
        server.then(*answers("exchanged-3a", "exchanged-3b", "exchanged-3c"))
        ns.core.patch_namespaced_service_account(
            "deployer", ns.name, {"metadata": {"labels": USABLE}}
        )
        service_account(ns, "ghost")
        for name in ("unlabelled", "ghost"):
            ns.wait_ready(name, timeout=40)
    assert ns.condition("kube-audience")["status"] != "True"  # type: ignore[index]
    assert tokens.minted_for() == {
        (ns.name, "billing", issuer), (ns.name, "billing", "https://sts.example.test"),
        (ns.name, "deployer", issuer), (ns.name, "ghost", issuer),
    }  # fmt: skip
    assert cluster_tokens(ns, cluster_issuer(kube_admin), caplog.text) == []
