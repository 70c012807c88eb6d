"""The operator's kopf indexes: what each holds (objects without their managedFields, as
compressed compact JSON that `first` decodes), and that they run on the event loop.

kopf runs a plain function in its thread pool (a thread hop, a context copy and a task
per object and event), a coroutine on the loop; these do no I/O, so they are coroutines.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable
from typing import Any, cast

import kopf

from oauth2_token_operator.controller import handlers
from oauth2_token_operator.controller.context import first, freeze
from oauth2_token_operator.controller.request_types import Request

INDEXES: tuple[object, ...] = (
    handlers.token_secrets,
    handlers.oauth2_clients,
    handlers.token_requests,
    handlers.requests_by_client,
    handlers.namespace_labels,
)


async def index(fn: object, **kwargs: Any) -> Any:
    """Call an index function as kopf does (its decorator types it as kopf's protocol)."""
    return await cast(Callable[..., Awaitable[Any]], fn)(**kwargs)


def test_every_index_runs_on_the_event_loop() -> None:
    assert [f for f in INDEXES if not inspect.iscoroutinefunction(f)] == []


async def test_what_the_indexes_hold() -> None:
    raw: dict[str, Any] = {
        "metadata": {"namespace": "apps", "name": "billing", "labels": {"team": "a"}},
        "spec": {"clientRef": {"name": "idp"}},
    }
    managed = [{"manager": "kubectl", "operation": "Update", "fieldsV1": {"f:spec": {}}}]
    body = kopf.Body(
        cast(kopf.RawBody, {**raw, "metadata": {**raw["metadata"], "managedFields": managed}})
    )
    key = ("apps", "billing")
    for whole in (handlers.token_requests, handlers.token_secrets, handlers.oauth2_clients):
        held = await index(whole, namespace="apps", name="billing", body=body)
        assert list(held) == [key]
        assert isinstance(held[key], bytes)  # frozen: one object, not twenty
        assert first({key: [held[key]]}, key) == raw
    by_client = await index(
        handlers.requests_by_client, namespace="apps", name="billing", spec=body.spec
    )
    assert by_client == {("apps", "idp"): key}
    elsewhere_raw = {**raw, "spec": {"clientRef": {"name": "idp", "namespace": "shared"}}}
    elsewhere = kopf.Body(cast(kopf.RawBody, elsewhere_raw))
    by_client = await index(
        handlers.requests_by_client, namespace="apps", name="billing", spec=elsewhere.spec
    )
    assert by_client == {("shared", "idp"): key}
    labels = await index(handlers.namespace_labels, name="apps", labels=body.metadata.labels)
    assert labels == {"apps": {"team": "a"}}


async def test_kopfs_own_copy_of_an_indexed_object_loses_its_managed_fields() -> None:
    """kopf holds the object it indexes in the object's worker until its handlers have
    run: at a start, every listed object at once. The index strips the managedFields from
    that copy too (kopf never reads them), and keeps everything else as it was."""
    for kind in (handlers.token_requests, handlers.token_secrets, handlers.oauth2_clients):
        managed = [{"manager": "m", "operation": "Update", "fieldsV1": {"f:data": {}}}]
        metadata = {"namespace": "n", "name": "a", "uid": "u", "managedFields": managed}
        raw: dict[str, Any] = {"metadata": metadata, "data": {"token": "dG9rZW4="}}
        body = kopf.Body(cast(kopf.RawBody, raw))
        await index(kind, namespace="n", name="a", body=body)
        assert raw == {
            "metadata": {"namespace": "n", "name": "a", "uid": "u"},
            "data": {"token": "dG9rZW4="},
        }
        assert body.metadata.uid == "u"


async def test_each_read_of_a_frozen_object_is_a_copy_of_its_own() -> None:
    """A reconcile may change the body it was given (or keep it): the index must not
    change with it."""
    raw = {"metadata": {"namespace": "n", "name": "a"}, "status": {"conditions": []}}
    held = await index(
        handlers.token_requests, namespace="n", name="a", body=kopf.Body(cast(kopf.RawBody, raw))
    )
    view = {key: [value] for key, value in held.items()}
    read = first(view, ("n", "a"))
    assert read == raw
    read["status"]["conditions"].append({"type": "Ready"})
    assert first(view, ("n", "a")) == raw
    assert first(view, ("n", "a")) is not first(view, ("n", "a"))
    assert first({("n", "b"): [("n", "b")]}, ("n", "b")) == ("n", "b")  # others as they are
    assert first(view, ("n", "missing")) is None


async def test_kubectls_last_applied_copy_is_dropped_except_from_secrets() -> None:
    """Requests and clients are never written back from the index: kubectl's copy of
    their spec is not kept. A Secret's annotations are written back: it stays."""
    annotations = {handlers.LAST_APPLIED: '{"spec": "x"}', "team": "a"}
    raw = {"metadata": {"namespace": "n", "name": "a", "annotations": annotations}}
    body = kopf.Body(cast(kopf.RawBody, raw))
    for kind in (handlers.token_requests, handlers.oauth2_clients):
        held = await index(kind, namespace="n", name="a", body=body)
        assert held_annotations(held) == {"team": "a"}
    held = await index(handlers.token_secrets, namespace="n", name="a", body=body)
    assert held_annotations(held) == annotations


def held_annotations(held: dict[Any, Any]) -> Any:
    """The annotations of the one object an index call returned, as `first` reads it."""
    (key,) = held
    return (first({key: [held[key]]}, key) or {})["metadata"]["annotations"]


def test_a_frozen_object_is_kept_compressed() -> None:
    """Half the bytes of its compact JSON for a typical request (the Secret's random
    token compresses less); the structure repeats in every object."""
    body = {
        "apiVersion": "oauth2.token-operator.io/v1alpha1",
        "kind": "AccessTokenRequest",
        "metadata": {"namespace": "apps", "name": "billing", "uid": "u", "generation": 1},
        "spec": {"clientRef": {"name": "idp"}, "scopes": ["read", "write"]},
        "status": {
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "Issued", "message": "issued"},
                {"type": "Renewing", "status": "False", "reason": "Issued", "message": "issued"},
            ]
        },
    }
    frozen = freeze(body)
    assert len(frozen) < 0.8 * len(json.dumps(body, separators=(",", ":")))
    assert first({("apps", "billing"): [frozen]}, ("apps", "billing")) == body


def test_a_requests_key_is_one_copy_however_often_its_body_is_read() -> None:
    """The ledger, the scheduler and the metrics keep a request's key from bodies decoded
    anew on each read: its strings are interned, not kept once per structure."""
    frozen = freeze({"metadata": {"namespace": "apps", "name": "billing", "uid": "u"}})
    view = {("apps", "billing"): [frozen]}
    one, other = (Request.of(first(view, ("apps", "billing")) or {}) for _ in range(2))
    assert one.key == other.key == ("apps", "billing")
    assert one.name is other.name
    assert one.namespace is other.namespace
