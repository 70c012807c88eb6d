"""Two replicas: only the Lease holder works; a standby takes over when it goes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubernetes import client as k8s

from tests.integration.conftest import Counters
from tests.operator.conftest import Namespace, wait_for
from tests.operator.runner import OperatorThread


def holder(api: k8s.ApiClient, namespace: str) -> str | None:
    lease = k8s.CoordinationV1Api(api).read_namespaced_lease("oauth2-token-operator", namespace)
    return lease.spec.holder_identity if lease.spec else None


def test_one_leader_issues_and_a_standby_takes_over(
    ns: Namespace,
    operator_factory: Callable[..., OperatorThread],
    kube_admin: k8s.ApiClient,
    counters: Counters,
) -> None:
    election: dict[str, Any] = {
        "leader_election": True,
        "lease_namespace": ns.name,
        "lease_duration": 4.0,
        "lease_renew_interval": 1.0,
    }
    first = operator_factory(identity="replica-a", **election)
    second = operator_factory(identity="replica-b", wait=False, **election)
    ns.client("idp", ns.authserver.clients["client_secret_basic"])
    count = 100  # under load: every request at once
    for i in range(count):
        ns.request(f"r{i}", "idp", scopes=["read", f"s{i}"])
    for i in range(count):
        ns.wait_ready(f"r{i}", timeout=60)
    assert holder(kube_admin, ns.name) == "replica-a"
    assert first.ready
    assert not second.ready, "the standby must not run its controllers"
    assert second.ctx is None
    assert counters.delta("client=cs-basic /token") == count, "each request issued once"

    first.stop()  # graceful: the Lease is released, the standby takes over at once
    wait_for("the standby to lead", lambda: second.ready, timeout=15)
    assert holder(kube_admin, ns.name) == "replica-b"
    ns.request("late", "idp", scopes=["read", "late"])
    ns.wait_ready("late")
    assert counters.delta("client=cs-basic /token") == count + 1, "the others were adopted"
