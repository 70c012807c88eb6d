"""A kind cluster made for a run is gone after it, however the run ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.kind import NAME_PREFIX, KindCluster, leftovers

pytestmark = pytest.mark.kind

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_interrupted_run_leaves_nothing_behind(kind_cluster: KindCluster, signum: int) -> None:
    # kind_cluster: the build is there and an engine answers (else this is skipped).
    if not kind_cluster.started:
        pytest.skip("KIND_CLUSTER names an existing cluster: this test creates its own")
    env = {k: v for k, v in os.environ.items() if k != "KIND_CLUSTER"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.e2e.kind"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    name = f"{NAME_PREFIX}{proc.pid}"
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("export KUBECONFIG="), proc.stderr.read() if proc.stderr else ""
        kubeconfig = Path(line.strip().split("=", 1)[1])
        assert kubeconfig.exists()
        assert leftovers(name), "the cluster should exist while the run lives"
        proc.send_signal(signum)
        proc.wait(120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert leftovers(name) == []
    assert not kubeconfig.exists()
    assert not kubeconfig.parent.exists()
