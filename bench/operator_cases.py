"""The operator against the real control plane and oidc-provider: issuance of N requests
at once (against a minimal baseline process), renewal, restart, steady state, sharing.

One control plane (without kube-controller-manager, so the API server's counters hold
only the bench's, the operator's and the API server's own requests) and one operator
process per run; each case works in a namespace of its own and reads the counters
before and after it. The phases run in an order that keeps them apart: the renewing
requests are deleted before the issuance, and the issued tokens (10 min) are not due
for renewal before the run ends.

``python -m bench operator`` (N = 100) or ``python -m bench operator-1000``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from bench.common import Setup, at_most
from bench.operator_env import (
    CLIENTS_PATH,
    REQUESTS_PATH,
    Admin,
    OperatorProcess,
    RequestWatch,
    TokenRecordWatch,
    api_counts,
    cpu_seconds,
    delta,
    event_writes,
    load_average,
    memory_mb,
    ours,
    series_count,
    show_counts,
    writes,
)
from oauth2_token_operator.api.crd import GROUP, VERSION
from oauth2_token_operator.api.labels import USABLE_BY_OPERATOR, USABLE_VALUE
from oauth2_token_operator.api.token_secret import TOKEN_ANNOTATION, TokenRecord
from oauth2_token_operator.policies.renewal import RenewalPolicy, renewal_time
from tests.authserver.fixtures import TestClient, basic_authorization
from tests.cluster.fixtures import PROJECT_CRDS
from tests.cluster.harness import KubeCluster, kube_cluster_context

CONCURRENCY = 64
"""Creates in flight at once, and the baseline's tokens in flight: kopf's worker limit
as the operator configures it (`settings.queueing.worker_limit`)."""
RENEWING = 20
"""Requests of the 20 s `renewal_ttl` client in the renewal case."""
RENEWAL_CLIENTS = {"renew": "renewal_ttl", "renew-10m": "client_secret_basic"}
"""The renewal case's OAuth2Clients (in its namespace) and their test clients."""
MIN_RENEWAL_LEAD = 5.0
OPERATOR_FLAGS = (f"--min-renewal-lead={MIN_RENEWAL_LEAD}", "--revocation-deadline=5")
EXPIRY_METRIC = "oauth2_token_operator_token_expiry_timestamp_seconds"
Send = Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]
"""One API request, given the client to send it with."""


def row(name: str, operator: float, baseline: float | None, unit: str = "", goal: str = "") -> None:
    ratio = f"{operator / baseline:6.2f}" if baseline else "     -"
    base = "-" if baseline is None else f"{baseline:.4g}"
    print(f"  {name:<42} {operator:>10.4g} {base:>10} {ratio}  {unit:<10} {goal}")


def header(title: str) -> None:
    print(f"\n{title}")
    print(f"  {'':<42} {'operator':>10} {'baseline':>10} {'ratio':>6}  {'unit':<10} goal")


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@contextlib.contextmanager
def bench_on_control_plane(setup: Setup, prefix: str) -> Iterator[tuple[Bench, KubeCluster]]:
    """A `Bench` on a control plane of its own (etcd and kube-apiserver with our CRDs, no
    kube-controller-manager, so that the API server's counters hold only the bench's,
    the operator's and its own requests) and a scratch directory: both gone after."""
    with (
        tempfile.TemporaryDirectory(prefix=prefix) as tmp,
        kube_cluster_context(
            crds=sorted(PROJECT_CRDS.glob("*.yaml")), controller_manager=False
        ) as cluster,
    ):
        bench = Bench(setup, Admin.of(cluster), Path(tmp))
        try:
            yield bench, cluster
        finally:
            bench.http.close()


class Bench:
    def __init__(self, setup: Setup, admin: Admin, workdir: Path) -> None:
        self.setup = setup
        self.server = setup.server
        self.admin = admin
        self.http = admin.client(timeout=30.0)
        self.workdir = workdir

    # -- objects ---------------------------------------------------------------------

    def namespace(self, name: str) -> str:
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        self.http.post("/api/v1/namespaces", json=body).raise_for_status()
        return name

    def client(self, namespace: str, name: str, test_client: TestClient, **spec: Any) -> None:
        """OAuth2Client `name` of the test server for `test_client` (`spec`: more fields)."""
        assert test_client.client_secret is not None
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": f"{name}-credentials",
                "labels": {USABLE_BY_OPERATOR: USABLE_VALUE},
            },
            "stringData": {"client-secret": test_client.client_secret},
        }
        self.http.post(f"/api/v1/namespaces/{namespace}/secrets", json=secret).raise_for_status()
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "OAuth2Client",
            "metadata": {"name": name},
            "spec": {
                "issuer": self.server.issuer,
                "clientId": test_client.client_id,
                "authentication": {
                    "method": "client_secret_basic",
                    "clientSecretRef": {"name": f"{name}-credentials", "key": "client-secret"},
                },
                "tls": {"caBundle": self.server.ca_bundle.read_text()},
                **spec,
            },
        }
        path = CLIENTS_PATH.format(namespace=namespace)
        self.http.post(path, json=body).raise_for_status()

    def wait_client_ready(self, namespace: str, name: str, timeout: float = 60.0) -> None:
        path = f"{CLIENTS_PATH.format(namespace=namespace)}/{name}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            conditions = (self.http.get(path).json().get("status") or {}).get("conditions") or []
            if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
                return
            time.sleep(0.2)
        raise TimeoutError(f"OAuth2Client {namespace}/{name} not Ready")

    def spec(self, client: str, scopes: list[str]) -> dict[str, Any]:
        return {
            "clientRef": {"name": client},
            "scopes": scopes,
            "resources": [self.server.resource],
        }

    def create_requests(self, namespace: str, specs: dict[str, dict[str, Any]]) -> dict[str, float]:
        """Create all at once (`CONCURRENCY` in flight); when each create returned."""
        path = REQUESTS_PATH.format(namespace=namespace)

        def create(name: str, spec: dict[str, Any]) -> Send:
            body = {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "AccessTokenRequest",
                "metadata": {"name": name},
                "spec": spec,
            }
            return lambda http: http.post(path, json=body)

        answered = self.all_at_once({name: create(name, spec) for name, spec in specs.items()})
        for response, _ in answered.values():
            response.raise_for_status()
        return {name: at for name, (_, at) in answered.items()}

    def delete_all_requests(self, namespace: str, timeout: float = 120.0) -> None:
        """Delete the namespace's requests (`CONCURRENCY` in flight) and wait until the
        operator has let every one go. One by one, not the collection's DELETE: the API
        server marks a collection's objects one after another (they have finalizers), and
        10 000 outlast its request timeout."""
        path = REQUESTS_PATH.format(namespace=namespace)
        names = [item["metadata"]["name"] for item in self.http.get(path).json()["items"]]

        def delete(name: str) -> Send:
            return lambda http: http.delete(f"{path}/{name}")

        for response, _ in self.all_at_once({name: delete(name) for name in names}).values():
            if response.status_code != 404:  # gone meanwhile
                response.raise_for_status()
        deadline = time.monotonic() + timeout
        while self.http.get(path, params={"limit": "1"}).json()["items"]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"requests in {namespace} not deleted")
            time.sleep(0.5)

    def all_at_once(self, sends: dict[str, Send]) -> dict[str, tuple[httpx.Response, float]]:
        """Each request sent, `CONCURRENCY` in flight: its response, and when it came."""

        async def send_all() -> dict[str, tuple[httpx.Response, float]]:
            answered: dict[str, tuple[httpx.Response, float]] = {}
            limits = httpx.Limits(max_connections=CONCURRENCY)
            async with self.admin.async_client(limits=limits, timeout=60.0) as http:

                async def send(name: str, call: Send) -> None:
                    answered[name] = (await call(http), time.monotonic())

                await at_most(CONCURRENCY, (send(name, call) for name, call in sends.items()))
            return answered

        return asyncio.run(send_all())

    def token_record(self, namespace: str, name: str) -> tuple[str, TokenRecord]:
        """The owner's uid and the token record in the request's Secret."""
        secret = self.http.get(f"/api/v1/namespaces/{namespace}/secrets/{name}").json()
        meta = secret["metadata"]
        record = TokenRecord.from_annotation(meta["annotations"][TOKEN_ANNOTATION])
        assert record is not None
        return meta["ownerReferences"][0]["uid"], record

    # -- counters --------------------------------------------------------------------

    def token_calls(self, client: TestClient) -> int:
        return self.server.counters().get(f"client={client.client_id} /token", 0)

    def snapshot(self, client: TestClient) -> tuple[Counter[tuple[str, str]], int]:
        return api_counts(self.http), self.token_calls(client)

    def since(
        self, before: tuple[Counter[tuple[str, str]], int], client: TestClient
    ) -> tuple[Counter[tuple[str, str]], int]:
        counts, calls = self.snapshot(client)
        return ours(delta(counts, before[0])), calls - before[1]


def planned_renewal(owner_uid: str, record: TokenRecord) -> float:
    """When the operator plans to renew the token of `record` (its own rule)."""
    assert record.expires_at is not None
    policy = RenewalPolicy(min_lead=MIN_RENEWAL_LEAD)
    seed = f"{owner_uid}/{record.revision}"
    return renewal_time(record.issued_at, record.expires_at, policy, seed=seed).renew_at


# -- the cases ----------------------------------------------------------------------------


def renewal_case(
    bench: Bench, namespace: str, count: int = RENEWING, oauth2_client: str = "renew"
) -> None:
    """`count` requests of `oauth2_client` (in `namespace`: "renew", 20 s tokens, or
    "renew-10m", the server's 10 min default) renewed once each."""
    client = bench.server.clients[RENEWAL_CLIENTS[oauth2_client]]
    names = [f"renew-{i}" for i in range(count)]
    with (
        RequestWatch(bench.admin, namespace) as watch,
        TokenRecordWatch(bench.admin, namespace) as secrets,
    ):
        bench.create_requests(
            namespace,
            {n: bench.spec(oauth2_client, ["read", f"x{i}"]) for i, n in enumerate(names)},
        )
        # With many requests the first renewals come while the last are still issued:
        # each is compared with the renewal planned for its own first token.
        watch.wait_ready(names, timeout=max(120.0, count * 0.6))
        after_issuance, counted_from = bench.snapshot(client), time.time()
        first = secrets.records[names[0]][1][1]
        assert first.expires_at is not None
        lifetime = first.expires_at - first.issued_at
        secrets.wait(
            "renewals",
            lambda: all(2 in secrets.records.get(n, {}) for n in names),
            max(60.0, count * 0.2) + lifetime,
        )
        watch.wait(
            "renewed statuses",
            lambda: all(2 in watch.revisions.get(n, {}) for n in names),
            30,
        )
        time.sleep(1)  # late writes (Events) land
        counts, calls = bench.since(after_issuance, client)
        # The renewals inside the counted window (with many requests some come before
        # it, and some second renewals inside it).
        renewals = sum(
            1
            for n in names
            for revision, (_, record) in secrets.records[n].items()
            if revision >= 2 and record.issued_at >= counted_from
        )
        planned = {n: planned_renewal(*secrets.records[n][1]) for n in names}
        obtained = [secrets.records[n][2][1].issued_at - planned[n] for n in names]
        shown = [watch.revisions[n][2][0] - planned[n] for n in names]
    header(
        f"Renewal: {count} requests of {lifetime:.0f} s tokens,"
        f" --min-renewal-lead={MIN_RENEWAL_LEAD:.0f}"
    )
    print(f"  {renewals} renewals counted (after all {count} were Ready)")
    row("token-endpoint calls per renewal", calls / renewals, 1.0, "calls", "1")
    events = event_writes(counts)
    row(
        "API writes per renewal (without Events)",
        (writes(counts) - events) / renewals,
        2.0,
        "writes",
        "<= 2",
    )
    row("Event writes per renewal", events / renewals, None, "writes")
    row("new token obtained late, p50", statistics.median(obtained), None, "s")
    row("new token obtained late, p99", quantile(obtained, 0.99), None, "s", "p99 <= 1 s")
    row("new token's status seen late, p50", statistics.median(shown), None, "s")
    row("new token's status seen late, p99", quantile(shown, 0.99), None, "s")
    print(f"  API requests: {show_counts(counts)}")
    print("  (late: minus the renewal time planned for the first token, computed as the operator")
    print("   does from the record in its Secret; obtained: the new record's issued_at;")
    print("   seen: when the bench's watch saw the new revision in the status)")
    bench.delete_all_requests(namespace, timeout=max(120.0, count * 0.1))


def issuance(
    bench: Bench, namespace: str, n: int, prefix: str, pid: Callable[[], int], client: TestClient
) -> dict[str, Any]:
    names = [f"{prefix}-{i}" for i in range(n)]
    # Renewed 60 s before expiry (at 540 s of 600), not at 2/3 (from 360 s on): at
    # N = 1000 the later phases would otherwise meet the first renewals.
    specs = {
        name: {**bench.spec("idp", ["read", f"x{i}"]), "renewBefore": "60s"}
        for i, name in enumerate(names)
    }
    with RequestWatch(bench.admin, namespace) as watch:
        before = bench.snapshot(client)
        cpu_before = cpu_seconds(pid())
        start = time.monotonic()
        created = bench.create_requests(namespace, specs)
        watch.wait_ready(names, timeout=max(120.0, n * 0.6))
        cpu = cpu_seconds(pid()) - cpu_before
        rss, peak = memory_mb(pid())
        ready = dict(watch.ready_at)
        time.sleep(2)  # late writes (Events) land
        counts, calls = bench.since(before, client)
    latencies = [ready[name] - created[name] for name in names]
    return {
        "total": max(ready[name] for name in names) - start,
        "p50": statistics.median(latencies),
        "p99": quantile(latencies, 0.99),
        "calls": calls,
        "counts": counts,
        "writes": writes(counts) - n,  # less the bench's own creates
        "events": event_writes(counts),
        "cpu": cpu,
        "rss": rss,
        "peak": peak,
    }


def baseline_process(bench: Bench, namespace: str, n: int) -> subprocess.Popen[str]:
    client = bench.server.clients["client_secret_basic"]
    assert client.client_secret is not None
    settings = {
        "server": bench.admin.server,
        "ca": bench.admin.ca,
        "cert": bench.admin.cert,
        "key": bench.admin.key,
        "namespace": namespace,
        "token_endpoint": bench.server.token_endpoint,
        "authserver_ca": str(bench.server.ca_bundle),
        "authorization": basic_authorization(client.client_id, client.client_secret),
        "concurrency": CONCURRENCY,
        "count": n,
    }
    profile = os.environ.get("CPROFILE")  # as the operator's (`OperatorProcess`)
    under = ["-m", "cProfile", "-o", f"{profile}.{namespace}"] if profile else []
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, *under, "-m", "bench.operator_baseline"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    process.stdin.write(json.dumps(settings) + "\n")
    process.stdin.flush()
    if process.stdout.readline().strip() != "watching":
        raise RuntimeError("the baseline did not start")
    return process


def issuance_case(
    bench: Bench,
    operator: OperatorProcess,
    namespaces: tuple[str, str],
    n: int,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The operator's issuance in `namespaces[0]`, then the baseline process's in
    `namespaces[1]`."""
    client = bench.server.clients["client_secret_basic"]
    op = issuance(bench, namespaces[0], n, "tok", lambda: operator.pid, client)
    process = baseline_process(bench, namespaces[1], n)
    try:
        base = issuance(bench, namespaces[1], n, "tok", lambda: process.pid, client)
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(30)
    header(f"Issuance: {n} distinct AccessTokenRequests created at once ({CONCURRENCY} in flight)")
    row("time until all Ready", op["total"], base["total"], "s", "ratio <= 1.3")
    row("time to Ready, p50", op["p50"], base["p50"], "s")
    row("time to Ready, p99", op["p99"], base["p99"], "s")
    row("token-endpoint calls", op["calls"], base["calls"], "calls")
    row("API writes (less the bench's creates)", op["writes"], base["writes"], "writes")
    row("  of which Events", op["events"], base["events"] or None, "writes")
    row(
        "API writes per issuance without Events",
        (op["writes"] - op["events"]) / n,
        (base["writes"] - base["events"]) / n,
        "writes",
        "<= 3",
    )
    row("CPU seconds during the issuance", op["cpu"], base["cpu"], "s")
    row("RSS after", op["rss"], base["rss"], "MiB")
    row("peak RSS", op["peak"], base["peak"], "MiB")
    print(f"  operator API requests: {show_counts(op['counts'])}")
    print(f"  baseline API requests: {show_counts(base['counts'])}")
    print("  (both include the bench's own: a POST per request and its WATCH)")
    return op, base


def issuance_rounds(
    bench: Bench, operator: OperatorProcess, namespace: str, n: int, rounds: int
) -> None:
    """The issuance case `rounds` times, for the spread of its ratios on a shared machine:
    the operator's requests are deleted between rounds (so that each round starts from the
    same state), the baseline gets a fresh namespace each round (its watch would list the
    last round's requests as added)."""
    ratios: dict[str, list[float]] = {"total": [], "p50": [], "p99": [], "cpu": []}
    for round_ in range(1, rounds + 1):
        print(f"\n-- round {round_} of {rounds}, load average before: {load_average()}")
        op, base = issuance_case(bench, operator, (namespace, bench.namespace(f"base-{round_}")), n)
        print(f"  load average after: {load_average()}")
        for figure, values in ratios.items():
            values.append(op[figure] / base[figure])
        bench.delete_all_requests(namespace, timeout=max(120.0, n * 0.5))
    print(f"\nIssuance of {n}, operator / baseline over {rounds} rounds (min, median, max):")
    for figure, values in ratios.items():
        listed = ", ".join(f"{value:.2f}" for value in values)
        print(
            f"  {figure:<6} {min(values):.2f} {statistics.median(values):.2f}"
            f" {max(values):.2f}   ({listed})"
        )


def restart_case(
    bench: Bench,
    operator: OperatorProcess,
    namespace: str,
    n: int,
    start: Callable[[], OperatorProcess],
    *,
    give_up: float = 60.0,
) -> tuple[OperatorProcess, bool]:
    """Stop `operator`, start another, and time it until every request is reconciled
    (its token's expiry metric is set); the new one, and whether it got there within
    `give_up`."""
    client = bench.server.clients["client_secret_basic"]
    before = bench.snapshot(client)
    operator.stop()
    restarted = start()
    try:
        healthy = restarted.wait_healthy()
        deadline = time.monotonic() + give_up
        seen = 0
        while (seen := series_count(restarted.metrics(), EXPIRY_METRIC, namespace)) < n:
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        reconciled = time.monotonic() - restarted.started
        time.sleep(3)  # anything it would still write
        counts, calls = bench.since(before, client)
        cpu = cpu_seconds(restarted.pid)
    except BaseException:
        restarted.stop()  # nothing outlives the run
        raise
    # The baseline: the unavoidable reads of a restart, the requests and their Secrets.
    t0 = time.monotonic()
    for path in (
        REQUESTS_PATH.format(namespace=namespace),
        f"/api/v1/namespaces/{namespace}/secrets",
    ):
        bench.http.get(path).raise_for_status().json()
    listing = time.monotonic() - t0
    header(f"Restart with {n} valid tokens")
    if seen < n:
        print(f"  STUCK: {seen} of {n} requests reconciled {give_up:.0f} s after healthy")
    else:
        row("start until every request reconciled", reconciled, None, "s")
        row(
            "healthy until every request reconciled",
            reconciled - healthy,
            listing,
            "s",
            "baseline: LIST requests + Secrets",
        )
    row("token-endpoint calls", calls, None, "calls", "0")
    row("API writes", writes(counts), None, "writes", "0")
    row("CPU seconds from start (imports included)", cpu, None, "s")
    print(f"  API requests: {show_counts(counts)}")
    return restarted, seen >= n


def steady_case(bench: Bench, operator: OperatorProcess, n: int, seconds: float) -> None:
    client = bench.server.clients["client_secret_basic"]
    time.sleep(5)
    before = bench.snapshot(client)
    cpu_before = cpu_seconds(operator.pid)
    time.sleep(seconds)
    cpu = cpu_seconds(operator.pid) - cpu_before
    counts, calls = bench.since(before, client)
    rss, peak = memory_mb(operator.pid)
    header(f"Steady state: {n} managed tokens, {seconds:.0f} s idle")
    row("CPU, % of one core", 100 * cpu / seconds, None, "%", "<= 1 %")
    row("RSS", rss, None, "MiB")
    row("peak RSS since start", peak, None, "MiB")
    row("API requests per minute", sum(counts.values()) * 60 / seconds, None, "requests")
    row("token-endpoint calls", calls, None, "calls")
    print(f"  API requests: {show_counts(counts) or 'none'}")


def sharing_case(bench: Bench, namespace: str, m: int) -> None:
    client = bench.server.clients["client_secret_basic"]
    names = [f"same-{i}" for i in range(m)]
    with RequestWatch(bench.admin, namespace) as watch:
        before = bench.snapshot(client)
        start = time.monotonic()
        bench.create_requests(namespace, {n: bench.spec("idp", ["read", "write"]) for n in names})
        watch.wait_ready(names, timeout=max(120.0, m * 0.6))
        total = max(watch.ready_at.values()) - start
        time.sleep(2)
        counts, calls = bench.since(before, client)
    header(f"Sharing: {m} identical requests created at once")
    row("token-endpoint calls", calls, 1.0, "calls", "1")
    row("time until all Ready", total, None, "s")
    row("API writes per request (less the creates)", (writes(counts) - m) / m, None, "writes")
    print(f"  API requests: {show_counts(counts)}")
    bench.delete_all_requests(namespace, timeout=max(120.0, m * 0.5))


# -- the run ------------------------------------------------------------------------------


def run_all(
    setup: Setup,
    n: int,
    steady_seconds: float,
    steady_only: bool = False,
    renewal_client: str | None = None,
    issuance_only: int = 0,
) -> None:
    """Every case with N requests; with `steady_only`, N issued by the operator alone (no
    baseline) and then the steady state, the only case that needs N = 10 000; with
    `renewal_client`, only the renewal case, N requests of that client; with
    `issuance_only`, only the issuance case, that many rounds (`issuance_rounds`)."""
    print(f"load average before: {load_average()}")
    with bench_on_control_plane(setup, "bench-operator-") as (bench, _):
        workdir = bench.workdir
        renew, issue, base, share = (
            bench.namespace(x) for x in ("renew", "issue", "base", "share")
        )
        for name, test_client in RENEWAL_CLIENTS.items():
            bench.client(renew, name, bench.server.clients[test_client])
        for namespace in (issue, share):
            bench.client(namespace, "idp", bench.server.clients["client_secret_basic"])

        def start() -> OperatorProcess:
            return OperatorProcess(
                bench.admin, [renew, issue, share], workdir / "operator.log", *OPERATOR_FLAGS
            )

        operator = start()
        try:
            operator.wait_healthy()
            for namespace, name in (
                (renew, "renew"),
                (renew, "renew-10m"),
                (issue, "idp"),
                (share, "idp"),
            ):
                bench.wait_client_ready(namespace, name)
            if renewal_client is not None:
                renewal_case(bench, renew, n, renewal_client)
            elif issuance_only:
                issuance_rounds(bench, operator, issue, n, issuance_only)
            elif steady_only:
                client = bench.server.clients["client_secret_basic"]
                issued = issuance(bench, issue, n, "tok", lambda: operator.pid, client)
                print(
                    f"\n{n} requests issued: all Ready after {issued['total']:.1f} s, operator"
                    f" CPU {issued['cpu']:.1f} s, RSS {issued['rss']:.1f} MiB,"
                    f" API requests: {show_counts(issued['counts'])}"
                )
                steady_case(bench, operator, n, steady_seconds)
            else:
                renewal_case(bench, renew)
                sharing_case(bench, share, n)
                issuance_case(bench, operator, (issue, base), n)
                steady_case(bench, operator, n, steady_seconds)
                operator, _ = restart_case(bench, operator, issue, n, start)
        except BaseException:
            kept = Path(tempfile.gettempdir()) / "bench-operator-failed.log"
            kept.write_bytes((workdir / "operator.log").read_bytes())
            print(f"the operator's log is kept in {kept}")
            raise
        finally:
            operator.stop()
    print(f"\nload average after: {load_average()}")


async def run(
    setup: Setup,
    n: int = 100,
    steady_seconds: float = 60.0,
    steady_only: bool = False,
    renewal_client: str | None = None,
    issuance_only: int = 0,
) -> None:
    await asyncio.to_thread(
        run_all, setup, n, steady_seconds, steady_only, renewal_client, issuance_only
    )
