"""Where the operator's memory goes per managed token: a census by structure.

``python -m bench.operator_memory N`` starts the control plane and oidc-provider, runs
the operator in this process (`tests.operator.runner.OperatorThread`, so its kopf
memories, informers and our own structures can be reached), and takes a census twice:
once healthy with its client Ready and nothing else to manage, once after N distinct
requests (the issuance case's spec shape) are all Ready and the operator has been idle
for `IDLE` seconds. Each census is taken with the operator's event loop held still
(a callback that blocks it), after `gc.collect()`.

Printed: the deep size of each root (kopf's `ResourceMemories`, each informer, the
reconciler's ledger, token store, schedulers, request records, locks, metrics...) and its
growth per token; all live Python objects by type (the growth per token of the
largest); pymalloc's and glibc malloc's bytes in use, and the process's RSS. Deep sizes
count each object once, for the first root that reaches it, in the order printed; they
never walk into modules, classes, functions, methods, frames, the event loop or the
shared memo's values (those are other roots), nor tasks' contexts (kopf's watch streams
are reachable from them).

``TRACEMALLOC=1`` also traces allocations (slower) and prints the live memory that grew,
by the line that allocated it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import ctypes
import gc
import logging
import os
import re
import sys
import tempfile
import threading
import time
import tracemalloc
import types
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import setup
from bench.operator_cases import Bench, bench_on_control_plane
from bench.operator_env import RequestWatch, load_average
from oauth2_token_operator.controller.process import heap
from oauth2_token_operator.controller.shared.config import OperatorConfig
from tests.authserver.fixtures import run_authserver
from tests.cluster.harness import KubeCluster
from tests.operator.runner import OperatorThread

IDLE = float(os.environ.get("IDLE", "10"))
"""Seconds the operator idles after the last request is Ready, before the census
(``IDLE=20``: past aiohttp's 15 s keep-alive, kopf's idle connections are closed)."""
WARM_UP = 20
"""Requests issued before the first census, so that what the first issuances create
once (lazy imports, connections, caches) is not counted per token."""

OPAQUE = (
    types.ModuleType,
    type,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    types.CodeType,
    types.FrameType,
    asyncio.AbstractEventLoop,
    contextvars.Context,
    threading.Thread,
    logging.Logger,
)
"""Never walked into nor counted: shared by everything, or a root of its own."""


def deep_size(
    root: Any, seen: set[int], boundary: set[int], by_type: Counter[str] | None = None
) -> tuple[int, int]:
    """Bytes and objects reachable from `root` not yet in `seen` (which it extends),
    stopping at `OPAQUE` objects and at the ids in `boundary`; their bytes by type
    into `by_type` if given."""
    size = count = 0
    stack = [root]
    while stack:
        obj = stack.pop()
        ident = id(obj)
        if ident in seen or ident in boundary or (obj is not root and isinstance(obj, OPAQUE)):
            continue
        seen.add(ident)
        size += sys.getsizeof(obj)
        count += 1
        if by_type is not None:
            by_type[type(obj).__qualname__] += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return size, count


def by_type() -> tuple[Counter[str], Counter[str]]:
    """Bytes of every live object by type: those the collector knows of and what they
    hold (strings, numbers and untracked containers are not tracked themselves), each
    once; not the census's own bookkeeping, nor frames (this thread's)."""
    sizes: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    seen: set[int] = set()
    stack = gc.get_objects()
    seen.update((id(seen), id(stack), id(sizes), id(counts)))
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, types.FrameType):
            continue
        seen.add(id(obj))
        name = type(obj).__qualname__
        sizes[name] += sys.getsizeof(obj)
        counts[name] += 1
        stack.extend(r for r in gc.get_referents(obj) if not gc.is_tracked(r))
    return sizes, counts


def big_bytearrays(top: int = 5) -> None:
    """The largest bytearrays and what holds them, two levels up (``DETAIL=bytearray``;
    bytearrays are not tracked by the collector: found through their holders)."""
    found: list[tuple[int, Any]] = []
    parents: dict[int, Any] = {}
    seen: set[int] = set()
    stack = gc.get_objects()
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, types.FrameType):
            continue
        seen.add(id(obj))
        for ref in gc.get_referents(obj):
            if isinstance(ref, bytearray) and len(ref) > 2**16:
                found.append((sys.getsizeof(ref), obj))
            elif isinstance(ref, dict) and not gc.is_tracked(ref):
                stack.append(ref)
            if isinstance(ref, dict):
                parents.setdefault(id(ref), obj)
    found.sort(key=lambda f: f[0], reverse=True)
    for size, holder in found[:top]:
        owner = parents.get(id(holder)) if isinstance(holder, dict) else None
        print(
            f"    bytearray of {size} B held by {type(holder).__qualname__}"
            f" of {type(owner).__qualname__ if owner is not None else '-'}: {owner!r:.200}"
        )


def detail(root: Any, boundary: set[int], top: int = 15) -> None:
    """The types a root's deep size is made of (``DETAIL=name``)."""
    sizes: Counter[str] = Counter()
    deep_size(root, set(), boundary, sizes)
    print(f"    {', '.join(f'{k} {v}' for k, v in sizes.most_common(top))}")


def pymalloc_in_use() -> tuple[int, int]:
    """Bytes in pymalloc's allocated blocks, and in its arenas (allocated blocks, free
    blocks and free pools: what pymalloc holds from the system), from
    `sys._debugmallocstats` (which writes to the C stderr)."""
    with tempfile.TemporaryFile() as out:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(out.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        text = out.read().decode()

    def figure(label: str) -> int:
        match = re.search(rf"{label}\s*=\s*([\d,]+)", text)
        return int(match.group(1).replace(",", "")) if match else 0

    return figure("# bytes in allocated blocks"), figure("Total")


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def malloc_in_use() -> tuple[int, int]:
    """glibc's bytes in use (`uordblks`, pymalloc's arenas are mmapped apart) and free in
    its heaps (`fordblks`)."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _Mallinfo2
    info = libc.mallinfo2()
    return int(info.uordblks), int(info.fordblks)


def rss() -> int:
    text = Path("/proc/self/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", text)
    return int(match.group(1)) * 1024 if match else 0


# -- the roots -----------------------------------------------------------------------------


def _kopf_memories() -> list[Any]:
    from kopf._core.reactor.inventory import ResourceMemories

    return [o for o in gc.get_objects() if isinstance(o, ResourceMemories)]


def ssl_connections() -> tuple[int, int]:
    """asyncio's SSL connections (kopf's to the API server, unbounded, kept 15 s idle;
    httpx's to the authorization server, 20 kept) and the bytes of their read buffers
    (256 KiB each, allocated at creation)."""
    from asyncio.sslproto import SSLProtocol

    protocols = [o for o in gc.get_objects() if isinstance(o, SSLProtocol)]
    return len(protocols), sum(sys.getsizeof(p.__dict__.get("_ssl_buffer", b"")) for p in protocols)


def _kopf_streams() -> list[Any]:
    """kopf's per-object event queues (workers alive within `idle_timeout`)."""
    from kopf._core.reactor.queueing import Stream

    return [o for o in gc.get_objects() if isinstance(o, Stream)]


def roots(thread: OperatorThread, loop: asyncio.AbstractEventLoop) -> list[tuple[str, Any]]:
    """(name, object) in the order their sizes are taken."""
    memo = thread.memo
    ctx = memo["ctx"]
    requests = memo["requests"]
    clients = memo["clients"]
    memories = _kopf_memories()
    items = [m._items for m in memories]
    resource_memories = [v for i in items for v in i.values()]
    return [
        *ctx.cache.parts(),
        ("ledger", ctx.ledger),
        ("token manager (store, locks)", ctx.manager),
        ("request scheduler", ctx.request_scheduler),
        ("client scheduler", ctx.client_scheduler),
        ("request records", requests.records),
        ("reconciler locks", requests._locks),
        ("reconciler background", requests._background),
        ("metrics registry", ctx.metrics),
        ("credentials", ctx.credentials),
        ("client reconciler", clients),
        ("refresh tokens", ctx.refresh_tokens),
        ("kopf memories: memo copies", [m.memo for m in resource_memories]),
        ("kopf memories: throttlers", [m.error_throttler for m in resource_memories]),
        ("kopf memories: indexing", [m.indexing_memory for m in resource_memories]),
        ("kopf memories: daemons", [m.daemons_memory for m in resource_memories]),
        ("kopf memories: records", resource_memories),
        ("kopf memories: dicts (uid keys)", items),
        ("kopf streams", _kopf_streams()),
        ("asyncio tasks", list(asyncio.all_tasks(loop))),
    ]


def frozen_sizes(thread: OperatorThread) -> str:
    """The average JSON an informer keeps per object, and its size as kept (compressed)."""
    sizes = thread.memo["ctx"].cache.kept_sizes()
    parts = [
        f"{name} {plain:.0f} B of JSON, kept as {packed:.0f} B"
        for name, (plain, packed) in sizes.items()
    ]
    return ", ".join(parts)


def boundary_of(thread: OperatorThread) -> set[int]:
    """The shared memo and what it holds: walked only as the roots above."""
    memo = thread.memo
    return {id(memo), *(id(v) for v in memo.values())}


@dataclass
class Census:
    roots: dict[str, tuple[int, int]] = field(default_factory=dict)
    types: Counter[str] = field(default_factory=Counter)
    counts: Counter[str] = field(default_factory=Counter)
    python_bytes: int = 0
    pymalloc: tuple[int, int] = (0, 0)
    ssl: tuple[int, int] = (0, 0)
    frozen: str = ""
    malloc: tuple[int, int] = (0, 0)
    rss: int = 0
    trimmed_rss: int = 0
    tasks: int = 0
    traced: tracemalloc.Snapshot | None = None


def take(thread: OperatorThread, loop: asyncio.AbstractEventLoop) -> Census:
    census = Census()
    with held_still(loop):
        gc.collect()
        seen: set[int] = set()
        boundary = boundary_of(thread)
        for name, root in roots(thread, loop):
            if name == "asyncio tasks":
                census.tasks = len(root)
            if isinstance(root, list):  # a list made here: only its items count
                size = count = 0
                for item in root:
                    s, c = deep_size(item, seen, boundary)
                    size, count = size + s, count + c
            else:
                size, count = deep_size(root, seen, boundary)
            census.roots[name] = (size, count)
            if os.environ.get("DETAIL") and os.environ["DETAIL"] in name:
                print(f"  {name}:")
                detail(root, boundary)
        del seen
        if os.environ.get("DETAIL") == "bytearray":
            big_bytearrays()
        census.types, census.counts = by_type()
        census.python_bytes = sum(census.types.values())
        census.pymalloc = pymalloc_in_use()
        census.malloc = malloc_in_use()
        census.ssl = ssl_connections()
        census.frozen = frozen_sizes(thread)
        census.rss = rss()
        heap.trim()
        census.trimmed_rss = rss()
        if tracemalloc.is_tracing():
            census.traced = tracemalloc.take_snapshot()
    return census


@contextlib.contextmanager
def held_still(loop: asyncio.AbstractEventLoop) -> Iterator[None]:
    """The operator's event loop blocked in a callback until the block ends."""
    parked, release = threading.Event(), threading.Event()

    def park() -> None:
        parked.set()
        release.wait(300)

    loop.call_soon_threadsafe(park)
    if not parked.wait(30):
        raise TimeoutError("the operator's loop did not park")
    try:
        yield
    finally:
        release.set()


# -- the run ---------------------------------------------------------------------------


def per_token(after: int, before: int, n: int) -> str:
    return f"{(after - before) / n:>9.0f}"


def report(before: Census, after: Census, n: int) -> None:
    print("\nroot (deep size, first reacher counts)     before B    after B  B/token  objs/token")
    explained = 0
    for name, (size, count) in after.roots.items():
        b_size, b_count = before.roots.get(name, (0, 0))
        explained += size - b_size
        print(
            f"  {name:<38} {b_size:>10} {size:>10} {per_token(size, b_size, n)}"
            f" {(count - b_count) / n:>8.1f}"
        )
    python = after.python_bytes - before.python_bytes
    print(f"  {'sum of roots':<38} {'':>10} {'':>10} {explained / n:>9.0f}")
    print(
        f"  {'all live Python objects':<38} {before.python_bytes:>10} {after.python_bytes:>10}"
        f" {per_token(after.python_bytes, before.python_bytes, n)}"
    )
    print(f"  {'  not reached from a root':<38} {'':>10} {'':>10} {(python - explained) / n:>9.0f}")
    print(
        f"  {'pymalloc bytes in allocated blocks':<38} {before.pymalloc[0]:>10}"
        f" {after.pymalloc[0]:>10} {per_token(after.pymalloc[0], before.pymalloc[0], n)}"
    )
    print(
        f"  {'pymalloc arenas (total)':<38} {before.pymalloc[1]:>10}"
        f" {after.pymalloc[1]:>10} {per_token(after.pymalloc[1], before.pymalloc[1], n)}"
    )
    print(
        f"  {'SSL read buffers (of the tasks above)':<38} {before.ssl[1]:>10}"
        f" {after.ssl[1]:>10} {per_token(after.ssl[1], before.ssl[1], n)}"
        f"  ({before.ssl[0]} -> {after.ssl[0]} connections)"
    )
    print(
        f"  {'glibc malloc in use (uordblks)':<38} {before.malloc[0]:>10} {after.malloc[0]:>10}"
        f" {per_token(after.malloc[0], before.malloc[0], n)}"
    )
    print(
        f"  {'glibc malloc free in heaps (fordblks)':<38} {before.malloc[1]:>10}"
        f" {after.malloc[1]:>10} {per_token(after.malloc[1], before.malloc[1], n)}"
    )
    print(f"  {'RSS':<38} {before.rss:>10} {after.rss:>10} {per_token(after.rss, before.rss, n)}")
    print(
        f"  {'RSS after malloc_trim(0)':<38} {before.trimmed_rss:>10} {after.trimmed_rss:>10}"
        f" {per_token(after.trimmed_rss, before.trimmed_rss, n)}"
    )
    print(f"  asyncio tasks: {before.tasks} before, {after.tasks} after")
    print(f"  held per object: {after.frozen or '-'}")
    print("\nlive Python objects by type (count after), growth per token, largest 25:")
    grown = Counter(after.types)
    grown.subtract(before.types)
    for name, value in grown.most_common(25):
        print(f"  {name:<40} {value / n:>9.0f}  ({after.counts[name]})")
    if before.traced is not None and after.traced is not None:
        print("\ntraced allocations alive, growth per token by line, largest 30:")
        for stat in after.traced.compare_to(before.traced, "lineno")[:30]:
            frame = stat.traceback[0]
            print(
                f"  {stat.size_diff / n:>8.0f} B {stat.count_diff / n:>6.2f} objs"
                f"  {frame.filename.split('site-packages/')[-1]}:{frame.lineno}"
            )


def main(n: int) -> None:
    logging.basicConfig(level=logging.WARNING)
    if os.environ.get("TRACEMALLOC"):
        tracemalloc.start(1)
    print(f"load average before: {load_average()}")
    with in_process_setup("bench-memory-") as (bench, cluster, namespace, config):
        thread = OperatorThread(cluster.configuration(), config).start(timeout=60)
        try:
            bench.wait_client_ready(namespace, "idp")
            ctx = thread.ctx
            assert ctx.request_scheduler is not None
            issue(bench, namespace, "warm", WARM_UP)
            loop = _loop_of(thread)
            time.sleep(IDLE)
            before = take(thread, loop)
            print(f"healthy, {WARM_UP} tokens: RSS {before.rss / 2**20:.1f} MiB")
            start = time.monotonic()
            issue(bench, namespace, "tok", n)
            print(f"{n} Ready after {time.monotonic() - start:.1f} s; load {load_average()}")
            time.sleep(IDLE)
            after = take(thread, loop)
            print(f"N={n}: RSS {after.rss / 2**20:.1f} MiB; load {load_average()}")
            report(before, after, n)
        finally:
            thread.stop()


@contextlib.contextmanager
def in_process_setup(prefix: str) -> Iterator[tuple[Bench, KubeCluster, str, OperatorConfig]]:
    """oidc-provider, the control plane, a namespace with a client `idp`, and the
    configuration of an operator for it (run in this process by the caller)."""
    with (
        run_authserver() as server,
        bench_on_control_plane(setup(server), prefix) as (bench, cluster),
    ):
        namespace = bench.namespace("memory")
        bench.client(namespace, "idp", server.clients["client_secret_basic"])
        config = OperatorConfig(
            namespaces=(namespace,),
            metrics_port=None,
            health_port=None,
            min_renewal_lead=5.0,
            revocation_deadline=5.0,
            deny_cidrs=(),  # oidc-provider listens on 127.0.0.1
        )
        yield bench, cluster, namespace, config


def issue(bench: Bench, namespace: str, prefix: str, n: int) -> None:
    """N distinct requests (the issuance case's spec shape), until all are Ready."""
    names = [f"{prefix}-{i}" for i in range(n)]
    specs = {
        name: {**bench.spec("idp", ["read", f"{prefix}{i}"]), "renewBefore": "60s"}
        for i, name in enumerate(names)
    }
    with RequestWatch(bench.admin, namespace) as watch:
        bench.create_requests(namespace, specs)
        watch.wait_ready(names, timeout=max(120.0, n * 0.6))


def _loop_of(thread: OperatorThread, timeout: float = 30.0) -> asyncio.AbstractEventLoop:
    """The operator's event loop, through the scheduler task the first handler starts."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = thread.ctx.request_scheduler._task
        if task is not None:
            loop: asyncio.AbstractEventLoop = task.get_loop()
            return loop
        time.sleep(0.1)
    raise TimeoutError("no handler ran: the schedulers did not start")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
