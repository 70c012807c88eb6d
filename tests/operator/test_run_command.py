"""`oauth2-token-operator run`, the image's entrypoint, as a real process: it serves
liveness and metrics, does the work, and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.cluster.harness import KubeCluster
from tests.cluster.kubeconfig import write_kubeconfig
from tests.operator.conftest import Namespace, wait_for
from tests.operator.test_observability import free_port


def test_run_serves_health_metrics_and_stops_on_sigterm(
    ns: Namespace, kube_cluster: KubeCluster, tmp_path: Path
) -> None:
    cfg = kube_cluster.configuration()
    if not cfg.cert_file or not cfg.key_file:
        pytest.skip("needs the built control plane's client certificate")
    kubeconfig = write_kubeconfig(
        tmp_path / "kubeconfig",
        server=cfg.host,
        ca_file=cfg.ssl_ca_cert,
        user="admin",
        cert_file=Path(cfg.cert_file),
        key_file=Path(cfg.key_file),
    )
    health, metrics = free_port(), free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "oauth2_token_operator.cli",
            "run",
            f"--health-port={health}",
            f"--metrics-port={metrics}",
            "--log-format=json",
        ],
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:

        def healthy() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{health}/healthz").status_code == 200
            except httpx.TransportError:
                return False

        wait_for("/healthz", healthy, timeout=30)
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
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    log = output.decode()
    assert process.returncode == 0, log[-2000:]
    assert '"message"' in log, "--log-format=json writes JSON lines"
