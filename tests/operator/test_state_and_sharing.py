"""The Secrets are the state: restarts re-issue nothing, tampered or deleted Secrets come
back, identical requests share one token, and a spec change replaces (and revokes) it."""

from __future__ import annotations

import time
from collections.abc import Callable

from kubernetes import client as k8s

from tests.cluster.apiserver_metrics import request_counts
from tests.integration.conftest import Counters
from tests.operator.conftest import Namespace, introspect, settle, wait_for
from tests.operator.runner import OperatorThread

BASIC = "client_secret_basic"


def token_requests(counters: Counters) -> int:
    return counters.delta("client=cs-basic /token")


def test_restart_adopts_tokens_and_issues_nothing(
    ns: Namespace, operator_factory: Callable[..., OperatorThread], counters: Counters
) -> None:
    """100 valid tokens; a new operator: 0 token requests and 0 writes to the requests."""
    count = 100
    first = operator_factory()
    ns.client("idp", ns.authserver.clients[BASIC])
    for i in range(count):
        ns.request(f"r{i}", "idp", scopes=["read", f"x{i}"])  # distinct: no sharing
    for i in range(count):
        ns.wait_ready(f"r{i}", timeout=60)
    before = {i: (ns.token_secret(f"r{i}") or {})["access_token"] for i in range(count)}
    versions = {i: version(ns, f"r{i}") for i in range(count)}
    issued = token_requests(counters)
    assert issued == count
    first.stop()

    second = operator_factory()
    wait_for("every token adopted", lambda: len(second.ctx.ledger) == count, timeout=30)
    time.sleep(2)  # and anything it might still do
    assert token_requests(counters) == issued, "a restart must not request tokens"
    for i in range(count):
        assert (ns.token_secret(f"r{i}") or {})["access_token"] == before[i]
        assert version(ns, f"r{i}") == versions[i], "a restart must not write the request"


def version(ns: Namespace, name: str) -> str:
    return str((ns.get("accesstokenrequests", name) or {})["metadata"]["resourceVersion"])


def test_tampered_and_deleted_secrets_are_restored(
    ns: Namespace, operator: OperatorThread, counters: Counters
) -> None:
    ns.client("idp", ns.authserver.clients[BASIC])
    ns.request("billing", "idp")
    ns.wait_ready("billing")
    original = ns.token_secret("billing")
    assert original is not None
    issued = token_requests(counters)

    ns.core.patch_namespaced_secret(
        "billing", ns.name, {"stringData": {"access_token": "forged", "extra": "x"}}
    )
    wait_for(
        "the Secret to be restored",
        lambda: (ns.token_secret("billing") or {}).get("access_token") == original["access_token"],
        timeout=10,
    )
    ns.core.delete_namespaced_secret("billing", ns.name)
    wait_for("the Secret to be recreated", lambda: ns.token_secret("billing") == original, 10)
    assert token_requests(counters) == issued, "restoring needs no new token"
    assert "SecretRestored" in {reason for reason, _ in ns.events("billing")}


def test_identical_requests_share_one_token(
    ns: Namespace, operator: OperatorThread, counters: Counters
) -> None:
    ns.client("idp", ns.authserver.clients[BASIC])
    for i in range(4):
        ns.request(f"same-{i}", "idp", scopes=["read", "write"])
    wait_for(
        "all four Secrets",
        lambda: all(ns.token_secret(f"same-{i}") for i in range(4)),
    )
    tokens = {(ns.token_secret(f"same-{i}") or {})["access_token"] for i in range(4)}
    assert len(tokens) == 1
    assert token_requests(counters) == 1

    # The shared token is revoked only when its last holder goes.
    (token,) = tokens
    for i in range(3):
        ns.delete("accesstokenrequests", f"same-{i}")
    wait_for(
        "three deletions",
        lambda: all(ns.get("accesstokenrequests", f"same-{i}") is None for i in range(3)),
    )
    client = ns.authserver.clients[BASIC]
    assert introspect(ns.authserver, token, client)["active"] is True
    ns.delete("accesstokenrequests", "same-3")
    wait_for("the last deletion", lambda: ns.get("accesstokenrequests", "same-3") is None)
    assert introspect(ns.authserver, token, client)["active"] is False


def test_a_spec_change_replaces_and_revokes_the_token(
    ns: Namespace, operator: OperatorThread
) -> None:
    client = ns.authserver.clients[BASIC]
    ns.client("idp", client)
    ns.request("billing", "idp", scopes=["read"])
    ns.wait_ready("billing")
    old = (ns.token_secret("billing") or {})["access_token"]
    ns.patch("accesstokenrequests", "billing", {"spec": {"scopes": ["read", "write"]}})
    wait_for(
        "a token with the new scopes",
        lambda: (ns.token_secret("billing") or {}).get("scope") == "read write",
    )
    new = (ns.token_secret("billing") or {})["access_token"]
    assert new != old
    wait_for("the old token revoked", lambda: not introspect(ns.authserver, old, client)["active"])
    assert introspect(ns.authserver, new, client)["active"] is True
    status = (ns.get("accesstokenrequests", "billing") or {})["status"]
    assert status["revision"] == 2
    assert status["grantedScopes"] == ["read", "write"]


def test_one_issuance_costs_three_api_writes(
    ns: Namespace, operator: OperatorThread, kube_admin: k8s.ApiClient
) -> None:
    """Counted by the API server itself (apiserver_request_total): the finalizer, the
    Secret and the status; Events are counted apart."""
    ns.client("idp", ns.authserver.clients[BASIC])
    ns.wait_ready("idp", plural="oauth2clients")
    # The namespace controller empties earlier tests' namespaces with DELETEs and PUTs
    # that land in the same counters: count only once they are gone.
    wait_for(
        "earlier tests' namespaces removed",
        lambda: all(
            (n.status and n.status.phase) != "Terminating" for n in ns.core.list_namespace().items
        ),
        timeout=120,
    )
    # A client's first accepted token request sets its Authenticated condition once (one
    # client write for its lifetime, not one per issuance): made before counting.
    ns.request("first", "idp", scopes=["write"])
    ns.wait_ready("first")
    settle(operator, ns, "first")
    before = write_counts(kube_admin)
    ns.request("billing", "idp")
    ns.wait_ready("billing")
    settle(operator, ns, "billing")  # and any late bookkeeping
    delta = {k: v - before.get(k, 0) for k, v in write_counts(kube_admin).items()}
    # kube-controller-manager renews its leader-election Lease all the time: not ours.
    delta = {k: v for k, v in delta.items() if v and k[1] != "leases"}
    events = delta.pop(("POST", "events"), 0) + delta.pop(("PATCH", "events"), 0)
    assert delta.pop(("POST", "accesstokenrequests")) == 1  # the test's own create
    print(f"\nAPI writes for one issuance: {delta} (+ {events} Event writes)")
    assert sum(delta.values()) <= 3, delta
    assert events >= 1


def write_counts(api: k8s.ApiClient) -> dict[tuple[str, str], int]:
    method, url, headers, body, post = api.param_serialize("GET", "/metrics")
    response = api.call_api(method, url, headers, body, post)
    response.read()  # type: ignore[no-untyped-call]
    assert response.data is not None
    counts = request_counts(response.data.decode(), subresources=False)
    return {key: n for key, n in counts.items() if key[0] in ("POST", "PUT", "PATCH", "DELETE")}


def test_a_rotated_client_secret_is_used_without_a_restart(
    ns: Namespace, operator: OperatorThread
) -> None:
    client = ns.authserver.clients[BASIC]
    assert client.client_secret is not None
    ns.client("idp", client)
    ns.request("billing", "idp")
    ns.wait_ready("billing")

    def rotate(secret: str) -> None:
        ns.core.patch_namespaced_secret(
            "idp-credentials", ns.name, {"stringData": {"client-secret": secret}}
        )
        time.sleep(6)  # the credentials cache lives 5 s

    def renew() -> None:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 1))
        time.sleep(1.5)
        ns.patch(
            "accesstokenrequests",
            "billing",
            {"metadata": {"annotations": {"oauth2.token-operator.io/renew-requested-at": now}}},
        )

    rotate("a-wrong-secret")
    renew()
    wait_for(
        "the wrong secret to be used",
        lambda: (ns.condition("billing", "Issuing") or {}).get("reason") == "InvalidClient",
        timeout=15,
    )
    assert (ns.condition("billing") or {}).get("status") == "True", "the old token stays"
    before = (ns.token_secret("billing") or {})["access_token"]
    rotate(client.client_secret)
    renew()
    wait_for(
        "a token with the restored secret",
        lambda: (ns.token_secret("billing") or {}).get("access_token") != before,
        timeout=20,
    )
