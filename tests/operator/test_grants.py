"""The refresh_token, register and token_exchange grants end to end (token_exchange
against a server that supports it: `test_two_servers`, with Keycloak)."""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.faults import Respond, threaded_server
from tests.integration.conftest import Counters
from tests.operator.conftest import Namespace, introspect, settle, wait_for
from tests.operator.runner import OperatorThread


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
