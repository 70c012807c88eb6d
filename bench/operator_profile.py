"""Where the operator's CPU goes during an issuance burst: a shorter run than
``python -m bench operator-1000``, for profiling.

``python -m bench.operator_profile N [N ...]`` starts the control plane, oidc-provider and
the operator, then issues N distinct requests at once in a namespace of its own (one
namespace per N, one after the other) and prints the time until all Ready, the time to
Ready p50/p99 and the operator's CPU seconds and RSS. With ``PROFILE=DIR`` set, py-spy
(``pip install py-spy``; not a dependency) samples the operator during each burst and
writes ``DIR/issuance-N.txt`` (collapsed stacks, for ``flamegraph.pl`` or a grep).
No baseline: the ratios belong to ``python -m bench operator``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import setup
from bench.operator_cases import OPERATOR_FLAGS, Bench, issuance
from bench.operator_env import (
    Admin,
    OperatorProcess,
    cpu_seconds,
    load_average,
    memory_mb,
    show_counts,
)
from tests.authserver.fixtures import run_authserver
from tests.cluster.fixtures import PROJECT_CRDS
from tests.cluster.harness import kube_cluster_context

IDLE = 30.0
"""Seconds of idleness measured (and profiled) after each burst."""


def profiler(pid: int, out: Path) -> subprocess.Popen[bytes]:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    argv = [spy, "record", "--pid", str(pid), "--rate", "100", "--format", "raw", "-o", str(out)]
    argv += ["--nonblocking", "--threads"]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL)  # noqa: S603 - our own tool


def main(sizes: list[int]) -> None:
    profile_dir = os.environ.get("PROFILE")
    print(f"load average before: {load_average()}")
    with (
        run_authserver() as server,
        tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp,
        kube_cluster_context(
            crds=sorted(PROJECT_CRDS.glob("*.yaml")), controller_manager=False
        ) as cluster,
    ):
        bench = Bench(setup(server), Admin.of(cluster), Path(tmp))
        namespaces = [bench.namespace(f"issue-{n}") for n in sizes]
        for namespace in namespaces:
            bench.client(namespace, "idp", server.clients["client_secret_basic"])
        operator = OperatorProcess(
            bench.admin, namespaces, Path(tmp) / "operator.log", *OPERATOR_FLAGS
        )
        try:
            operator.wait_healthy()
            for namespace in namespaces:
                bench.wait_client_ready(namespace, "idp")
            rss, _ = memory_mb(operator.pid)
            print(f"operator healthy, clients Ready: RSS {rss:.1f} MiB")
            for n, namespace in zip(sizes, namespaces, strict=True):
                spy = None
                if profile_dir:
                    out = Path(profile_dir) / f"issuance-{n}.txt"
                    spy = profiler(operator.pid, out)
                client = server.clients["client_secret_basic"]
                figures = issuance(bench, namespace, n, "tok", lambda: operator.pid, client)
                if spy is not None:
                    spy.send_signal(2)  # SIGINT: py-spy writes what it sampled
                    spy.wait(60)
                print(
                    f"N={n}: all Ready {figures['total']:.2f} s, p50 {figures['p50']:.2f} s,"
                    f" p99 {figures['p99']:.2f} s, CPU {figures['cpu']:.2f} s"
                    f" ({1000 * figures['cpu'] / n:.1f} ms per issuance),"
                    f" RSS {figures['rss']:.1f} MiB, writes {figures['writes']}"
                    f" (Events {figures['events']}); load {load_average()}"
                )
                print(f"  operator API requests: {show_counts(figures['counts'])}")
                spy = (
                    profiler(operator.pid, Path(profile_dir) / f"idle-{n}.txt")
                    if profile_dir
                    else None
                )
                cpu_before = cpu_seconds(operator.pid)
                time.sleep(IDLE)
                if spy is not None:
                    spy.send_signal(2)
                    spy.wait(60)
                idle = cpu_seconds(operator.pid) - cpu_before
                rss, peak = memory_mb(operator.pid)
                print(
                    f"  then {IDLE:.0f} s idle: CPU {100 * idle / IDLE:.2f} % of a core,"
                    f" RSS {rss:.1f} MiB (peak {peak:.1f}); load {load_average()}"
                )
        finally:
            operator.stop()
            bench.http.close()


if __name__ == "__main__":
    main([int(arg) for arg in sys.argv[1:]] or [300])
