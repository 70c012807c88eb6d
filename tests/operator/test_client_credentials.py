"""client_credentials end to end: the operator, a real API server, oidc-provider."""

from __future__ import annotations

import time

from tests.operator.conftest import Namespace, introspect, wait_for
from tests.operator.runner import OperatorThread


def test_a_request_gets_a_valid_token_in_its_secret(
    ns: Namespace, operator: OperatorThread
) -> None:
    server = ns.authserver
    ns.client("idp", server.clients["client_secret_basic"])
    ns.request("billing", "idp")
    ready = ns.wait_ready("billing")
    assert ready["reason"] == "TokenValid"

    data = ns.token_secret("billing")
    assert data is not None
    assert set(data) == {"access_token", "token_type", "expires_at", "scope", "authorization"}
    assert data["authorization"] == f"{data['token_type']} {data['access_token']}"
    assert data["scope"] == "read"
    info = introspect(server, data["access_token"], server.clients["client_secret_basic"])
    assert info["active"] is True
    assert info["scope"] == "read"
    assert info["client_id"] == "cs-basic"

    status = (ns.get("accesstokenrequests", "billing") or {})["status"]
    assert status["revision"] == 1
    assert status["secretName"] == "billing"
    assert status["grantedScopes"] == ["read"]
    assert status["expiresAt"] == data["expires_at"]
    assert status["issuedAt"] < status["renewalTime"] < status["expiresAt"]
    assert status["failedAttempts"] == 0
    assert data["access_token"] not in str(status)
    assert "Issued" in {reason for reason, _ in ns.events("billing")}


def test_client_ready_with_discovered_endpoints(ns: Namespace, operator: OperatorThread) -> None:
    ns.client("idp", ns.authserver.clients["client_secret_basic"])
    ns.wait_ready("idp", plural="oauth2clients")
    status = (ns.get("oauth2clients", "idp") or {})["status"]
    assert status["endpoints"]["token"] == ns.authserver.token_endpoint
    assert status["endpoints"]["revocation"] == ns.authserver.revocation_endpoint
    assert "client_secret_basic" in status["authMethodsSupported"]


def test_renewed_before_expiry_and_never_expired(ns: Namespace, operator: OperatorThread) -> None:
    """20 s tokens, 5 s lead: the Secret changes ahead of expiry, over two renewals."""
    ns.client("idp", ns.authserver.clients["renewal_ttl"])
    ns.request("short", "idp")
    ns.wait_ready("short")
    seen: list[str] = []
    end = time.monotonic() + 45
    while time.monotonic() < end:
        data = ns.token_secret("short")
        assert data is not None
        expires = (
            time.mktime(time.strptime(data["expires_at"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
        )
        assert expires > time.time(), "the Secret held an expired token"
        if not seen or seen[-1] != data["access_token"]:
            seen.append(data["access_token"])
        time.sleep(0.5)
    assert len(seen) >= 3, f"expected two renewals in 45 s of 20 s tokens, saw {len(seen) - 1}"
    status = (ns.get("accesstokenrequests", "short") or {})["status"]
    assert status["revision"] >= 3
    reasons = {reason for reason, _ in ns.events("short")}
    assert "Issued" in reasons
    assert "Renewed" not in reasons, "a routine renewal posts no Event"


def test_deleting_the_request_revokes_and_removes_the_secret(
    ns: Namespace, operator: OperatorThread
) -> None:
    server = ns.authserver
    ns.client("idp", server.clients["client_secret_basic"])
    ns.request("billing", "idp")
    ns.wait_ready("billing")
    token = (ns.token_secret("billing") or {})["access_token"]
    ns.delete("accesstokenrequests", "billing")
    wait_for("the request to go", lambda: ns.get("accesstokenrequests", "billing") is None)
    wait_for("the Secret to go", lambda: ns.token_secret("billing") is None)
    assert introspect(server, token, server.clients["client_secret_basic"])["active"] is False


def test_missing_client_is_a_condition(ns: Namespace, operator: OperatorThread) -> None:
    ns.request("orphan", "no-such-client")
    ready = ns.wait_ready("orphan", status="False", reason="ClientNotFound")
    assert "no-such-client" in ready["message"]
    assert ns.token_secret("orphan") is None


def test_wrong_client_secret_is_reported_without_it(
    ns: Namespace, operator: OperatorThread
) -> None:
    from tests.authserver.fixtures import TestClient

    wrong = TestClient("cs-basic", "client_secret_basic", "not-the-secret")
    ns.client("idp", wrong)
    ns.request("billing", "idp")
    ready = ns.wait_ready("billing", status="False", reason="InvalidClient")
    assert "not-the-secret" not in str(ns.get("accesstokenrequests", "billing"))
    issuing = ns.condition("billing", "Issuing")
    assert issuing is not None
    assert issuing["status"] == "True"
    assert "retrying at" in ready["message"]
    assert "IssuanceFailed" in {reason for reason, _ in ns.events("billing")}


def test_a_secret_it_does_not_own_is_never_touched(ns: Namespace, operator: OperatorThread) -> None:
    ns.client("idp", ns.authserver.clients["client_secret_basic"])
    ns.secret("billing", {"mine": "keep me"})
    ns.request("billing", "idp")
    ready = ns.wait_ready("billing", status="False", reason="SecretConflict")
    assert "not owned" in ready["message"]
    assert ns.token_secret("billing") == {"mine": "keep me"}
