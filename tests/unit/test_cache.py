"""The cluster cache (`kube.cache`) and what its informers keep of each object
(`kube.watches`): no managedFields, compressed compact JSON that each read decodes into a
dict of the caller's own; the requests grouped by the client they use; namespaces."""

from __future__ import annotations

import json
from typing import Any

from oauth2_token_operator.controller.request.values import Request
from oauth2_token_operator.kube.cache import ClusterCache
from oauth2_token_operator.kube.freezing import freeze, thaw
from oauth2_token_operator.kube.watches import (
    LAST_APPLIED,
    ClientUsers,
    client_of,
    object_key,
    stored_form,
)


def test_what_an_informer_keeps_of_an_object() -> None:
    raw: dict[str, Any] = {
        "metadata": {"namespace": "apps", "name": "billing", "labels": {"team": "a"}},
        "spec": {"clientRef": {"name": "idp"}},
    }
    managed = [{"manager": "kubectl", "operation": "Update", "fieldsV1": {"f:spec": {}}}]
    body = {**raw, "metadata": {**raw["metadata"], "managedFields": managed}}
    held = stored_form(body)
    assert isinstance(held, bytes)  # frozen: one object, not twenty
    assert ClusterCache.of(requests=[body]).request(("apps", "billing")) == raw
    assert body["metadata"]["managedFields"] == managed  # the caller's object is its own


def test_the_client_a_request_uses() -> None:
    request = {"metadata": {"namespace": "apps", "name": "billing"}, "spec": {}}
    assert client_of({**request, "spec": {"clientRef": {"name": "idp"}}}) == ("apps", "idp")
    elsewhere = {"clientRef": {"name": "idp", "namespace": "shared"}}
    assert client_of({**request, "spec": elsewhere}) == ("shared", "idp")


def test_requests_grouped_by_client_follow_their_changes() -> None:
    """In the order they came: a client's change pokes its requests in that order."""

    def request(name: str, client: str) -> bytes:
        return stored_form(
            {
                "metadata": {"namespace": "apps", "name": name},
                "spec": {"clientRef": {"name": client}},
            }
        )

    users = ClientUsers()
    users.fill({("apps", "a"): (request("a", "idp"),), ("apps", "b"): (request("b", "idp"),)})
    assert dict(users) == {("apps", "idp"): (("apps", "a"), ("apps", "b"))}
    users.changed("MODIFIED", ("apps", "a"), request("a", "other"))
    assert dict(users) == {("apps", "idp"): (("apps", "b"),), ("apps", "other"): (("apps", "a"),)}
    users.changed("DELETED", ("apps", "b"), request("b", "idp"))
    assert dict(users) == {("apps", "other"): (("apps", "a"),)}
    assert users.get(("apps", "idp")) is None
    users.changed("ADDED", ("apps", "c"), request("c", "other"))
    users.changed("MODIFIED", ("apps", "a"), request("a", "other"))  # the same client: in place
    assert users[("apps", "other")] == (("apps", "a"), ("apps", "c"))


def test_each_read_of_a_frozen_object_is_a_copy_of_its_own() -> None:
    """A reconcile may change the body it was given (or keep it): the index must not
    change with it."""
    raw: dict[str, Any] = {
        "metadata": {"namespace": "n", "name": "a"},
        "status": {"conditions": []},
    }
    cache = ClusterCache.of(requests=[raw], clients=[raw], token_secrets=[raw])
    for read_one in (cache.request, cache.client, cache.token_secret):
        read = read_one(("n", "a"))
        assert read == raw
        assert read is not None
        read["status"]["conditions"].append({"type": "Ready"})
        assert read_one(("n", "a")) == raw
        assert read_one(("n", "a")) is not read_one(("n", "a"))
        assert read_one(("n", "missing")) is None


def test_kubectls_last_applied_copy_is_dropped_except_from_secrets() -> None:
    """Requests and clients are never written back from the index: kubectl's copy of
    their spec is not kept. A Secret's annotations are written back: it stays."""
    annotations = {LAST_APPLIED: '{"spec": "x"}', "team": "a"}
    raw = {"metadata": {"namespace": "n", "name": "a", "annotations": annotations}}
    assert held_annotations(stored_form(raw)) == {"team": "a"}
    assert held_annotations(stored_form(raw, keep_last_applied=True)) == annotations
    assert raw["metadata"]["annotations"] == annotations


def held_annotations(held: bytes) -> Any:
    """The annotations of a kept object, as the cache reads them."""
    return thaw(held)["metadata"]["annotations"]


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
    assert thaw(frozen) == body


def test_a_requests_key_is_one_copy_however_often_its_body_is_read() -> None:
    """The ledger, the scheduler and the metrics keep a request's key from bodies decoded
    anew on each read: its strings are interned, not kept once per structure."""
    cache = ClusterCache.of(
        requests=[{"metadata": {"namespace": "apps", "name": "billing", "uid": "u"}}]
    )
    one, other = (Request.of(cache.request(("apps", "billing")) or {}) for _ in range(2))
    assert one.key == other.key == ("apps", "billing")
    assert one.name is other.name
    assert one.namespace is other.namespace


def test_keys_share_one_copy_of_each_name_however_often_decoded() -> None:
    """Every event is decoded anew: the names keying the informers and the grouping by
    client are one copy each, whichever body they came from."""
    text = json.dumps(
        {
            "metadata": {"namespace": "billing", "name": "reader"},
            "spec": {"clientRef": {"name": "idp"}},
        }
    )
    first, second = json.loads(text), json.loads(text)
    assert first["metadata"]["name"] is not second["metadata"]["name"]
    for a, b in zip(object_key(first), object_key(second), strict=True):
        assert a is b
    for a, b in zip(client_of(first), client_of(second), strict=True):
        assert a is b
    assert client_of(first)[0] is object_key(second)[0]


def request(namespace: str, name: str, client: str, **metadata: Any) -> dict[str, Any]:
    return {
        "metadata": {"namespace": namespace, "name": name, **metadata},
        "spec": {"clientRef": {"name": client}},
    }


def test_the_requests_using_a_client_follow_kopfs_events() -> None:
    """kopf's copy of an event, offered before its handler runs, regroups the requests
    at once; an older copy than the one held changes nothing."""
    cache = ClusterCache.of(
        requests=[
            request("apps", "a", "idp", resourceVersion="5"),
            request("apps", "b", "idp", resourceVersion="6"),
        ]
    )
    assert cache.requests_using(("apps", "idp")) == (("apps", "a"), ("apps", "b"))
    assert cache.requests_using(("apps", "other")) == ()
    cache.offer_request(request("apps", "a", "other", resourceVersion="7"))
    assert cache.requests_using(("apps", "idp")) == (("apps", "b"),)
    assert cache.requests_using(("apps", "other")) == (("apps", "a"),)
    cache.offer_request(request("apps", "a", "idp", resourceVersion="4"))  # older: ignored
    assert cache.requests_using(("apps", "other")) == (("apps", "a"),)
    cache.offer_request(request("apps", "b", "idp", resourceVersion="8"), deleted=True)
    assert cache.request(("apps", "b")) is None
    assert cache.requests_using(("apps", "idp")) == ()


def test_a_client_offered_or_deleted_is_read_at_once() -> None:
    client = {"metadata": {"namespace": "apps", "name": "idp", "resourceVersion": "3"}}
    cache = ClusterCache.of()
    assert cache.client(("apps", "idp")) is None
    cache.offer_client(client)
    assert cache.client(("apps", "idp")) == client
    gone = {"metadata": {**client["metadata"], "resourceVersion": "4"}}
    cache.offer_client(gone, deleted=True)
    assert cache.client(("apps", "idp")) is None
    cache.offer_client(client)  # a late copy from the other watch does not bring it back
    assert cache.client(("apps", "idp")) is None


def test_a_namespaces_labels_and_whether_it_is_going() -> None:
    cache = ClusterCache.of(
        namespaces=[
            {"metadata": {"name": "apps", "labels": {"team": "a"}}},
            {"metadata": {"name": "old"}, "status": {"phase": "Terminating"}},
            {"metadata": {"name": "gone", "deletionTimestamp": "2026-01-01T00:00:00Z"}},
        ]
    )
    assert cache.namespace_labels("apps") == {"team": "a"}
    assert cache.namespace_labels("unknown") is None
    assert cache.namespace_labels("old") == {}
    assert [cache.terminating(n) for n in ("apps", "old", "gone", "unknown")] == [
        False,
        True,
        True,
        False,
    ]
