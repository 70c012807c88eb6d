"""A healthy server's renewals beside a hung server's requests (issue 22, item 3): how long
50 requests of oidc-provider take to renew, from the first renewal due until the last
new token, with 50 requests of a token endpoint that accepts and never answers present,
as a ratio to the same without them, in one run of one operator process.

``python -m bench operator-hung``. The hung requests are created first and their first
calls (30 s each) left to end, so that their retries, due continuously, compete with the
healthy renewals for the scheduler's slots. The operator runs with
``--breaker-failures=0``: the circuit breaker would stop the hung calls after their
first deadline, and this measures what holds without it, the share of the slots
(``--per-server-concurrency``) alone. Small on purpose (50 and 50, one renewal each,
about two minutes in all): the machine it was first run on has two shared cores.
``operator-hung-unshared`` is the same with every slot open to one server
(``--per-server-concurrency=16``, as before the share existed), for comparison.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass

from bench.common import Setup
from bench.operator_cases import (
    OPERATOR_FLAGS,
    Bench,
    bench_on_control_plane,
    header,
    planned_renewal,
    quantile,
    row,
)
from bench.operator_env import REQUESTS_PATH, OperatorProcess, TokenRecordWatch
from bench.operator_env import stopping as stopped_after
from tests.faults import stalled_server

EACH = 50


@dataclass(frozen=True)
class Renewals:
    span: float
    """From the first renewal planned until the last new token obtained (s)."""
    late_p50: float
    late_p99: float
    """New token obtained minus its planned renewal time (s)."""
    expired: int
    """Requests whose new token came only after the old one expired."""


def renewals(bench: Bench, namespace: str, count: int) -> Renewals:
    """`count` requests of the 20 s `renewal_ttl` client, each renewed once."""
    names = [f"ok-{i}" for i in range(count)]
    with TokenRecordWatch(bench.admin, namespace) as secrets:
        bench.create_requests(
            namespace, {n: bench.spec("renew", ["read", f"x{i}"]) for i, n in enumerate(names)}
        )
        secrets.wait(
            "first tokens", lambda: all(1 in secrets.records.get(n, {}) for n in names), 120
        )
        secrets.wait("renewals", lambda: all(2 in secrets.records.get(n, {}) for n in names), 240)
        first = {n: secrets.records[n][1] for n in names}
        obtained = {n: secrets.records[n][2][1].issued_at for n in names}
    planned = {n: planned_renewal(*first[n]) for n in names}
    late = [obtained[n] - planned[n] for n in names]
    expiry = {n: first[n][1].expires_at or float("inf") for n in names}
    bench.delete_all_requests(namespace)
    return Renewals(
        span=max(obtained.values()) - min(planned.values()),
        late_p50=statistics.median(late),
        late_p99=quantile(late, 0.99),
        expired=sum(1 for n in names if obtained[n] >= expiry[n]),
    )


def all_failed_once(bench: Bench, namespace: str, count: int) -> None:
    """Until each of the namespace's `count` requests has failed once (its first call
    ended at the deadline): from then on its retries are the scheduler's."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        items = bench.http.get(REQUESTS_PATH.format(namespace=namespace)).json()["items"]
        failed = [i for i in items if ((i.get("status") or {}).get("failedAttempts") or 0) >= 1]
        if len(failed) >= count:
            return
        time.sleep(1)
    raise TimeoutError("the hung requests did not fail in time")


def run_all(setup: Setup, count: int, flags: tuple[str, ...]) -> None:
    with bench_on_control_plane(setup, "bench-hung-") as (bench, _), stalled_server() as hung_url:
        alone, beside, hung = (bench.namespace(x) for x in ("alone", "beside", "hung"))
        for namespace in (alone, beside):
            bench.client(namespace, "renew", bench.server.clients["renewal_ttl"])
        bench.client(
            hung,
            "hung",
            bench.server.clients["client_secret_basic"],
            endpoints={"token": hung_url},
            allowInsecureHTTP=True,  # the stalled endpoint is plain http on loopback
        )
        operator = OperatorProcess(
            bench.admin,
            [alone, beside, hung],
            bench.workdir / "operator.log",
            *OPERATOR_FLAGS,
            "--breaker-failures=0",
            *flags,
        )
        with stopped_after(operator):
            operator.wait_healthy()
            for namespace, name in ((alone, "renew"), (beside, "renew"), (hung, "hung")):
                bench.wait_client_ready(namespace, name)
            without = renewals(bench, alone, count)
            specs = {f"hung-{i}": bench.spec("hung", ["read", f"h{i}"]) for i in range(count)}
            bench.create_requests(hung, specs)
            all_failed_once(bench, hung, count)
            with_hung = renewals(bench, beside, count)
    header(
        f"Renewal of {count} requests of 20 s tokens beside {count} requests of a hung"
        f" token endpoint ({' '.join(['--breaker-failures=0', *flags])}), against the same"
        " without them"
    )
    row("first renewal due until all renewed", with_hung.span, without.span, "s", "ratio ~ 1")
    row("new token obtained late, p50", with_hung.late_p50, without.late_p50, "s")
    row("new token obtained late, p99", with_hung.late_p99, without.late_p99, "s")
    row("renewed only after expiry", with_hung.expired, None, "requests", "0")


async def run(setup: Setup, count: int = EACH, flags: tuple[str, ...] = ()) -> None:
    await asyncio.to_thread(run_all, setup, count, flags)
