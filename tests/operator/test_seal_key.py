"""The seal key Secret on the real API server: made once by whichever replica comes
first, read back by every other, and a damaged one stops the start with a clear error
(it is never silently replaced: that would orphan every token sealed before)."""

from __future__ import annotations

import asyncio
import base64

import pytest
from kubernetes import client as k8s

from oauth2_token_operator.controller.shared.seal import SealKeyError, load_seal_key
from oauth2_token_operator.kube.api import KubeApi, KubeApiError
from tests.cluster.harness import KubeCluster, unique_name

pytestmark = pytest.mark.cluster


async def test_replicas_starting_at_once_get_one_key(
    kube_admin: k8s.ApiClient, kube_namespace: str
) -> None:
    kube = KubeApi(kube_admin)
    name = unique_name("seal")
    keys = await asyncio.gather(*(load_seal_key(kube, kube_namespace, name) for _ in range(4)))
    assert len(set(keys)) == 1
    assert len(keys[0]) == 32
    stored = k8s.CoreV1Api(kube_admin).read_namespaced_secret(name, kube_namespace).data
    assert stored is not None
    assert base64.b64decode(stored["key"]) == keys[0]


@pytest.mark.parametrize("data", [{}, {"key": base64.b64encode(b"short").decode()}])
async def test_a_damaged_key_stops_the_start(
    kube_admin: k8s.ApiClient, kube_namespace: str, data: dict[str, str]
) -> None:
    name = unique_name("seal")
    k8s.CoreV1Api(kube_admin).create_namespaced_secret(
        kube_namespace, k8s.V1Secret.model_validate({"metadata": {"name": name}, "data": data})
    )
    with pytest.raises(SealKeyError, match="delete it to have a new one made"):
        await load_seal_key(KubeApi(kube_admin), kube_namespace, name)


async def test_an_operator_refused_the_key_says_so(
    kube_cluster: KubeCluster, kube_namespace: str
) -> None:
    """Forbidden is not waited out: the start fails, naming the Secret."""
    identity = kube_cluster.service_account(unique_name("no-seal"), kube_namespace, rules=[])
    with identity.client() as api, pytest.raises(KubeApiError, match="seal") as refused:
        await load_seal_key(KubeApi(api), kube_namespace, "seal")
    assert refused.value.status == 403
