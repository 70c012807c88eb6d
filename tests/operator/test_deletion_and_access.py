"""Deletion never wedges on an unreachable authorization server, and a client in another
namespace serves a request only when it allows that namespace."""

from __future__ import annotations

import time

import pytest

from tests.faults import stalled_server
from tests.operator.conftest import Namespace, introspect, wait_for
from tests.operator.runner import OperatorThread


def test_namespace_deletion_completes_when_revocation_hangs(
    ns: Namespace, operator: OperatorThread, caplog: pytest.LogCaptureFixture
) -> None:
    """The operator's revocation deadline is 5 s here (30 s by default). A terminating
    namespace takes no new Events, so the outcome is read from the operator's log."""
    with stalled_server() as revoke_url:
        ns.client(
            "idp",
            ns.authserver.clients["client_secret_basic"],
            endpoints={"revocation": revoke_url},
            allowInsecureHTTP=True,  # the stalled endpoint is plain http on loopback
        )
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


def test_other_namespaces_are_denied_unless_allowed(
    ns: Namespace, operator: OperatorThread, counters: object
) -> None:
    server = ns.authserver
    client = server.clients["client_secret_basic"]
    ns.client("shared", client)
    other = ns.sibling("team-a")
    other.request("billing", "shared", clientRef={"name": "shared", "namespace": ns.name})
    denied = other.wait_ready("billing", status="False", reason="ClientNotAllowed")
    assert ns.name in denied["message"]
    assert other.token_secret("billing") is None

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
