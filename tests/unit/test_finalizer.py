"""The revoking finalizer put on by the request's own reconcile (`controller.finalizer`):
one PATCH, the reply carried on, kopf's copy of the event updated, its echo known, and
nothing served when the PATCH fails or the request is being deleted."""

from __future__ import annotations

import copy
import time
from typing import Any, cast

import pytest

from oauth2_token_operator.controller.request.finalizer import Finalizer
from oauth2_token_operator.controller.request.reconciler import RequestReconciler
from oauth2_token_operator.controller.request.record import RequestRecords
from oauth2_token_operator.controller.request.write_guard import WriteGuard
from oauth2_token_operator.controller.shared.context import Body
from oauth2_token_operator.kube.api import Conflict, KubeApi, KubeApiError, NotFound

FINALIZER = "oauth2.token-operator.io/revoke-tokens"
KEY = ("apps", "billing")


def request(version: str = "10", **metadata: Any) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "apps", "name": "billing", "resourceVersion": version,
                     **metadata},
        "spec": {"clientRef": {"name": "idp"}},
    }  # fmt: skip


class FakeKube:
    def __init__(self, fails: Exception | None = None) -> None:
        self.fails = fails
        self.patched: list[tuple[str, Body, str]] = []

    async def add_finalizer(self, plural: str, body: Body, finalizer: str) -> dict[str, Any]:
        self.patched.append((plural, copy.deepcopy(body), finalizer))
        if self.fails is not None:
            raise self.fails
        reply = copy.deepcopy(dict(body))
        meta = reply["metadata"]
        meta["finalizers"] = [*(meta.get("finalizers") or ()), finalizer]
        meta["resourceVersion"] = str(int(meta["resourceVersion"]) + 1)
        return reply


def finalizer(kube: FakeKube) -> Finalizer:
    return Finalizer(cast(KubeApi, kube), FINALIZER)


async def test_the_finalizer_goes_on_in_one_patch_and_the_reply_is_carried_on() -> None:
    kube = FakeKube()
    adder = finalizer(kube)
    event = request(finalizers=["example.com/theirs"])
    added = await adder.add(KEY, event, watched=True)
    assert added is not None
    assert adder.on(added)
    assert added["metadata"]["resourceVersion"] == "11"
    assert [(p, f) for p, _, f in kube.patched] == [("accesstokenrequests", FINALIZER)]
    # kopf handles the same event after the handler: it finds its finalizer there.
    assert event["metadata"]["finalizers"] == ["example.com/theirs", FINALIZER]
    assert event["metadata"]["resourceVersion"] == "10", "kopf's watch reads it"


async def test_a_body_not_from_the_watch_event_is_left_as_it_is() -> None:
    indexed = request()
    added = await finalizer(FakeKube()).add(KEY, indexed, watched=False)
    assert added is not None
    assert "finalizers" not in indexed["metadata"], "an index's copy, perhaps shared"


async def test_the_patchs_own_watch_event_is_known_once() -> None:
    kube = FakeKube()
    reconciling = reconciler(kube)
    with pytest.raises(AttributeError, match="_locks"):  # past the gate
        await reconciling.reconcile(request(), watched=True)
    record = reconciling.records.of(KEY)
    assert record.finalizer_patch == 11
    assert not record.finalizer_came_back(request("10")), "an older event"
    assert record.finalizer_came_back(request("11"))
    assert not record.finalizer_came_back(request("11")), "once"
    record.finalizer_patch = 21
    assert not record.finalizer_came_back(request("22")), "a later version: not ours"
    assert not record.finalizer_came_back(request("21")), "forgotten at the later one"


@pytest.mark.parametrize(
    "failure",
    [
        Conflict("changed", status=422),
        NotFound("gone", status=404),
        KubeApiError("server error", status=500),
    ],
)
async def test_a_failed_patch_serves_nothing_and_leaves_kopfs_copy_alone(
    failure: Exception,
) -> None:
    adder = finalizer(FakeKube(fails=failure))
    event = request()
    assert await adder.add(KEY, event, watched=True) is None
    assert "finalizers" not in event["metadata"], "kopf then adds it itself"


def reconciler(kube: FakeKube) -> RequestReconciler:
    """Only the finalizer gate: a reconciler without its state, so that anything past
    the gate (the lock, the echoes, the issuance) fails the test."""
    gate = RequestReconciler.__new__(RequestReconciler)
    gate.finalizer = finalizer(kube)
    gate.records = RequestRecords(WriteGuard(time.time))
    return gate


async def test_a_request_being_deleted_gets_no_finalizer_and_nothing_else() -> None:
    kube = FakeKube()
    await reconciler(kube).reconcile(request(deletionTimestamp="2026-12-08T01:00:00Z"))
    assert kube.patched == []


async def test_nothing_is_served_when_the_finalizer_could_not_go_on() -> None:
    kube = FakeKube(fails=Conflict("changed", status=422))
    await reconciler(kube).reconcile(request(), watched=True)
    assert len(kube.patched) == 1


async def test_the_work_goes_on_with_the_patchs_reply() -> None:
    gate = reconciler(FakeKube())
    with pytest.raises(AttributeError, match="_locks"):  # past the gate, with the reply
        await gate.reconcile(request(), watched=True)
