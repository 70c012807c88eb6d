"""Calls by path through the official client's ApiClient (`kube.rest`), against a real
kube-apiserver: the query parameters reach the server under their API names, path
parameters are escaped, and a refusal is the typed client's `ApiException`."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from oauth2_token_operator.api.crd import ACCESS_TOKEN_REQUEST, GROUP, VERSION
from oauth2_token_operator.api.token_secret import encode_data
from oauth2_token_operator.kube.api import FIELD_MANAGER, SECRET, SECRETS, KubeApi
from oauth2_token_operator.kube.rest import PathApi
from tests.api.cases import VALID_REQUEST
from tests.cluster.harness import unique_name

pytestmark = pytest.mark.cluster


def managers(obj: dict[str, Any]) -> set[str]:
    return {entry["manager"] for entry in obj["metadata"].get("managedFields") or ()}


def create_secret(paths: PathApi, namespace: str, name: str, labels: dict[str, str]) -> None:
    body = {"metadata": {"name": name, "labels": labels}}
    paths.call("POST", SECRETS, path={"namespace": namespace}, body=body).read()


async def test_every_write_is_the_operators_field_manager(
    kube_admin: k8s.ApiClient, kube_namespace: str
) -> None:
    """`field_manager` must reach the server as `fieldManager`: left out, the writes
    would be recorded under the client's user agent."""
    api = KubeApi(kube_admin)
    name = unique_name("s")
    created = await api.create_secret(
        kube_namespace, {"metadata": {"name": name}, "data": encode_data({"k": "v"})}
    )
    replaced = await api.replace_secret(
        kube_namespace,
        {"metadata": {"name": name, "labels": {"a": "b"}}, "data": encode_data({"k": "w"})},
    )
    k8s.CustomObjectsApi(kube_admin).create_namespaced_custom_object(
        GROUP, VERSION, kube_namespace, ACCESS_TOKEN_REQUEST.plural,
        {"apiVersion": f"{GROUP}/{VERSION}", "kind": "AccessTokenRequest",
         "metadata": {"name": name}, "spec": VALID_REQUEST},
    )  # fmt: skip
    patched = await api.patch_status(
        ACCESS_TOKEN_REQUEST.plural, kube_namespace, name, {"revision": 1}
    )
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name},
        "spec": {"holderIdentity": "me", "leaseDurationSeconds": 15},
    }
    created_lease = await api.create_lease(kube_namespace, lease)
    replaced_lease = await api.replace_lease(
        kube_namespace, {**lease, "metadata": created_lease["metadata"]}
    )
    for written in (created, replaced, created_lease, replaced_lease):
        assert managers(written) == {FIELD_MANAGER}, written["metadata"]["name"]
    assert FIELD_MANAGER in managers(patched)  # the create was the test's own


def test_a_listing_pages_and_selects_by_label(
    kube_admin: k8s.ApiClient, kube_namespace: str
) -> None:
    paths = PathApi(kube_admin)
    for name, labels in (("a", {"x": "1"}), ("b", {"x": "1"}), ("c", {"x": "1"}), ("d", {})):
        create_secret(paths, kube_namespace, name, labels)
    lister = paths.lister("/api/v1/namespaces/{namespace}/secrets", namespace=kube_namespace)
    first = json.loads(lister(label_selector="x=1", limit=2).data)
    assert [item["metadata"]["name"] for item in first["items"]] == ["a", "b"]
    token = first["metadata"]["continue"]
    rest = json.loads(lister(label_selector="x=1", limit=2, _continue=token).data)
    assert [item["metadata"]["name"] for item in rest["items"]] == ["c"]
    assert not rest["metadata"].get("continue")


def test_a_watch_streams_from_the_version_given(
    kube_admin: k8s.ApiClient, kube_namespace: str
) -> None:
    paths = PathApi(kube_admin)
    lister = paths.lister("/api/v1/namespaces/{namespace}/secrets", namespace=kube_namespace)
    version = json.loads(lister().data)["metadata"]["resourceVersion"]
    create_secret(paths, kube_namespace, "after", {})
    response = lister(
        watch=True, resource_version=version, timeout_seconds=1, _request_timeout=(5, 10)
    )
    try:
        events = [json.loads(line) for line in response.read().splitlines() if line]
    finally:
        response.release_conn()
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "after")]


def test_path_parameters_are_escaped_and_refusals_raise(
    kube_admin: k8s.ApiClient, kube_namespace: str
) -> None:
    """A name is one path segment however it is spelled: `../secrets` reads no list."""
    paths = PathApi(kube_admin)
    with pytest.raises(ApiException) as refused:
        paths.call("GET", SECRET, path={"namespace": kube_namespace, "name": "../secrets"})
    assert refused.value.status in (400, 404)
    with pytest.raises(ApiException) as missing:
        paths.call("GET", SECRET, path={"namespace": kube_namespace, "name": "none"})
    assert missing.value.status == 404
    assert json.loads(missing.value.body or "{}").get("reason") == "NotFound"
