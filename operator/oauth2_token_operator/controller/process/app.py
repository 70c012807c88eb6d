"""The operator assembled: its context, reconcilers, schedulers and informers, built at
kopf's start (`handlers.start`) and closed at its cleanup. The kopf handlers themselves
stay in `handlers`, thin."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from oauth2_token_operator.api.crd import GROUP
from oauth2_token_operator.controller.client.reconciler import ClientReconciler
from oauth2_token_operator.controller.process.health import answering_alive
from oauth2_token_operator.controller.process.heap import HeapTrimmer
from oauth2_token_operator.controller.request.reconciler import RequestReconciler
from oauth2_token_operator.controller.shared.awaited import Awaited
from oauth2_token_operator.controller.shared.config import OperatorConfig
from oauth2_token_operator.controller.shared.context import OperatorContext
from oauth2_token_operator.controller.shared.credentials import CredentialReader
from oauth2_token_operator.controller.shared.events import EventGate
from oauth2_token_operator.controller.shared.metrics import Metrics
from oauth2_token_operator.controller.shared.refresh_tokens import (
    PersistingTokenStore,
    RefreshTokenWriter,
)
from oauth2_token_operator.controller.shared.scheduler import Scheduler
from oauth2_token_operator.controller.shared.seal import load_seal_key
from oauth2_token_operator.kube.api import KubeApi
from oauth2_token_operator.kube.cache import ClusterCache
from oauth2_token_operator.manager import TokenManager, TokenManagerConfig
from oauth2_token_operator.oauth2 import OAuth2Transport

log = logging.getLogger(__name__)

FINALIZER = f"{GROUP}/revoke-tokens"


@dataclass(frozen=True)
class App:
    ctx: OperatorContext
    requests: RequestReconciler
    clients: ClientReconciler
    heap: HeapTrimmer


async def assemble(
    config: OperatorConfig, configuration: k8s.Configuration, stop_flag: object
) -> App:
    """Everything built and wired, and the informers listed (nothing is decided before
    every token Secret is known); the schedulers start with the first handler
    (`start_schedulers`), the heap trimmer with `App.heap.start`."""
    api_client = k8s.ApiClient(configuration)
    watch_client = k8s.ApiClient(configuration)  # its connections are held for minutes
    cache = ClusterCache.watching(watch_client, config.namespaces)
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
    credentials = CredentialReader(
        kube, ttl=config.credentials_cache_ttl, api_audiences=config.kubernetes_api_audiences
    )
    heap = HeapTrimmer(config.heap_trim_interval)
    events = EventGate(cache)
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
        cache=cache,
        post_event=events.post,
        seal_key=seal_key,
        closing=[
            raising(stop_flag),
            events.close,
            heap.stop,
            cache.stop,
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
    clients.revoke_all = requests.revoke_all
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
    cache.on_token_secret_change(requests.secret_event)
    async with answering_alive(config.health_port, b"starting", config.health_bind_address):
        await cache.start()  # kopf watches nothing before `on.startup` is over
    return App(ctx=ctx, requests=requests, clients=clients, heap=heap)


def start_schedulers(ctx: OperatorContext) -> None:
    """Start the schedulers (idempotent): from the first handler, not from `on.startup`,
    because tasks inherit the context they are created in, and only handlers run where
    kopf's Event posting is set up (its context variables)."""
    assert ctx.request_scheduler is not None
    assert ctx.client_scheduler is not None
    assert ctx.awaited is not None
    ctx.request_scheduler.start("renewals")
    ctx.client_scheduler.start("client-checks")
    ctx.awaited.poller.start("missing-references")


async def close(ctx: OperatorContext) -> None:
    """Stop what `assemble` started, in order."""
    if ctx.awaited is not None:
        await ctx.awaited.poller.stop()
    for scheduler in (ctx.request_scheduler, ctx.client_scheduler):
        if scheduler is not None:
            await scheduler.stop()
    await ctx.manager.aclose()
    ctx.metrics.close()
    for closing in ctx.closing:
        await closing()


def load_configuration() -> k8s.Configuration:
    """In-cluster service account first, then the kubeconfig (as kubectl does)."""
    configuration = k8s.Configuration()
    try:
        k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except k8s_config.ConfigException:
        k8s_config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    return configuration


def raising(flag: object) -> Callable[[], Awaitable[None]]:
    """Raises the stop flag `run.serve` gave kopf. Stopped by a signal kopf caught itself,
    kopf still waits on that flag, in a task of its own that nothing else ends, and only
    cancels it as "hung" 5 s later: raised at cleanup, an idle operator exits at once."""

    async def raise_flag() -> None:
        if isinstance(flag, asyncio.Event | threading.Event):
            flag.set()

    return raise_flag
