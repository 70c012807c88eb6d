"""client_credentials end to end: the operator, a real API server, oidc-provider."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from oauth2_token_operator.util.rfc3339 import parse_rfc3339
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


def renewal_delay(ns: Namespace, name: str) -> float:
    """Seconds from the held token's issue to its planned renewal (whole seconds, as the
    status keeps them)."""
    status = (ns.get("accesstokenrequests", name) or {})["status"]
    return parse_rfc3339(status["renewalTime"]) - parse_rfc3339(status["issuedAt"])


def test_the_renewal_time_follows_the_rule_and_the_spec(
    ns: Namespace, operator: OperatorThread
) -> None:
    """20 s tokens, 5 s lead (the `operator` fixture): by default at 2/3 of the lifetime
    less up to 10 % of it (11.3-13.3 s); `renewBeforePercentage` and `renewBefore` reach
    the operator and move it (10 s, 8 s); none is later than the lead allows (15 s)."""
    ns.client("idp", ns.authserver.clients["renewal_ttl"])
    ns.request("default", "idp")
    ns.request("percentage", "idp", renewBeforePercentage=50)
    ns.request("before", "idp", renewBefore="12s")
    ns.request("too-late", "idp", renewBefore="1s")
    for name in ("default", "percentage", "before", "too-late"):
        ns.wait_ready(name)
    assert 20 * (2 / 3 - 0.1) - 1 <= renewal_delay(ns, "default") <= 20 * 2 / 3 + 1
    assert renewal_delay(ns, "percentage") == pytest.approx(10, abs=1)
    assert renewal_delay(ns, "before") == pytest.approx(8, abs=1)
    assert renewal_delay(ns, "too-late") == pytest.approx(15, abs=1), "the lead wins"


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


def test_the_client_says_when_its_credentials_are_refused_and_when_accepted(
    ns: Namespace, operator_factory: Callable[..., OperatorThread]
) -> None:
    """Issue 21: the OAuth2Client showed Ready=True while every request failed on its
    credentials. Ready says what it means (metadata discovered); `Authenticated` says what
    the server made of the credentials at the last token request. A fixed credential is
    used within seconds, whatever the backoff (it waited up to 5 minutes)."""
    # Backoff from a minute: only noticing the fixed Secret makes it Ready within seconds.
    operator_factory(retry_base_delay=60.0, min_renewal_lead=5.0)
    ns.client("idp", ns.authserver.clients["client_secret_basic"])
    ns.core.patch_namespaced_secret(
        "idp-credentials", ns.name, {"stringData": {"client-secret": "wrong"}}
    )
    ns.request("billing", "idp")
    ns.wait_ready("billing", status="False", reason="InvalidClient")
    ready = ns.wait_ready("idp", plural="oauth2clients")
    assert "metadata discovered" in ready["message"]
    wait_for(
        "Authenticated=False",
        lambda: (
            (ns.condition("idp", "Authenticated", plural="oauth2clients") or {}).get("reason")
            == "InvalidClient"
        ),
        timeout=10,
    )
    refused = ns.condition("idp", "Authenticated", plural="oauth2clients") or {}
    assert refused["status"] == "False"
    assert f"AccessTokenRequest {ns.name}/billing" in refused["message"]

    secret = ns.authserver.clients["client_secret_basic"].client_secret
    ns.core.patch_namespaced_secret(
        "idp-credentials", ns.name, {"stringData": {"client-secret": secret}}
    )
    ns.wait_ready("billing", timeout=20)  # 10 s reads at most, plus the 5 s cache
    wait_for(
        "Authenticated=True",
        lambda: (
            (ns.condition("idp", "Authenticated", plural="oauth2clients") or {}).get("status")
            == "True"
        ),
        timeout=10,
    )
