"""The operator's informers against a real kube-apiserver: a paged listing, then every
change through the watch, per namespace or everywhere, and the cache the reconcilers
read (`kube.cache`). The faults (410, dropped connections): the scripted API of
`tests/unit/test_informer.py`, and a real 410 in `test_apiserver_faults.py`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client as k8s

from oauth2_token_operator.api.crd import GROUP, VERSION
from oauth2_token_operator.kube import watches
from oauth2_token_operator.kube.cache import ClusterCache
from oauth2_token_operator.kube.informer import Informer
from oauth2_token_operator.kube.rest import PathApi
from tests.api.cases import VALID_REQUEST
from tests.cluster.harness import unique_name
from tests.cluster.objects import metadata
from tests.polling import wait_for

pytestmark = pytest.mark.cluster

OWNED = {"oauth2.token-operator.io/managed-by": "test"}


async def until(what: str, check: Callable[[], Any]) -> None:
    """`wait_for` in a thread, so the loop goes on applying the watch's changes."""
    await asyncio.to_thread(wait_for, what, check)


def create_secret(core: k8s.CoreV1Api, namespace: str, name: str, labels: dict[str, str]) -> str:
    body = {"metadata": {"name": name, "labels": labels}, "stringData": {"k": "v"}}
    created = core.create_namespaced_secret(namespace, k8s.V1Secret.model_validate(body))
    return str(metadata(created).resource_version)


async def test_a_namespaces_labelled_secrets_listed_then_followed(
    kube_admin: k8s.ApiClient, kube_namespace: str
) -> None:
    core = k8s.CoreV1Api(kube_admin)
    for name in ("a", "b", "c"):
        create_secret(core, kube_namespace, name, OWNED)
    create_secret(core, kube_namespace, "unlabelled", {})
    pages: list[Any] = []
    # What the operator lists with (`kube.watches.build`): the client's ApiClient
    # by path, the typed methods' keywords translated to the API's query parameters.
    list_secrets = PathApi(kube_admin).lister(
        "/api/v1/namespaces/{namespace}/secrets", namespace=kube_namespace
    )

    def counted(**params: Any) -> Any:
        if not params.get("watch"):
            pages.append(params.get("_continue"))
        return list_secrets(**params)

    changes: list[tuple[str, Any, Any]] = []
    informer = Informer(
        "Secrets",
        counted,
        key=watches.object_key,
        keep=lambda body: body["metadata"]["resourceVersion"],
        label_selector="oauth2.token-operator.io/managed-by=test",
        on_change=lambda kind, key, kept: changes.append((kind, key, kept)),
        chunk=2,
    )
    await informer.start()
    try:
        assert set(informer) == {(kube_namespace, n) for n in ("a", "b", "c")}
        assert len(pages) == 2  # three objects, two to a page
        assert pages[0] is None
        assert pages[1]

        added = create_secret(core, kube_namespace, "d", OWNED)
        patched = core.patch_namespaced_secret("a", kube_namespace, {"stringData": {"k": "w"}})
        core.delete_namespaced_secret("b", kube_namespace)
        create_secret(core, kube_namespace, "unlabelled-too", {})
        await until("three changes", lambda: len(changes) >= 3)
        await asyncio.sleep(0.5)  # and no more: the unlabelled Secret is not seen
        assert [(kind, key) for kind, key, _ in changes] == [
            ("ADDED", (kube_namespace, "d")),
            ("MODIFIED", (kube_namespace, "a")),
            ("DELETED", (kube_namespace, "b")),
        ]
        assert changes[0][2] == added
        assert changes[1][2] == metadata(patched).resource_version
        assert set(informer) == {(kube_namespace, n) for n in ("a", "c", "d")}
        assert informer[(kube_namespace, "a")] == (metadata(patched).resource_version,)
    finally:
        await informer.stop()


async def test_the_cache_the_reconcilers_read(
    kube_admin: k8s.ApiClient, kube_namespace: str
) -> None:
    """Kept without managedFields, with the kind a listing leaves out; the namespaces'
    labels; the requests grouped by client, from the listing and then from the watch."""
    core = k8s.CoreV1Api(kube_admin)
    custom = k8s.CustomObjectsApi(kube_admin)
    core.patch_namespace(kube_namespace, {"metadata": {"labels": {"team": "a"}}})

    def create_request(name: str, client: str) -> None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "AccessTokenRequest",
            "metadata": {"name": name},
            "spec": {**VALID_REQUEST, "clientRef": {"name": client}},
        }
        custom.create_namespaced_custom_object(
            GROUP, VERSION, kube_namespace, "accesstokenrequests", body
        )

    create_request("listed", "idp")
    cache = ClusterCache.watching(kube_admin, namespaces=(kube_namespace,))
    await cache.start()
    try:
        listed = cache.request((kube_namespace, "listed"))
        assert listed is not None
        assert listed["kind"] == "AccessTokenRequest"
        assert "managedFields" not in listed["metadata"]
        assert (cache.namespace_labels(kube_namespace) or {}).get("team") == "a"
        assert cache.terminating(kube_namespace) is False
        assert cache.requests_using((kube_namespace, "idp")) == ((kube_namespace, "listed"),)

        create_request("watched", "idp")
        name = unique_name("other")
        create_request(name, "other")
        await until(
            "the new requests grouped",
            lambda: (
                len(cache.requests_using((kube_namespace, "idp"))) == 2
                and cache.requests_using((kube_namespace, "other"))
            ),
        )
        custom.delete_namespaced_custom_object(
            GROUP, VERSION, kube_namespace, "accesstokenrequests", "listed"
        )
        await until(
            "the deleted request gone from its client's",
            lambda: cache.requests_using((kube_namespace, "idp")) == ((kube_namespace, "watched"),),
        )
        assert cache.request((kube_namespace, "listed")) is None
    finally:
        await cache.stop()
    assert cache.watching_threads() == 0
