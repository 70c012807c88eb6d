"""The operator's kopf indexes: what each holds (objects without their managedFields,
keys and short values shared between objects), and that they run on the event loop.

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
        assert await index(whole, namespace="apps", name="billing", body=body) == {key: raw}
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


async def test_held_objects_share_their_keys_and_short_values() -> None:
    """Two objects decoded from two documents (as the watch does) share one copy of each
    key and each short string value once indexed, at any depth: lists, nested mappings,
    label keys; long values (a token) are kept as they are."""

    def decoded(name: str) -> kopf.Body:
        text = json.dumps(
            {
                "metadata": {"name": name, "labels": {"app.example/team": "a"}},
                "status": {"conditions": [{"lastTransitionTime": "t", "type": "Ready"}]},
                "data": {"access_token": "x" * 65},
            }
        )
        return kopf.Body(cast(kopf.RawBody, json.loads(text)))

    held = [
        next(
            iter((await index(handlers.token_requests, namespace="n", name=n, body=body)).values())
        )
        for n, body in (("a", decoded("a")), ("b", decoded("b")))
    ]

    def strings(body: dict[str, Any]) -> list[str]:
        condition = body["status"]["conditions"][0]
        return [
            *body,
            *body["metadata"],
            *body["metadata"]["labels"],
            *body["status"],
            *condition,
            *condition.values(),
            body["metadata"]["labels"]["app.example/team"],
        ]

    first, second = strings(held[0]), strings(held[1])
    assert first == second
    assert all(a is b for a, b in zip(first, second, strict=True))
    assert held[0]["status"]["conditions"] == [{"lastTransitionTime": "t", "type": "Ready"}]
    assert held[0]["data"]["access_token"] == held[1]["data"]["access_token"] == "x" * 65
    assert held[0]["data"]["access_token"] is not held[1]["data"]["access_token"]
