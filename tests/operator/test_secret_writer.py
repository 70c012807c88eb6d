"""Writing token Secrets against the real API server: a concurrent writer's real 409 is
retried from a fresh read, a foreign Secret is never written, and a changed type is
applied by replacing the Secret (type is immutable)."""

from __future__ import annotations

import pytest
from kubernetes import client as k8s

from oauth2_token_operator.api.crd import ACCESS_TOKEN_REQUEST, GROUP, VERSION
from oauth2_token_operator.api.token_secret import Owner, Template, TokenRecord, desired_secret
from oauth2_token_operator.controller.request.secret_writer import (
    SecretConflictError,
    write_token_secret,
)
from oauth2_token_operator.kube.api import KubeApi
from tests.api.cases import VALID_REQUEST
from tests.cluster.harness import unique_name
from tests.cluster.objects import json_object

pytestmark = pytest.mark.cluster

RECORD = TokenRecord(
    issuer="https://login.example.com",
    client_id="billing",
    client="ns/idp",
    subject=None,
    requested_scopes=None,
    resources=(),
    audience=None,
    issued_at=0.0,
    expires_at=None,
    issued_for="fp",
    revision=1,
)


@pytest.fixture
def owner_uid(kube_admin: k8s.ApiClient, kube_namespace: str) -> str:
    """A real owner: the garbage collector deletes a Secret whose owner does not exist."""
    created = json_object(
        k8s.CustomObjectsApi(kube_admin).create_namespaced_custom_object(
            GROUP,
            VERSION,
            kube_namespace,
            ACCESS_TOKEN_REQUEST.plural,
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "AccessTokenRequest",
                "metadata": {"name": "req"},
                "spec": VALID_REQUEST,
            },
        )
    )
    return str(created["metadata"]["uid"])


def desired(
    namespace: str, name: str, token: str, owner_uid: str, type_: str = "Opaque"
) -> dict[str, object]:
    return desired_secret(
        name=name,
        namespace=namespace,
        owner=Owner(kind="AccessTokenRequest", name="req", uid=owner_uid),
        template=Template(type=type_),
        data={"access_token": token},
        record=RECORD,
        seal_key=bytes(32),
    )


async def test_a_concurrent_write_is_retried_from_a_fresh_read(
    kube_admin: k8s.ApiClient, kube_namespace: str, owner_uid: str
) -> None:
    kube = KubeApi(kube_admin)
    name = unique_name("s")
    first = await write_token_secret(
        kube, desired(kube_namespace, name, "one", owner_uid), None, owner_uid=owner_uid
    )
    # Someone else writes after we read: our copy's resourceVersion is stale.
    k8s.CoreV1Api(kube_admin).patch_namespaced_secret(
        name, kube_namespace, {"metadata": {"labels": {"edited-by": "someone"}}}
    )
    written = await write_token_secret(
        kube, desired(kube_namespace, name, "two", owner_uid), first, owner_uid=owner_uid
    )
    assert written["metadata"]["resourceVersion"] != first["metadata"]["resourceVersion"]
    assert written["metadata"]["labels"]["edited-by"] == "someone", "others' labels are kept"
    stored = await kube.read_secret(kube_namespace, name)
    assert stored is not None
    assert stored["data"] == desired(kube_namespace, name, "two", owner_uid)["data"]


async def test_a_foreign_secret_is_never_written(
    kube_admin: k8s.ApiClient, kube_namespace: str, owner_uid: str
) -> None:
    kube = KubeApi(kube_admin)
    name = unique_name("s")
    k8s.CoreV1Api(kube_admin).create_namespaced_secret(
        kube_namespace,
        k8s.V1Secret.model_validate({"metadata": {"name": name}, "stringData": {"mine": "x"}}),
    )
    with pytest.raises(SecretConflictError):  # the watch had not shown it: create says 409
        await write_token_secret(
            kube, desired(kube_namespace, name, "t", owner_uid), None, owner_uid=owner_uid
        )
    stored = await kube.read_secret(kube_namespace, name)
    assert stored is not None
    assert set(stored["data"]) == {"mine"}


async def test_a_new_type_replaces_the_secret(
    kube_admin: k8s.ApiClient, kube_namespace: str, owner_uid: str
) -> None:
    kube = KubeApi(kube_admin)
    name = unique_name("s")
    first = await write_token_secret(
        kube, desired(kube_namespace, name, "t", owner_uid), None, owner_uid=owner_uid
    )
    written = await write_token_secret(
        kube,
        desired(kube_namespace, name, "t", owner_uid, type_="example.com/token"),
        first,
        owner_uid=owner_uid,
    )
    assert written["type"] == "example.com/token"
    assert written["metadata"]["uid"] != first["metadata"]["uid"]
