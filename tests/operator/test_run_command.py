"""`oauth2-token-operator run`, the image's entrypoint, as a real process: it serves
liveness and metrics, does the work, and stops cleanly on SIGTERM."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from kubernetes import client as k8s

from tests.cluster.harness import free_port
from tests.cluster.objects import unless_missing
from tests.operator.conftest import Namespace, wait_for
from tests.operator.process import OperatorProcess


def test_run_serves_health_metrics_and_stops_on_sigterm(
    operator_processes: Callable[..., OperatorProcess], ns: Namespace
) -> None:
    metrics = free_port()
    process = operator_processes(f"--metrics-port={metrics}", "--log-format=json")
    try:
        ns.client("idp", ns.authserver.clients["client_secret_basic"])
        ns.request("billing", "idp")
        ns.wait_ready("billing")
        text = httpx.get(f"http://127.0.0.1:{metrics}/metrics").text
        assert "oauth2_token_operator_issuances_total" in text
        # Our objects go while it still runs (their finalizers are its job).
        ns.delete("accesstokenrequests", "billing")
        wait_for("the deletion", lambda: ns.get("accesstokenrequests", "billing") is None)
        ns.delete("oauth2clients", "idp")
        wait_for("the client", lambda: ns.get("oauth2clients", "idp") is None)
    finally:
        code = process.stop()
    log = process.log()
    assert code == 0, log[-2000:]
    assert '"message"' in log, "--log-format=json writes JSON lines"


def test_replicas_with_leader_election_stop_on_sigterm_leading_or_standing_by(
    operator_processes: Callable[..., OperatorProcess], ns: Namespace
) -> None:
    """Two `run --leader-election` processes: one leads, the other stands by. SIGTERM
    stops the standby at once and cleanly (kopf is not running there to handle it: as a
    container's PID 1 it would otherwise wait out its grace period), then the leader,
    which hands the Lease back."""
    lease = ["--leader-election", f"--lease-namespace={ns.name}", "--lease-name=ha-test"]
    leader = operator_processes(*lease, "--identity=first")
    wait_for("the first to lead", lambda: _holder(ns, "ha-test") == "first")
    standby = operator_processes(*lease, "--identity=second")  # healthy while standing by
    assert _holder(ns, "ha-test") == "first"

    assert standby.stop(timeout=10) == 0, standby.log()[-2000:]
    assert _holder(ns, "ha-test") == "first"
    assert leader.stop() == 0, leader.log()[-2000:]
    assert _holder(ns, "ha-test") is None, "a graceful stop releases the Lease"


def _holder(ns: Namespace, name: str) -> str | None:
    leases = k8s.CoordinationV1Api(ns.api)
    lease = unless_missing(lambda: leases.read_namespaced_lease(name, ns.name))
    return lease.spec.holder_identity if lease is not None and lease.spec else None
