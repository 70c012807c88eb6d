"""The walk of one AccessTokenRequest event at run time: which operator modules one
issuance enters, and how often (issue 24, "Done means").

A static walk follows every branch, so it cannot say how often ONE event enters a module.
This runs the real operator (in a thread, as tests/operator do) against a control plane of
its own and the test authorization server, creates one OAuth2Client and one request, and
traces the first `RequestReconciler.reconcile` of that request that writes its Secret, from
its call to the return of the Secret write (`KubeApi.create_secret` / `replace_secret`).

A module **entry** is the start of a function of a module under `oauth2_token_operator`
called from another module: the caller is the nearest operator frame on the stack (library
frames in between, asyncio's or httpx's, are transparent; for a task the reconcile starts,
or a worker thread it hands work to (`asyncio.to_thread`: the Kubernetes client is
synchronous), the module that started it; a callback the event loop runs has no caller,
`(outside)`, which counts as an entry). Resumptions of a suspended coroutine are not calls.
Calls within one module are not entries; properties and pydantic validators are calls.
Those tasks and threads are followed (they inherit the reconcile's context); everything
else on the event loop is not. Reconciles of the request that write no Secret (the first
events, before kopf's finalizer is on it) are left out.

    python -m bench.walk          # the sequence, then the entries per module
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dis
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

from kubernetes import client as k8s

import oauth2_token_operator
from oauth2_token_operator.controller.request.reconciler import RequestReconciler
from oauth2_token_operator.controller.shared.context import Body
from oauth2_token_operator.controller.shared.ledger import RequestKey
from oauth2_token_operator.kube.api import KubeApi
from tests.authserver.fixtures import run_authserver
from tests.cluster.fixtures import PROJECT_CRDS
from tests.cluster.harness import kube_cluster_context, unique_name
from tests.operator.conftest import Namespace
from tests.operator.runner import OperatorThread, loopback_config, running_operator

PACKAGE = Path(oauth2_token_operator.__file__).resolve().parent
SECRET_WRITES = ("create_secret", "replace_secret")

_traced: contextvars.ContextVar[Walk | None] = contextvars.ContextVar("walk", default=None)
_thread_origin: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "thread_origin", default=None
)
"""In a worker thread (`asyncio.to_thread`): the operator module that handed it the work."""


@dataclass(frozen=True)
class Entry:
    """One move into a module: from `caller` (`None`: no operator frame on the stack)."""

    caller: str | None
    module: str
    function: str


@dataclass
class Walk:
    """What one reconcile entered, in order, up to its Secret write's return."""

    entries: list[Entry] = field(default_factory=list)
    wrote_secret: bool = False
    """The walk reached the Secret write and it returned."""
    skipped: int = 0
    """Reconciles of the request that wrote no Secret (left out)."""
    task_origins: dict[int, tuple[str | None, object]] = field(default_factory=dict)
    """By a task's coroutine frame: the module that started the task (the frame is kept,
    so that its id is not reused while the walk lasts)."""

    def counts(self) -> Counter[str]:
        return Counter(entry.module for entry in self.entries)


_modules: dict[str, str | None] = {}
_starts: dict[CodeType, int] = {}


def module_of(code: CodeType) -> str | None:
    """`controller/request/reconciler.py` for a function of that module; `None` if not ours."""
    filename = code.co_filename
    if filename not in _modules:
        path = Path(filename).resolve()
        _modules[filename] = (
            str(path.relative_to(PACKAGE)) if path.is_relative_to(PACKAGE) else None
        )
    return _modules[filename]


def _first_resume(code: CodeType) -> int:
    """Where a frame of `code` stands when it starts (a coroutine's resumptions stand
    further on): its first RESUME instruction."""
    if code not in _starts:
        offsets = (i.offset for i in dis.get_instructions(code) if i.opname == "RESUME")
        _starts[code] = next(offsets, 0)
    return _starts[code]


def nearest_module(frame: FrameType | None) -> str | None:
    """The module of the nearest operator frame from `frame` down the stack."""
    while frame is not None:
        module = module_of(frame.f_code)
        if module is not None:
            return module
        frame = frame.f_back
    return None


def _caller(walk: Walk, frame: FrameType) -> str | None:
    """The nearest operator frame below `frame`; on a stack with none (a task's, a worker
    thread's), the module that started the task or handed the thread its work."""
    found = nearest_module(frame.f_back)
    if found is not None:
        return found
    back: FrameType | None = frame
    while back is not None:
        origin = walk.task_origins.get(id(back))
        if origin is not None:
            return origin[0]
        back = back.f_back
    return _thread_origin.get()


def _profile(frame: FrameType, event: str, arg: object) -> None:
    walk = _traced.get()
    if walk is None or walk.wrote_secret or event != "call":
        return
    code = frame.f_code
    module = module_of(code)
    if module is None or frame.f_lasti > _first_resume(code):
        return  # not ours, or a coroutine resumed
    caller = _caller(walk, frame)
    if caller != module:
        walk.entries.append(Entry(caller, module, code.co_qualname))


@contextlib.contextmanager
def tracing(requests: RequestReconciler, key: RequestKey) -> Iterator[Walk]:
    """Trace the first reconcile of request `key` that writes its Secret (see the module
    docstring) while in the block. `sys.setprofile` is per thread: it is set in the
    operator's thread by the reconcile itself, for its own duration."""
    walk = Walk()
    busy = False
    reconcile = requests.reconcile
    writes = {name: getattr(KubeApi, name) for name in SECRET_WRITES}

    async def traced_reconcile(body: Body, *, watched: bool = False) -> None:
        nonlocal busy
        meta = body.get("metadata", {})
        if busy or walk.wrote_secret or (meta.get("namespace"), meta.get("name")) != key:
            await reconcile(body, watched=watched)
            return
        busy = True
        token = _traced.set(walk)
        before = len(walk.entries)
        loop = asyncio.get_running_loop()
        factory = loop.get_task_factory()
        loop.set_task_factory(_noting_origins(factory))
        sys.setprofile(_profile)
        try:
            await reconcile(body, watched=watched)
        finally:
            sys.setprofile(None)
            loop.set_task_factory(factory)
            _traced.reset(token)
            busy = False
            if not walk.wrote_secret:
                del walk.entries[before:]
                walk.skipped += 1

    def noting(write: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def secret_write(*args: Any, **kwargs: Any) -> Any:
            written = await write(*args, **kwargs)
            if _traced.get() is walk:
                walk.wrote_secret = True  # the walk ends here
            return written

        return secret_write

    requests.reconcile = traced_reconcile  # type: ignore[method-assign]
    for name, write in writes.items():
        setattr(KubeApi, name, noting(write))
    to_thread = asyncio.to_thread
    asyncio.to_thread = _profiled_in_thread(to_thread)  # type: ignore[assignment]
    try:
        yield walk
    finally:
        del requests.reconcile  # the class's again
        for name, write in writes.items():
            setattr(KubeApi, name, write)
        asyncio.to_thread = to_thread


TaskFactory = Callable[..., "asyncio.Future[Any]"]


def _noting_origins(factory: TaskFactory | None) -> TaskFactory:
    """A task factory that notes which module starts each task of the walk."""

    def create(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Future[Any]:
        walk = _traced.get()
        frame = getattr(coro, "cr_frame", None)
        if walk is not None and frame is not None:
            walk.task_origins[id(frame)] = (nearest_module(sys._getframe(1)), frame)
        if factory is not None:
            return factory(loop, coro, **kwargs)
        return asyncio.Task(coro, loop=loop, **kwargs)

    return create


def _profiled_in_thread(to_thread: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """`asyncio.to_thread` that, for the walk, traces the worker thread too (the
    Kubernetes client is synchronous: `kube.api` runs each call in a thread)."""

    async def profiled_to_thread(func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        if _traced.get() is None:
            return await to_thread(func, *args, **kwargs)
        origin = nearest_module(sys._getframe(1))

        def profiled(*args: Any, **kwargs: Any) -> Any:
            _thread_origin.set(origin)  # in the thread's copy of the context only
            sys.setprofile(_profile)
            try:
                return func(*args, **kwargs)
            finally:
                sys.setprofile(None)

        return await to_thread(profiled, *args, **kwargs)

    return profiled_to_thread


def report(walk: Walk) -> str:
    """The sequence of entries, then the count per module (most first)."""
    lines = ["The walk (caller -> module.function):"]
    lines += [
        f"{n:3d}  {e.caller or '(outside)'} -> {e.module}:{e.function}"
        for n, e in enumerate(walk.entries, 1)
    ]
    lines.append(f"Entries per module ({len(walk.entries)} in all, reached the Secret write:"
                 f" {walk.wrote_secret}; reconciles without a Secret write left out:"
                 f" {walk.skipped}):")  # fmt: skip
    counts = walk.counts()
    lines += [
        f"{n:3d}  {module}" for module, n in sorted(counts.items(), key=lambda c: (-c[1], c[0]))
    ]
    return "\n".join(lines)


def walk_one_issuance(operator: OperatorThread, ns: Namespace, name: str = "walk") -> Walk:
    """Create OAuth2Client `idp` (Ready first) and request `name` in `ns`, and trace the
    request's issuance until its Secret write returns."""
    ns.client("idp", ns.authserver.clients["client_secret_basic"])
    ns.wait_ready("idp", plural="oauth2clients")
    with tracing(operator.memo.requests, (ns.name, name)) as walk:
        ns.request(name, "idp")
        ns.wait_ready(name)
    return walk


def main() -> None:
    with (
        run_authserver() as server,
        kube_cluster_context(
            crds=sorted(PROJECT_CRDS.glob("*.yaml")), controller_manager=False
        ) as cluster,
        running_operator(
            cluster.configuration(), loopback_config(metrics_port=None, health_port=None)
        ) as operator,
    ):
        api = k8s.ApiClient(cluster.configuration())
        name = unique_name("walk")
        k8s.CoreV1Api(api).create_namespace(
            k8s.V1Namespace.model_validate({"metadata": {"name": name}})
        )
        walk = walk_one_issuance(operator, Namespace(api, name, server))
    print(report(walk))


if __name__ == "__main__":
    main()
