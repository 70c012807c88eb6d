"""`oauth2-token-operator run`, the image's entrypoint, as a real process: it serves
liveness and metrics, does the work, and stops cleanly on SIGTERM."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.cluster.harness import free_port
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
