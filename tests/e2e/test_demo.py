"""``make demo`` / ``make demo-down`` (``python -m demo``), run as a user runs them, on a
kind cluster of their own (renamed by DEMO_CLUSTER, so a user's demo is left alone)."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys

import pytest

from tests.e2e.kind import KindCluster, cache_dir, leftovers
from tests.e2e.ship import ROOT, kubectl

pytestmark = pytest.mark.kind


def _demo(command: str, name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "demo", command],
        cwd=ROOT,
        env={**os.environ, "DEMO_CLUSTER": name},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def test_demo_up_shows_a_redacted_token_in_a_pod_and_down_removes_it(
    kind_cluster: KindCluster,  # builds kind and the node image; the demo makes its own cluster
) -> None:
    name = f"oauth2-demo-test-{os.getpid()}"
    try:
        up = _demo("up", name)
        assert up.returncode == 0, up.stderr[-3000:]
        out = up.stdout
        for request in ("api-token", "alice-token"):
            assert re.search(rf"accesstokenrequest\S*/{request}\s+True\s", out), out
        assert "access_token   <redacted:" in out
        assert "authorization  Bearer <redacted:" in out
        assert "Bearer token sha256:" in out  # what the workload pod read
        assert "make demo-down" in out
        # The tokens themselves are never printed.
        kubeconfig = cache_dir().parent / name / "kubeconfig"
        for secret in ("api-token", "alice-token"):
            token = kubectl(kubeconfig, "-n", "oauth2-demo", "get", "secret", secret,
                            "-o", "jsonpath={.data.access_token}")  # fmt: skip
            assert base64.b64decode(token).decode() not in out
    finally:
        down = _demo("down", name)
    assert down.returncode == 0, down.stderr[-3000:]
    assert leftovers(name) == []
