"""Deletion never wedges on an unreachable authorization server, and a client in another
namespace serves a request only when it allows that namespace."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from oauth2_token_operator.api.annotations import RENEW_REQUESTED_AT as RENEW
from tests.faults import stalled_server
from tests.integration.conftest import Counters
from tests.operator.conftest import Namespace, introspect, wait_for
from tests.operator.runner import OperatorThread


def test_namespace_deletion_completes_when_revocation_hangs(
    ns: Namespace, operator: OperatorThread, caplog: pytest.LogCaptureFixture
) -> None:
    """The operator's revocation deadline is 5 s here (30 s by default). A terminating
    namespace takes no new Events, so the outcome is read from the operator's log."""
    with stalled_server() as revoke_url:
        ns.stalled_client("idp", revoke_url, "revocation")
        ns.request("billing", "idp")
        ns.wait_ready("billing")
        started = time.monotonic()
        ns.core.delete_namespace(ns.name)
        wait_for("the request to go", lambda: ns.get("accesstokenrequests", "billing") is None, 30)
        took = time.monotonic() - started
        print(f"\nrequest finalized {took:.1f}s after the namespace deletion began")
        assert took < 20
        revocation = [r.getMessage() for r in caplog.records if "revocation" in r.getMessage()]
        assert any("no answer within 5s" in m for m in revocation), revocation
        # A terminating namespace takes no Events: that is said once, never an ERROR loop.
        errors = [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= 40]
        assert errors == [], errors


def test_other_namespaces_are_denied_unless_allowed(
    ns: Namespace, operator: OperatorThread, counters: Counters
) -> None:
    server = ns.authserver
    client = server.clients["client_secret_basic"]
    ns.client("shared", client)
    issued = counters.delta("client=cs-basic /token")
    other = ns.sibling("team-a")
    other.request("billing", "shared", clientRef={"name": "shared", "namespace": ns.name})
    denied = other.wait_ready("billing", status="False", reason="ClientNotAllowed")
    assert ns.name in denied["message"]
    assert other.token_secret("billing") is None
    assert counters.delta("client=cs-basic /token") == issued, "no token for a denied request"

    ns.patch("oauth2clients", "shared", {"spec": {"allowedNamespaces": {"names": [other.name]}}})
    other.wait_ready("billing")
    token = (other.token_secret("billing") or {})["access_token"]
    assert introspect(server, token, client)["active"] is True


def test_a_label_selector_admits_namespaces(ns: Namespace, operator: OperatorThread) -> None:
    ns.client(
        "shared",
        ns.authserver.clients["client_secret_basic"],
        allowedNamespaces={"selector": {"matchLabels": {"tokens.example/allowed": "yes"}}},
    )
    admitted = ns.sibling("team-b", labels={"tokens.example/allowed": "yes"})
    refused = ns.sibling("team-c", labels={"tokens.example/allowed": "no"})
    for other in (admitted, refused):
        other.request("billing", "shared", clientRef={"name": "shared", "namespace": ns.name})
    admitted.wait_ready("billing")
    refused.wait_ready("billing", status="False", reason="ClientNotAllowed")


def test_a_client_in_use_waits_unless_told_to_revoke_all(
    ns: Namespace, operator: OperatorThread
) -> None:
    client = ns.authserver.clients["client_secret_basic"]
    ns.client("idp", client)
    ns.request("a", "idp", scopes=["read"])
    ns.request("b", "idp", scopes=["write"])
    ns.wait_ready("a")
    ns.wait_ready("b")
    tokens = [(ns.token_secret(name) or {})["access_token"] for name in ("a", "b")]
    # kopf puts its finalizer on a client in a cycle of its own, which a loaded machine
    # may run after the requests are served: until then nothing can hold the client back
    # (a race noted in the session note of 2026-12-07, not what this test is about).
    wait_for(
        "the client's finalizer",
        lambda: ((ns.get("oauth2clients", "idp") or {}).get("metadata") or {}).get("finalizers"),
        timeout=30,
    )
    ns.delete("oauth2clients", "idp")
    time.sleep(3)
    assert ns.get("oauth2clients", "idp") is not None, "deleted while requests use it"
    ns.patch(
        "oauth2clients",
        "idp",
        {"metadata": {"annotations": {"oauth2.token-operator.io/revoke-all-on-delete": "true"}}},
    )
    wait_for("the client to go", lambda: ns.get("oauth2clients", "idp") is None, timeout=30)
    for token in tokens:
        assert introspect(ns.authserver, token, client)["active"] is False
    ns.wait_ready("a", status="False", reason="ClientNotFound")


REVOKE_ALL = "oauth2.token-operator.io/revoke-all-requested-at"


def _rfc3339(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def test_revoke_all_annotation_revokes_and_replaces_every_token(
    ns: Namespace, operator: OperatorThread, counters: Counters
) -> None:
    """`revoke-all-requested-at` on a live client: every token it obtained before that
    time is revoked once (a shared one too), and each request gets a new token. A time
    in the future waits until it comes."""
    client = ns.authserver.clients["client_secret_basic"]
    ns.client("idp", client)
    ns.request("a", "idp", scopes=["read"])
    ns.request("shares-a", "idp", scopes=["read"])
    ns.request("b", "idp", scopes=["write"])
    names = ("a", "shares-a", "b")
    for name in names:
        ns.wait_ready(name)

    def tokens() -> dict[str, str | None]:
        return {name: (ns.token_secret(name) or {}).get("access_token") for name in names}

    old = tokens()
    assert old["a"] == old["shares-a"]
    assert old["a"] != old["b"]
    issued = counters.delta("client=cs-basic /token")
    revoked = counters.delta("client=cs-basic /token/revocation")

    def ask(at: float) -> None:
        ns.patch(
            "oauth2clients",
            "idp",
            {"metadata": {"annotations": {REVOKE_ALL: _rfc3339(at)}}},
        )

    # Four seconds ahead: nothing happens before then.
    ask(time.time() + 4)
    time.sleep(2)
    assert tokens() == old, "a time in the future asks for nothing yet"
    wait_for(
        "every token replaced",
        lambda: all(tokens()[name] not in (None, old[name]) for name in names),
        timeout=20,
    )
    new = tokens()
    assert new["a"] == new["shares-a"], "the replacement is shared as the old token was"
    for name in ("a", "b"):
        assert introspect(ns.authserver, old[name] or "", client)["active"] is False
        assert introspect(ns.authserver, new[name] or "", client)["active"] is True
    for name in names:
        ns.wait_ready(name)
        assert "Revoked" in {reason for reason, _ in ns.events(name)} or name == "shares-a"
        status = (ns.get("accesstokenrequests", name) or {})["status"]
        assert status["revision"] == 2, (name, ns.events(name))
    time.sleep(3)  # later reconciles (the client's hourly check, pokes) change nothing
    assert tokens() == new
    assert counters.delta("client=cs-basic /token") - issued == 2, "one per distinct token"
    assert counters.delta("client=cs-basic /token/revocation") - revoked == 2, "each once"


def test_revoke_all_never_publishes_a_token_it_superseded(
    ns: Namespace, operator: OperatorThread
) -> None:
    """Issue 21: after a renewal, the token it replaced is still valid and still in the
    store; revoke-all revoked the current token and published that older one (issued
    before the requested time) in its place. It must be revoked too, never published."""
    client = ns.authserver.clients["client_secret_basic"]
    ns.client("idp", client)
    ns.request("a", "idp")
    ns.wait_ready("a")
    superseded = (ns.token_secret("a") or {})["access_token"]
    renew_at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    ns.patch("accesstokenrequests", "a", {"metadata": {"annotations": {RENEW: renew_at}}})
    wait_for(
        "the routine replacement",
        lambda: (ns.token_secret("a") or {}).get("access_token") not in (None, superseded),
        timeout=15,
    )
    current = (ns.token_secret("a") or {})["access_token"]
    assert introspect(ns.authserver, superseded, client)["active"] is True
    time.sleep(1.1)  # the revoke-all time is after both issuances (whole seconds)
    ns.patch(
        "oauth2clients", "idp", {"metadata": {"annotations": {REVOKE_ALL: _rfc3339(time.time())}}}
    )
    published: list[str] = []
    end = time.monotonic() + 10
    while time.monotonic() < end:
        token = (ns.token_secret("a") or {}).get("access_token", "")
        if not published or published[-1] != token:
            published.append(token)
        time.sleep(0.05)
    assert superseded not in published, "a token issued before revoke-all came back"
    latest = published[-1]
    assert latest not in (superseded, current)
    for old in (superseded, current):
        assert introspect(ns.authserver, old, client)["active"] is False
    assert introspect(ns.authserver, latest, client)["active"] is True
    assert (ns.get("accesstokenrequests", "a") or {})["status"]["revision"] == 3


def test_a_request_refused_a_client_does_not_keep_it_from_being_deleted(
    ns: Namespace, operator: OperatorThread
) -> None:
    """Issue 22: a tenant who may not use a client could keep it from ever being deleted
    by naming it in a request of their own namespace."""
    ns.client("shared", ns.authserver.clients["client_secret_basic"])
    other = ns.sibling("squatter")
    other.request("billing", "shared", clientRef={"name": "shared", "namespace": ns.name})
    other.wait_ready("billing", status="False", reason="ClientNotAllowed")
    ns.delete("oauth2clients", "shared")
    wait_for("the client to go", lambda: ns.get("oauth2clients", "shared") is None, timeout=15)
    other.wait_ready("billing", status="False", reason="ClientNotFound")


def test_a_namespace_no_longer_allowed_loses_the_token(
    ns: Namespace, operator: OperatorThread
) -> None:
    """Issue 22: a token given to a namespace stayed in its Secret after the client's
    allowedNamespaces dropped it. Now it turns ClientNotAllowed, its Secret goes, and the
    token is revoked (nobody else holds it)."""
    client = ns.authserver.clients["client_secret_basic"]
    other = ns.sibling("tenant")
    ns.client("shared", client, allowedNamespaces={"names": [other.name]})
    other.request("billing", "shared", clientRef={"name": "shared", "namespace": ns.name})
    other.wait_ready("billing")
    token = (other.token_secret("billing") or {})["access_token"]
    ns.patch("oauth2clients", "shared", {"spec": {"allowedNamespaces": None}})
    other.wait_ready("billing", status="False", reason="ClientNotAllowed")
    wait_for("the Secret to go", lambda: other.token_secret("billing") is None, timeout=15)
    assert introspect(ns.authserver, token, client)["active"] is False
    assert "TokenWithdrawn" in {reason for reason, _ in other.events("billing")}
