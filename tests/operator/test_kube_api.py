"""The operator's own API calls against a real kube-apiserver: dict in, dict out, typed
conflicts and not-found, status merge patches, and nothing read on the event loop."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from kubernetes import client as k8s

from oauth2_token_operator.api.crd import ACCESS_TOKEN_REQUEST, GROUP, VERSION
from oauth2_token_operator.api.token_secret import encode_data
from oauth2_token_operator.kube.api import Conflict, KubeApi
from oauth2_token_operator.kube.rest import PathApi
from tests.api.cases import VALID_REQUEST
from tests.cluster.harness import unique_name

pytestmark = pytest.mark.cluster


def secret_body(name: str, value: str) -> dict[str, object]:
    return {"metadata": {"name": name}, "data": encode_data({"k": value})}


async def test_secret_lifecycle_with_conflicts(
    kube_admin: k8s.ApiClient, kube_namespace: str
) -> None:
    api = KubeApi(kube_admin)
    name = unique_name("s")
    assert await api.read_secret(kube_namespace, name) is None
    created = await api.create_secret(kube_namespace, secret_body(name, "one"))
    with pytest.raises(Conflict):
        await api.create_secret(kube_namespace, secret_body(name, "again"))

    stale = dict(secret_body(name, "two"))
    stale["metadata"] = {"name": name, "resourceVersion": created["metadata"]["resourceVersion"]}
    replaced = await api.replace_secret(kube_namespace, stale)
    assert replaced["data"] == encode_data({"k": "two"})
    with pytest.raises(Conflict):  # the same resourceVersion again: someone else wrote first
        await api.replace_secret(kube_namespace, stale)

    with pytest.raises(Conflict):  # a uid precondition that does not hold
        await api.delete_secret(kube_namespace, name, uid="not-its-uid")
    assert await api.read_secret(kube_namespace, name) is not None, "uid precondition ignored"
    assert await api.delete_secret(kube_namespace, name, uid=created["metadata"]["uid"])
    assert not await api.delete_secret(kube_namespace, name)


async def test_status_merge_patch(kube_admin: k8s.ApiClient, kube_namespace: str) -> None:
    name = unique_name("atr")
    k8s.CustomObjectsApi(kube_admin).create_namespaced_custom_object(
        GROUP,
        VERSION,
        kube_namespace,
        ACCESS_TOKEN_REQUEST.plural,
        {"apiVersion": f"{GROUP}/{VERSION}", "kind": "AccessTokenRequest",
         "metadata": {"name": name}, "spec": VALID_REQUEST},
    )  # fmt: skip
    api = KubeApi(kube_admin)
    await api.patch_status(ACCESS_TOKEN_REQUEST.plural, kube_namespace, name, {"revision": 1})
    patched = await api.patch_status(
        ACCESS_TOKEN_REQUEST.plural, kube_namespace, name, {"secretName": name}
    )
    assert patched["status"] == {"revision": 1, "secretName": name}


async def test_calls_run_off_the_event_loop(kube_admin: k8s.ApiClient, kube_namespace: str) -> None:
    loop_thread = threading.get_ident()
    seen: list[int] = []
    original = PathApi.call

    def spy(self: PathApi, *args: Any, **kwargs: Any) -> Any:
        seen.append(threading.get_ident())
        return original(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(PathApi, "call", spy)
        api = KubeApi(kube_admin)
        await asyncio.gather(*(api.read_secret(kube_namespace, f"none-{i}") for i in range(3)))
    assert len(seen) == 3
    assert loop_thread not in seen
