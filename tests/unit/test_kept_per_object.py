"""What the operator keeps per object beyond its informers: kopf's copy of the memo, how
long kopf keeps an object's worker, and how much of a listing kopf reads at once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

import kopf
import pytest

from oauth2_token_operator.controller.process import app, handlers
from oauth2_token_operator.kube.cache import ClusterCache


async def test_the_memo_kopf_copies_for_every_object_stays_small(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """kopf keeps a shallow copy of the memo per object it has seen: start adds only the
    three entries handlers read (a sixth entry makes each copy 88 bytes larger), and
    cleanup still closes what start opened. (No API server answers here: the informers'
    listing, which would wait for one, is left out.)"""
    from kubernetes import client as k8s

    from oauth2_token_operator.controller.shared.config import OperatorConfig

    started: list[bool] = []

    async def listed(self: object) -> None:
        started.append(True)

    async def seal_key(*args: object) -> bytes:
        return bytes(32)

    monkeypatch.setattr(ClusterCache, "start", listed)
    monkeypatch.setattr(app, "load_seal_key", seal_key)
    configuration = k8s.Configuration(host="https://127.0.0.1:1")
    memo = kopf.Memo(kube_configuration=configuration, config=OperatorConfig(metrics_port=None))
    await cast(Callable[..., Awaitable[None]], handlers.start)(
        settings=kopf.OperatorSettings(), memo=memo
    )
    assert started == [True]
    assert set(memo) == {"kube_configuration", "config", "ctx", "requests", "clients"}
    closed: list[str] = []
    memo.ctx.closing = [
        *(wrapped(close, str(i), closed) for i, close in enumerate(memo.ctx.closing))
    ]
    await cast(Callable[..., Awaitable[None]], handlers.stop)(memo=memo)
    # The stop flag raised, the Event gate, the heap trimmer, the informers, the
    # transport, the API client and the watches' own.
    assert closed == ["0", "1", "2", "3", "4", "5", "6"]


def wrapped(
    close: Callable[[], Awaitable[object]], name: str, closed: list[str]
) -> Callable[[], Awaitable[object]]:
    async def closing() -> object:
        closed.append(name)
        return await close()

    return closing


def test_kopf_lets_an_objects_worker_go_a_second_after_its_last_event() -> None:
    """Its default of 5 s kept five seconds' worth of a burst's workers (each with the
    object's last raw event) alive at once: the process's memory high-water mark."""
    settings = kopf.OperatorSettings()
    assert settings.queueing.idle_timeout == 5.0
    handlers.configure(settings)
    assert settings.queueing.idle_timeout == handlers.WORKER_IDLE_TIMEOUT == 1.0


def test_kopf_reads_its_initial_listings_a_page_at_a_time() -> None:
    """By default kopf lists each kind in one response: 10 000 requests are tens of MB of
    JSON read and decoded at once, on top of the objects a start holds."""
    settings = kopf.OperatorSettings()
    assert settings.watching.chunk_size is None
    handlers.configure(settings)
    assert settings.watching.chunk_size == handlers.LIST_CHUNK == 500


def test_kopf_copies_nothing_of_an_object_to_compare_it_with_itself() -> None:
    """kopf builds an object's "essence" twice per watch event (the stored one and the new
    one) to detect creations and updates, by default by deep-copying the whole body,
    managedFields and status included. The operator has no create or update handler: an
    empty essence, the same both times, gives kopf the same answer (not new: `fetch` is
    not None; unchanged: equal) without a copy."""
    settings = kopf.OperatorSettings()
    handlers.configure(settings)
    storage = settings.persistence.diffbase_storage
    raw: dict[str, Any] = {
        "apiVersion": "oauth2.token-operator.io/v1alpha1",
        "kind": "AccessTokenRequest",
        "metadata": {
            "name": "r",
            "namespace": "n",
            "labels": {"team": "a"},
            "annotations": {"note": "x"},
            "finalizers": [app.FINALIZER],
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
        },
        "spec": {"clientRef": {"name": "c"}, "scopes": ["read"]},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }
    body = kopf.Body(cast(kopf.RawBody, raw))
    stored = storage.fetch(body=body)
    new = storage.build(body=body, extra_fields=[])
    assert stored is not None
    assert stored == new == {}
