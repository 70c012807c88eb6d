"""kopf handlers: thin adapters from watch events to the reconcilers (built and wired in
`app`), and kopf's settings.

Requests and clients are handled level-triggered (`on.event`): every event, timer or
restart re-evaluates the whole state, and kopf writes no bookkeeping of its own for
them. `on.delete` handlers give the finalizer that revokes tokens. What the reconcilers
read of the cluster comes from the operator's own cache (`kube.cache`), listed in
`on.startup`, so a restarting operator sees every token Secret before deciding anything;
a token Secret's changes come from there too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from types import FunctionType
from typing import Any, cast

import kopf
from kubernetes import client as k8s

from oauth2_token_operator.api.crd import ACCESS_TOKEN_REQUEST, GROUP, OAUTH2_CLIENT, VERSION
from oauth2_token_operator.controller.client.reconciler import ClientInUse, ClientReconciler
from oauth2_token_operator.controller.process.app import (
    FINALIZER,
    assemble,
    close,
    load_configuration,
    start_schedulers,
)
from oauth2_token_operator.controller.request.reconciler import RequestReconciler
from oauth2_token_operator.controller.shared.config import OperatorConfig
from oauth2_token_operator.controller.shared.context import OperatorContext

log = logging.getLogger(__name__)

REQUESTS = ACCESS_TOKEN_REQUEST.plural
CLIENTS = OAUTH2_CLIENT.plural
WORKER_IDLE_TIMEOUT = 1.0
"""Seconds kopf keeps an object's worker after its last event (see `configure`)."""
LIST_CHUNK = 500
"""Objects per page of kopf's initial listings, as client-go's reflectors page theirs."""


class NoDiffBase(kopf.DiffBaseStorage):
    """The operator has no create/update handlers (it reconciles on every event), so kopf
    needs no "last handled configuration": every object looks unchanged to it, and it
    writes nothing for it. Only the finalizer and the deletion handler remain kopf's.

    The essence is empty, not kopf's: kopf builds it twice per watch event (as the stored
    and as the new one) by deep-copying the whole body, managedFields and status included,
    only to find the two equal. Empty, they are equal too (no create or update cause, as
    before) at no copy; no handler of the operator reads `old`, `new` or `diff`."""

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        return kopf.BodyEssence()

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
    configuration: k8s.Configuration | None = memo.get("kube_configuration")
    if configuration is None:
        configuration = await asyncio.to_thread(load_configuration)
    built = await assemble(config, configuration, memo.pop("stop_flag", None))
    # Only these three (and what the caller put there): kopf keeps a copy of the memo
    # for every object it has seen, and a dict of up to five entries is 88 bytes
    # smaller than one of six to ten (the transport and API client are `ctx.closing`).
    memo.ctx = built.ctx
    memo.requests = built.requests
    memo.clients = built.clients
    built.heap.start()  # last: `stop` (kopf's cleanup) finds it through `memo.ctx`


def _ensure_schedulers(memo: kopf.Memo) -> None:
    """kopf gives each object a shallow copy of the memo, so nothing may be assigned to it
    here (the copy would forget it and the next object start the schedulers again: one
    more task woken by every `schedule` per object seen). The schedulers, shared by
    reference, keep their own task."""
    start_schedulers(memo.ctx)


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    ctx: OperatorContext | None = memo.get("ctx")
    if ctx is not None:
        await close(ctx)


# -- AccessTokenRequest ----------------------------------------------------------------


@kopf.on.event(GROUP, VERSION, REQUESTS)
async def request_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    _ensure_schedulers(memo)
    requests: RequestReconciler = memo.requests
    requests.records.request_observed((body.metadata.namespace or "", body.metadata.name), body)
    raw = dict(body)
    deleted = event["type"] == "DELETED"
    requests.ctx.cache.offer_request(raw, deleted=deleted)
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
    clients.ctx.cache.offer_client(raw, deleted=deleted)
    if deleted:
        clients.forget(key)
    else:
        await clients.reconcile(raw)


@kopf.on.delete(GROUP, VERSION, CLIENTS)
async def client_deleted(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    clients: ClientReconciler = memo.clients
    key = (body.metadata.namespace or "", body.metadata.name or "")
    try:
        await clients.finalize(key, dict(body))
    except ClientInUse as exc:
        raise kopf.TemporaryError(str(exc), delay=exc.delay) from None
