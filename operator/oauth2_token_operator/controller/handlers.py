"""kopf handlers: thin adapters from watch events to the reconcilers.

Requests and clients are handled level-triggered (`on.event`): every event, timer or
restart re-evaluates the whole state, and kopf writes no bookkeeping of its own for
them. `on.delete` handlers give the finalizer that revokes tokens. What the reconcilers
read of the cluster comes from the operator's own informers (`watches`), listed in
`on.startup`, so a restarting operator sees every token Secret before deciding anything;
a token Secret's changes come from there too.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from types import FunctionType
from typing import Any, cast

import kopf
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from oauth2_token_operator.api.annotations import REVOKE_ALL_ON_DELETE
from oauth2_token_operator.api.crd import GROUP, VERSION
from oauth2_token_operator.controller import watches as cluster
from oauth2_token_operator.controller.awaited import Awaited
from oauth2_token_operator.controller.clients import ClientReconciler
from oauth2_token_operator.controller.config import OperatorConfig
from oauth2_token_operator.controller.context import OperatorContext, first
from oauth2_token_operator.controller.credentials import CredentialReader
from oauth2_token_operator.controller.events import EventGate
from oauth2_token_operator.controller.health import answering_alive
from oauth2_token_operator.controller.heap import HeapTrimmer
from oauth2_token_operator.controller.metrics import Metrics
from oauth2_token_operator.controller.refresh_tokens import PersistingTokenStore, RefreshTokenWriter
from oauth2_token_operator.controller.requests import RequestReconciler
from oauth2_token_operator.controller.scheduler import Scheduler
from oauth2_token_operator.controller.seal import load_seal_key
from oauth2_token_operator.kube.api import KubeApi
from oauth2_token_operator.manager import TokenManager, TokenManagerConfig
from oauth2_token_operator.oauth2 import OAuth2Transport

log = logging.getLogger(__name__)

REQUESTS = cluster.REQUESTS
CLIENTS = cluster.CLIENTS
FINALIZER = f"{GROUP}/revoke-tokens"
WORKER_IDLE_TIMEOUT = 1.0
"""Seconds kopf keeps an object's worker after its last event (see `configure`)."""
LIST_CHUNK = 500
"""Objects per page of kopf's initial listings, as client-go's reflectors page theirs."""


class NoDiffBase(kopf.DiffBaseStorage):
    """The operator has no create/update handlers (it reconciles on every event), so kopf
    needs no "last handled configuration": every object looks unchanged to it, and it
    writes nothing for it. Only the finalizer and the deletion handler remain kopf's."""

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return self.build(body=body)

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


class EventHandlerSuccesses(logging.Filter):
    """Drops kopf's "Handler 'x' succeeded." of the handlers that run on every watch
    event: a line per event (two per renewal, for nothing done), which at 1000 tokens is
    noise in the log and a twentieth of the operator's CPU per renewal. Their failures,
    and every other kopf line, still come through."""

    def __init__(self, handler_names: tuple[str, ...]) -> None:
        super().__init__()
        self.lines = frozenset(f"Handler {name!r} succeeded." for name in handler_names)

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg not in self.lines


def configure(settings: kopf.OperatorSettings) -> None:
    """kopf settings that keep the operator's own API writes to what it must write."""
    settings.persistence.finalizer = FINALIZER
    # kopf's deletion progress goes where its finalizer goes (the operator writes the
    # status itself); there are no changes for it to track.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = NoDiffBase()
    # kopf lists each kind in one response by default: at a start with 10 000 tokens, the
    # requests' list alone is tens of megabytes of JSON, read and decoded at once on top of
    # every object it holds. Paged, one page at a time is read.
    settings.watching.chunk_size = LIST_CHUNK
    settings.posting.reporting_component = "oauth2-token-operator"
    settings.posting.event_name_prefix = "oauth2-token-operator-"
    settings.posting.level = logging.INFO
    settings.peering.standalone = True
    kopf_objects = logging.getLogger("kopf.objects")
    if not any(isinstance(f, EventHandlerSuccesses) for f in kopf_objects.filters):
        handlers = (request_event, client_event)
        names = tuple(cast(FunctionType, handler).__qualname__ for handler in handlers)
        kopf_objects.addFilter(EventHandlerSuccesses(names))
    # kopf keeps an object's worker (its task, queue and last raw event, managedFields
    # and all) this long after the object's last event: 5 s by default, so a burst of
    # issuances held some five seconds' worth of objects' workers at once, and the
    # process's memory stays at that high-water mark. Measured (N = 2000, operator
    # process, 30 s idle): RSS 182-186 MiB with 5 s, 166-171 MiB with 1 s. A worker
    # started again for a later event costs a task.
    settings.queueing.idle_timeout = WORKER_IDLE_TIMEOUT


@kopf.on.login()
def login(memo: kopf.Memo, **kwargs: Any) -> kopf.ConnectionInfo | None:
    """The API server and identity given by whoever started the operator (the CLI, a
    test), else in-cluster or kubeconfig credentials as the kubernetes client finds them."""
    configuration: k8s.Configuration | None = memo.get("kube_configuration")
    if configuration is None:
        return kopf.login_via_client(**kwargs)
    token = configuration.api_key.get("authorization") or configuration.api_key.get("BearerToken")
    scheme, _, value = (token or "").rpartition(" ")
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
        scheme=scheme or ("Bearer" if value else None),
        token=value or None,
    )


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **kwargs: Any) -> None:
    configure(settings)
    config: OperatorConfig = memo.get("config") or OperatorConfig()
    configuration = memo.get("kube_configuration")
    if configuration is None:
        configuration = await asyncio.to_thread(load_configuration)
    api_client = k8s.ApiClient(configuration)
    watch_client = k8s.ApiClient(configuration)  # its connections are held for minutes
    watches = cluster.build(watch_client, config.namespaces)
    kube = KubeApi(api_client)
    refresh_tokens = RefreshTokenWriter(kube)
    metrics = Metrics()
    if config.metrics_port is not None:
        metrics.serve(config.metrics_port, config.metrics_bind_address)
    egress = config.egress()
    log.info(
        "egress: connections to %s denied; issuer hosts allowed: %s; plain http %s",
        ", ".join(map(str, egress.denied)) or "no address",
        ", ".join(egress.allowed_hosts) or "all",
        "forbidden" if egress.forbid_insecure_http else "where a client allows it",
    )
    transport = OAuth2Transport(observer=metrics.observe_oauth2_call, egress=egress)
    credentials = CredentialReader(kube, ttl=config.credentials_cache_ttl)
    heap = HeapTrimmer(config.heap_trim_interval)
    events = EventGate(watches.views)
    seal_key = await load_seal_key(kube, config.seal_namespace, config.seal_name)
    ctx = OperatorContext(
        config=config,
        kube=kube,
        # Each OAuth2Client sets its own introspection.minInterval (enforced per request).
        manager=TokenManager(
            PersistingTokenStore(refresh_tokens),
            config=TokenManagerConfig(
                min_introspect_interval=0,
                unknown_expiry_lifetime=config.assumed_token_lifetime,
                circuit_failures=config.breaker_failures,
                circuit_cooldown=config.breaker_cooldown,
                circuit_max_cooldown=config.retry_max_delay,
            ),
            transport=transport,
        ),
        metrics=metrics,
        refresh_tokens=refresh_tokens,
        credentials=credentials,
        views=watches.views,
        post_event=events.post,
        seal_key=seal_key,
        closing=[
            raising(memo.pop("stop_flag", None)),
            events.close,
            heap.stop,
            watches.stop,
            transport.aclose,
            lambda: asyncio.to_thread(api_client.close),
            lambda: asyncio.to_thread(watch_client.close),
        ],
    )
    # A rotated secret, key or certificate: drop what the old configuration kept open.
    credentials.on_change = ctx.manager.forget_client
    requests = RequestReconciler(ctx, finalizer=FINALIZER)
    clients = ClientReconciler(ctx)
    requests.client_authentication = clients.authentication
    ctx.request_scheduler = Scheduler(
        requests.reconcile_key,
        concurrency=config.concurrency,
        per_group=config.per_server_concurrency,
        group_of=requests.server_of,
    )
    ctx.client_scheduler = Scheduler(clients.reconcile_key, concurrency=4)
    ctx.awaited = Awaited(
        credentials.objects,
        requests=ctx.request_scheduler,
        clients=ctx.client_scheduler,
        # Longer than any waiter goes without looking again (and so renewing it).
        ttl=2 * max(config.retry_max_delay, config.client_retry_interval),
    )
    watches.on_secret_change(requests.secret_event)
    async with answering_alive(config.health_port, b"starting", config.health_bind_address):
        await watches.start()  # kopf watches nothing before `on.startup` is over
    # Only these three (and what the caller put there): kopf keeps a copy of the memo
    # for every object it has seen, and a dict of up to five entries is 88 bytes
    # smaller than one of six to ten (the transport and API client are `ctx.closing`).
    memo.ctx = ctx
    memo.requests = requests
    memo.clients = clients
    heap.start()  # last: `stop` (kopf's cleanup) finds it through `memo.ctx`


def _ensure_schedulers(memo: kopf.Memo) -> None:
    """Start the schedulers from the first handler, not from `on.startup`: tasks inherit
    the context they are created in, and only handlers run where kopf's Event posting
    is set up (its context variables).

    kopf gives each object a shallow copy of the memo, so nothing may be assigned to it
    here (the copy would forget it and the next object start the schedulers again: one
    more task woken by every `schedule` per object seen). The schedulers, shared by
    reference, keep their own task."""
    ctx: OperatorContext = memo.ctx
    assert ctx.request_scheduler is not None
    assert ctx.client_scheduler is not None
    assert ctx.awaited is not None
    ctx.request_scheduler.start("renewals")
    ctx.client_scheduler.start("client-checks")
    ctx.awaited.poller.start("missing-references")


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    ctx: OperatorContext | None = memo.get("ctx")
    if ctx is not None:
        if ctx.awaited is not None:
            await ctx.awaited.poller.stop()
        for scheduler in (ctx.request_scheduler, ctx.client_scheduler):
            if scheduler is not None:
                await scheduler.stop()
        await ctx.manager.aclose()
        ctx.metrics.close()
        for close in ctx.closing:
            await close()


def load_configuration() -> k8s.Configuration:
    """In-cluster service account first, then the kubeconfig (as kubectl does)."""
    configuration = k8s.Configuration()
    try:
        k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except k8s_config.ConfigException:
        k8s_config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    return configuration


LEAVING_GRACE = 10.0
"""Seconds past the revocation deadline a deleted client waits for requests that are
being deleted too, before its finalizer fails (and is retried)."""
LEAVING_POLL = 0.2


def raising(flag: object) -> Callable[[], Awaitable[None]]:
    """Raises the stop flag `run.serve` gave kopf. Stopped by a signal kopf caught itself,
    kopf still waits on that flag, in a task of its own that nothing else ends, and only
    cancels it as "hung" 5 s later: raised at cleanup, an idle operator exits at once."""

    async def raise_flag() -> None:
        if isinstance(flag, asyncio.Event | threading.Event):
            flag.set()

    return raise_flag


# -- AccessTokenRequest ----------------------------------------------------------------


@kopf.on.event(GROUP, VERSION, REQUESTS)
async def request_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    _ensure_schedulers(memo)
    requests: RequestReconciler = memo.requests
    requests.requests_seen.observed((body.metadata.namespace or "", body.metadata.name), body)
    raw = dict(body)
    deleted = event["type"] == "DELETED"
    cluster.offer(requests.ctx.views.requests, raw, deleted=deleted)
    if not deleted:
        await requests.reconcile(raw, watched=True)


@kopf.on.delete(GROUP, VERSION, REQUESTS)
async def request_deleted(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    _ensure_schedulers(memo)
    requests: RequestReconciler = memo.requests
    await requests.finalize(dict(body))


# -- OAuth2Client ----------------------------------------------------------------------


@kopf.on.event(GROUP, VERSION, CLIENTS)
async def client_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    _ensure_schedulers(memo)
    clients: ClientReconciler = memo.clients
    key = (body.metadata.namespace or "", body.metadata.name or "")
    clients.seen.observed(key, body)
    raw = dict(body)
    deleted = event["type"] == "DELETED"
    cluster.offer(clients.ctx.views.clients, raw, deleted=deleted)
    if deleted:
        clients.forget(key)
    else:
        await clients.reconcile(raw)


@kopf.on.delete(GROUP, VERSION, CLIENTS)
async def client_deleted(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A client in use is not deleted until its requests are, unless asked to revoke
    their tokens first."""
    key = (body.metadata.namespace or "", body.metadata.name or "")
    ctx: OperatorContext = memo.ctx
    clients: ClientReconciler = memo.clients
    users = sorted(f"{ns}/{name}" for ns, name in clients.users(key, dict(body)))
    if not users:
        return
    if body.metadata.annotations.get(REVOKE_ALL_ON_DELETE) == "true":
        requests: RequestReconciler = memo.requests
        await requests.revoke_all(key)
        return

    def going(user: tuple[str, str]) -> bool:
        """Is the user being deleted, or in a namespace being deleted?"""
        meta = (first(ctx.views.requests, user) or {}).get("metadata") or {}
        return bool(meta.get("deletionTimestamp")) or ctx.views.terminating(user[0])

    def all_leaving() -> bool:
        return all(going(user) for user in clients.users(key, dict(body)))

    # Every user is being deleted (a namespace going, say): they need this client to
    # revoke their tokens and will be gone within the revocation deadline. Wait here
    # rather than fail: kopf logs each temporary failure at ERROR.
    deadline = ctx.clock() + ctx.config.revocation_deadline + LEAVING_GRACE
    while all_leaving() and clients.users(key, dict(body)):
        if ctx.clock() >= deadline:
            break
        await asyncio.sleep(LEAVING_POLL)
    if not clients.users(key, dict(body)):
        return
    leaving = all_leaving()
    raise kopf.TemporaryError(
        f"still used by AccessTokenRequest {', '.join(users[:10])}"
        + (f" and {len(users) - 10} more" if len(users) > 10 else "")
        + f"; delete them first, or annotate {REVOKE_ALL_ON_DELETE}=true",
        delay=1 if leaving else 15,  # all being deleted (a namespace going): soon free
    )
