"""Where the operator's CPU goes during an issuance burst: a shorter run than
``python -m bench operator-1000``, for profiling.

``python -m bench.operator_profile N [N ...]`` starts the control plane, oidc-provider and
the operator, then issues N distinct requests at once in a namespace of its own (one
namespace per N, one after the other) and prints the time until all Ready, the time to
Ready p50/p99 and the operator's CPU seconds and RSS. With ``PROFILE=DIR`` set, py-spy
(``pip install py-spy``; not a dependency) samples the operator's thread holding the GIL
(CPU, not waits) during each burst and writes ``DIR/issuance-N.txt`` (collapsed stacks,
for ``flamegraph.pl`` or a grep).

``restart-N`` issues N, then restarts the operator (``bench.operator_cases.restart_case``;
profiled from the new process's start: ``DIR/restart-1.txt``).

``renew-N`` instead of N issues N requests of the 20 s ``renewal_ttl`` client and then
measures (and profiles: ``DIR/renewal-N.txt``) a window of renewals only: the operator's
CPU per renewal, its API requests, the token calls in the window, and the CPU per renewal
of every other process on the machine (kube-apiserver, etcd, oidc-provider's node).
No baseline: the ratios belong to ``python -m bench operator``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.common import setup
from bench.operator_cases import (
    OPERATOR_FLAGS,
    Bench,
    bench_on_control_plane,
    issuance,
    restart_case,
)
from bench.operator_env import (
    OperatorProcess,
    RequestWatch,
    cpu_seconds,
    event_writes,
    load_average,
    memory_mb,
    show_counts,
    writes,
)
from tests.authserver.fixtures import run_authserver

IDLE = 30.0
"""Seconds of idleness measured (and profiled) after each burst."""


def profiler(pid: int, out: Path) -> subprocess.Popen[bytes]:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    argv = [spy, "record", "--pid", str(pid), "--rate", "100", "--format", "raw", "-o", str(out)]
    argv += ["--nonblocking", "--threads", "--gil"]  # CPU, not waits
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL)  # noqa: S603 - our own tool


RENEWAL_WINDOW = 30.0
"""Seconds of renewals measured in a ``renew-N`` run: each 20 s token renews once or twice."""


def cpu_by_process() -> dict[int, tuple[str, float]]:
    """Every process's command name and CPU seconds so far."""
    found: dict[int, tuple[str, float]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            pid = int(stat.parent.name)
            found[pid] = (text[text.index("(") + 1 : text.rindex(")")], cpu_seconds(pid))
        except OSError:
            continue  # gone meanwhile
    return found


def cpu_by_command(before: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds since `before` by command name, of the processes alive then and now:
    where a window's CPU went besides the operator (kube-apiserver, etcd, node)."""
    totals: dict[str, float] = {}
    for pid, (command, seconds) in cpu_by_process().items():
        if pid in before and before[pid][0] == command:
            totals[command] = totals.get(command, 0.0) + seconds - before[pid][1]
    return totals


def main(runs: list[str]) -> None:
    print(f"load average before: {load_average()}")
    with (
        run_authserver() as server,
        bench_on_control_plane(setup(server), "bench-profile-") as (bench, _),
    ):
        namespaces = [bench.namespace(f"profile-{i}") for i in range(len(runs))]
        for run, namespace in zip(runs, namespaces, strict=True):
            test_client = "renewal_ttl" if run.startswith("renew-") else "client_secret_basic"
            bench.client(namespace, "idp", server.clients[test_client])
        spies: list[subprocess.Popen[bytes] | None] = []

        def start() -> OperatorProcess:
            started = OperatorProcess(
                bench.admin, namespaces, bench.workdir / "operator.log", *OPERATOR_FLAGS
            )
            if spies:  # a restart: profiled from its first instant
                spies.append(profiling(f"restart-{len(spies)}", started.pid))
            return started

        operator = start()
        try:
            operator.wait_healthy()
            for namespace in namespaces:
                bench.wait_client_ready(namespace, "idp")
            rss, _ = memory_mb(operator.pid)
            print(f"operator healthy, clients Ready: RSS {rss:.1f} MiB")
            for run, namespace in zip(runs, namespaces, strict=True):
                if run.startswith("renew-"):
                    renewals(bench, operator, namespace, int(run.removeprefix("renew-")))
                elif run.startswith("restart-"):
                    burst(bench, operator, namespace, int(run.removeprefix("restart-")))
                    spies.append(None)
                    operator, _ = restart_case(
                        bench, operator, namespace, int(run.removeprefix("restart-")), start
                    )
                    done(spies.pop())
                    spies.clear()
                else:
                    burst(bench, operator, namespace, int(run))
                idle(operator, f"idle-{run}")
        finally:
            operator.stop()


def profiling(name: str, pid: int) -> subprocess.Popen[bytes] | None:
    """py-spy sampling `pid` into ``$PROFILE/name.txt``, if ``PROFILE`` is set."""
    profile_dir = os.environ.get("PROFILE")
    return profiler(pid, Path(profile_dir) / f"{name}.txt") if profile_dir else None


def done(spy: subprocess.Popen[bytes] | None) -> None:
    if spy is not None:
        spy.send_signal(2)  # SIGINT: py-spy writes what it sampled
        spy.wait(60)


def burst(bench: Bench, operator: OperatorProcess, namespace: str, n: int) -> None:
    spy = profiling(f"issuance-{n}", operator.pid)
    client = bench.server.clients["client_secret_basic"]
    figures = issuance(bench, namespace, n, "tok", lambda: operator.pid, client)
    done(spy)
    print(
        f"N={n}: all Ready {figures['total']:.2f} s, p50 {figures['p50']:.2f} s,"
        f" p99 {figures['p99']:.2f} s, CPU {figures['cpu']:.2f} s"
        f" ({1000 * figures['cpu'] / n:.1f} ms per issuance),"
        f" RSS {figures['rss']:.1f} MiB, writes {figures['writes']}"
        f" (Events {figures['events']}); load {load_average()}"
    )
    print(f"  operator API requests: {show_counts(figures['counts'])}")


def renewals(bench: Bench, operator: OperatorProcess, namespace: str, n: int) -> None:
    """Issue `n` requests of 20 s tokens, then measure a window of renewals alone."""
    client = bench.server.clients["renewal_ttl"]
    names = [f"renew-{i}" for i in range(n)]
    with RequestWatch(bench.admin, namespace) as watch:
        bench.create_requests(
            namespace, {name: bench.spec("idp", ["read", f"x{i}"]) for i, name in enumerate(names)}
        )
        watch.wait_ready(names, timeout=max(120.0, n * 0.6))
    before = bench.snapshot(client)
    cpu_before, machine_before = cpu_seconds(operator.pid), cpu_by_process()
    spy = profiling(f"renewal-{n}", operator.pid)
    time.sleep(RENEWAL_WINDOW)
    cpu = cpu_seconds(operator.pid) - cpu_before
    machine = cpu_by_command(machine_before)
    done(spy)
    counts, calls = bench.since(before, bench.server.clients["renewal_ttl"])
    rss, peak = memory_mb(operator.pid)
    print(
        f"renew-{n}: {calls} renewals in {RENEWAL_WINDOW:.0f} s, CPU {cpu:.2f} s"
        f" ({1000 * cpu / max(calls, 1):.1f} ms per renewal), writes {writes(counts)}"
        f" (Events {event_writes(counts)}), RSS {rss:.1f} MiB (peak {peak:.1f});"
        f" load {load_average()}"
    )
    print(f"  operator API requests: {show_counts(counts)}")
    busiest = ", ".join(
        f"{command} {1000 * seconds / max(calls, 1):.1f}"
        for command, seconds in sorted(machine.items(), key=lambda item: -item[1])[:6]
    )
    print(f"  CPU ms per renewal by command, the whole machine: {busiest}")
    bench.delete_all_requests(namespace)


def idle(operator: OperatorProcess, name: str) -> None:
    spy = profiling(name, operator.pid)
    cpu_before = cpu_seconds(operator.pid)
    time.sleep(IDLE)
    done(spy)
    cpu = cpu_seconds(operator.pid) - cpu_before
    rss, peak = memory_mb(operator.pid)
    print(
        f"  then {IDLE:.0f} s idle: CPU {100 * cpu / IDLE:.2f} % of a core,"
        f" RSS {rss:.1f} MiB (peak {peak:.1f}); load {load_average()}"
    )


if __name__ == "__main__":
    main(sys.argv[1:] or ["300"])
