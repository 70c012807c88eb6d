"""The test control plane behaves like a real cluster, and leaves nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from tests.cluster.harness import (
    ControlPlane,
    KubeCluster,
    cache_dirs,
    processes_using,
    sweep_stale_workdirs,
    unique_name,
)
from tests.cluster.objects import json_object, metadata

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
GROUP = "harness.oauth2-token-operator.test"
VERSION = "v1"
PLURAL = "widgets"

WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": PLURAL, "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "properties": {
                                    "size": {"type": "integer", "minimum": 1},
                                    "maxSize": {"type": "integer"},
                                },
                                "x-kubernetes-validations": [
                                    {
                                        "rule": "!has(self.maxSize) || self.size <= self.maxSize",
                                        "message": "size must not exceed maxSize",
                                    }
                                ],
                            },
                            "status": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            },
                        },
                    }
                },
            }
        ],
    },
}


def wait_for(what: str, check: Callable[[], bool], timeout: float = 60.0) -> float:
    """Poll until check() is true; return the seconds it took."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)
    return time.monotonic() - start


def gone(read: Callable[[], object]) -> Callable[[], bool]:
    def check() -> bool:
        try:
            read()
        except ApiException as exc:
            if exc.status == 404:
                return True
            raise
        return False

    return check


def widget(name: str, size: object = 1, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": {"size": size, **spec},
    }


@pytest.fixture(scope="module")
def widgets(kube_cluster: KubeCluster, kube_admin: k8s.ApiClient) -> Iterator[k8s.CustomObjectsApi]:
    """The Widget CRD, applied and Established."""
    (name,) = kube_cluster.apply_crds([WIDGET_CRD])
    yield k8s.CustomObjectsApi(kube_admin)
    k8s.ApiextensionsV1Api(kube_admin).delete_custom_resource_definition(name)


def test_version_is_the_built_release(kube_cluster: KubeCluster) -> None:
    info = kube_cluster.version()
    assert info["git_version"].startswith("v1."), info
    if isinstance(kube_cluster, ControlPlane) and kube_cluster.binaries.source == "cache":
        kube_dir = cache_dirs()[1]
        assert kube_dir.name == f"kubernetes-{info['git_version']}"


def test_crd_schema_and_cel_validation(widgets: k8s.CustomObjectsApi, kube_namespace: str) -> None:
    created = json_object(
        widgets.create_namespaced_custom_object(
            GROUP, VERSION, kube_namespace, PLURAL, widget("ok", size=2, maxSize=3)
        )
    )
    assert created["spec"] == {"size": 2, "maxSize": 3}

    with pytest.raises(ApiException) as wrong_type:
        widgets.create_namespaced_custom_object(
            GROUP, VERSION, kube_namespace, PLURAL, widget("bad-type", size="two")
        )
    assert wrong_type.value.status == 422
    assert "spec.size" in str(wrong_type.value.body)

    with pytest.raises(ApiException) as cel:
        widgets.create_namespaced_custom_object(
            GROUP, VERSION, kube_namespace, PLURAL, widget("bad-cel", size=5, maxSize=3)
        )
    assert cel.value.status == 422
    assert "size must not exceed maxSize" in str(cel.value.body)

    # Structural schema: unknown fields are pruned, not stored.
    pruned = json_object(
        widgets.create_namespaced_custom_object(
            GROUP, VERSION, kube_namespace, PLURAL, widget("pruned", size=1, colour="red")
        )
    )
    assert "colour" not in pruned["spec"]


def test_finalizer_blocks_deletion_until_removed(
    widgets: k8s.CustomObjectsApi, kube_namespace: str
) -> None:
    body = widget("held")
    body["metadata"]["finalizers"] = [f"{GROUP}/hold"]
    widgets.create_namespaced_custom_object(GROUP, VERSION, kube_namespace, PLURAL, body)

    def read() -> dict[str, Any]:
        return json_object(
            widgets.get_namespaced_custom_object(GROUP, VERSION, kube_namespace, PLURAL, "held")
        )

    widgets.delete_namespaced_custom_object(GROUP, VERSION, kube_namespace, PLURAL, "held")
    time.sleep(0.5)
    held = read()
    assert held["metadata"]["deletionTimestamp"]
    assert held["metadata"]["finalizers"] == [f"{GROUP}/hold"]

    widgets.patch_namespaced_custom_object(
        GROUP, VERSION, kube_namespace, PLURAL, "held", {"metadata": {"finalizers": None}}
    )
    wait_for("finalized object gone", gone(read), 10)


def test_stale_resource_version_conflicts(kube_admin: k8s.ApiClient, kube_namespace: str) -> None:
    core = k8s.CoreV1Api(kube_admin)
    cm = core.create_namespaced_config_map(
        kube_namespace,
        k8s.V1ConfigMap.model_validate({"metadata": {"name": "rv"}, "data": {"n": "0"}}),
    )
    stale = metadata(cm).resource_version
    core.replace_namespaced_config_map(
        "rv",
        kube_namespace,
        k8s.V1ConfigMap.model_validate(
            {"metadata": {"name": "rv", "resourceVersion": stale}, "data": {}}
        ),
    )
    with pytest.raises(ApiException) as conflict:
        core.replace_namespaced_config_map(
            "rv",
            kube_namespace,
            k8s.V1ConfigMap.model_validate(
                {"metadata": {"name": "rv", "resourceVersion": stale}, "data": {"n": "2"}}
            ),
        )
    assert conflict.value.status == 409


def test_watch_reports_changes_in_order(kube_admin: k8s.ApiClient, kube_namespace: str) -> None:
    core = k8s.CoreV1Api(kube_admin)
    listed = core.list_namespaced_config_map(kube_namespace)
    assert listed.metadata is not None
    start = listed.metadata.resource_version
    core.create_namespaced_config_map(
        kube_namespace, k8s.V1ConfigMap.model_validate({"metadata": {"name": "w"}})
    )
    core.patch_namespaced_config_map("w", kube_namespace, {"data": {"a": "b"}})
    core.delete_namespaced_config_map("w", kube_namespace)
    seen = []
    # kubernetes.watch carries no annotations.
    stream = watch.Watch()  # type: ignore[no-untyped-call]
    for event in stream.stream(  # type: ignore[no-untyped-call]
        core.list_namespaced_config_map,
        kube_namespace,
        resource_version=start,
        timeout_seconds=10,
    ):
        if event["object"].metadata.name == "w":
            seen.append(event["type"])
        if event["type"] == "DELETED":
            stream.stop()  # type: ignore[no-untyped-call]
    assert seen == ["ADDED", "MODIFIED", "DELETED"]


def assert_owned_secret_collected(
    api: k8s.ApiClient,
    namespace: str,
    owner_ref: dict[str, Any],
    delete_owner: Callable[[], object],
) -> float:
    """Create a Secret owned by owner_ref and one not owned; delete the owner; wait for GC."""
    core = k8s.CoreV1Api(api)
    core.create_namespaced_secret(
        namespace,
        k8s.V1Secret.model_validate(
            {
                "metadata": {"name": "owned", "ownerReferences": [owner_ref]},
                "stringData": {"k": "v"},
            }
        ),
    )
    core.create_namespaced_secret(
        namespace, k8s.V1Secret.model_validate({"metadata": {"name": "unowned"}})
    )
    delete_owner()
    took = wait_for(
        "owned Secret collected",
        gone(lambda: core.read_namespaced_secret("owned", namespace)),
        90,
    )
    core.read_namespaced_secret("unowned", namespace)  # still there
    return took


def owner_ref(obj: dict[str, Any] | Any, api_version: str, kind: str) -> dict[str, Any]:
    meta = obj["metadata"] if isinstance(obj, dict) else obj.metadata
    name = meta["name"] if isinstance(meta, dict) else meta.name
    uid = meta["uid"] if isinstance(meta, dict) else meta.uid
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def test_owner_reference_garbage_collection(
    kube_cluster: KubeCluster, kube_admin: k8s.ApiClient, kube_namespace: str
) -> None:
    if not kube_cluster.has_controller_manager:
        pytest.skip("no kube-controller-manager: nothing collects garbage")
    core = k8s.CoreV1Api(kube_admin)
    owner = core.create_namespaced_config_map(
        kube_namespace, k8s.V1ConfigMap.model_validate({"metadata": {"name": "owner"}})
    )
    took = assert_owned_secret_collected(
        kube_admin,
        kube_namespace,
        owner_ref(owner, "v1", "ConfigMap"),
        lambda: core.delete_namespaced_config_map("owner", kube_namespace),
    )
    print(f"garbage collected in {took:.1f}s")


def test_namespace_deletion_completes(
    kube_cluster: KubeCluster, kube_admin: k8s.ApiClient, widgets: k8s.CustomObjectsApi
) -> None:
    if not kube_cluster.has_controller_manager:
        pytest.skip("no kube-controller-manager: namespaces stay Terminating")
    core = k8s.CoreV1Api(kube_admin)
    ns = unique_name("doomed")
    core.create_namespace(k8s.V1Namespace.model_validate({"metadata": {"name": ns}}))
    core.create_namespaced_config_map(
        ns, k8s.V1ConfigMap.model_validate({"metadata": {"name": "cm"}})
    )
    core.create_namespaced_secret(ns, k8s.V1Secret.model_validate({"metadata": {"name": "s"}}))
    widgets.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, widget("w"))
    core.delete_namespace(ns)
    took = wait_for("namespace gone", gone(lambda: core.read_namespace(ns)), 60)
    print(f"namespace deleted in {took:.1f}s")


def test_service_account_holds_only_its_role(
    kube_cluster: KubeCluster, kube_admin: k8s.ApiClient, kube_namespace: str
) -> None:
    core = k8s.CoreV1Api(kube_admin)
    core.create_namespaced_config_map(
        kube_namespace, k8s.V1ConfigMap.model_validate({"metadata": {"name": "visible"}})
    )
    core.create_namespaced_secret(
        kube_namespace, k8s.V1Secret.model_validate({"metadata": {"name": "hidden"}})
    )
    identity = kube_cluster.service_account(
        "reader",
        kube_namespace,
        rules=[{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}],
    )
    with identity.client() as api:
        review = k8s.AuthenticationV1Api(api).create_self_subject_review(
            k8s.V1SelfSubjectReview.model_validate({})
        )
        assert review.status is not None
        assert review.status.user_info is not None
        assert review.status.user_info.username == identity.username
        sa_core = k8s.CoreV1Api(api)
        listed = sa_core.list_namespaced_config_map(kube_namespace).items
        names = [metadata(c).name for c in listed]
        assert "visible" in names
        denied: list[Callable[[], object]] = [
            lambda: sa_core.list_namespaced_secret(kube_namespace),
            lambda: sa_core.read_namespaced_secret("hidden", kube_namespace),
            lambda: sa_core.create_namespaced_config_map(
                kube_namespace, k8s.V1ConfigMap.model_validate({"metadata": {"name": "nope"}})
            ),
            lambda: sa_core.delete_namespaced_config_map("visible", kube_namespace),
            lambda: sa_core.list_namespaced_config_map("default"),
            lambda: sa_core.list_namespace(),
        ]
        for call in denied:
            with pytest.raises(ApiException) as exc:
                call()
            assert exc.value.status == 403

    # The kubeconfig acts as the same identity.
    kubeconfig = str(identity.kubeconfig)
    with k8s_config.new_client_from_config(config_file=kubeconfig) as api:  # type: ignore[no-untyped-call]
        k8s.CoreV1Api(api).read_namespaced_config_map("visible", kube_namespace)
        with pytest.raises(ApiException) as exc:
            k8s.CoreV1Api(api).list_namespaced_secret(kube_namespace)
        assert exc.value.status == 403


def test_service_account_cluster_rules(kube_cluster: KubeCluster, kube_namespace: str) -> None:
    identity = kube_cluster.service_account(
        "ns-lister",
        kube_namespace,
        cluster_rules=[{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list"]}],
    )
    with identity.client() as api:
        core = k8s.CoreV1Api(api)
        assert kube_namespace in [metadata(n).name for n in core.list_namespace().items]
        with pytest.raises(ApiException) as exc:
            core.list_config_map_for_all_namespaces()
        assert exc.value.status == 403


# --------------------------------------------------------------------------- teardown


def _needs_local_binaries(kube_cluster: KubeCluster) -> None:
    if not isinstance(kube_cluster, ControlPlane):
        pytest.skip("existing cluster: this harness starts no processes")


def test_context_manager_leaves_nothing_behind(kube_cluster: KubeCluster) -> None:
    """A second control plane with a CRD applied before kube-controller-manager starts:
    custom-resource owners are garbage-collected at once, and teardown leaves nothing."""
    _needs_local_binaries(kube_cluster)
    with ControlPlane(crds=[WIDGET_CRD]) as plane:
        workdir = plane.workdir
        assert workdir is not None
        assert len(processes_using(workdir)) == 3  # etcd, kube-apiserver, controller-manager
        assert plane.version()["git_version"].startswith("v1.")
        with plane.admin_client() as api:
            custom = k8s.CustomObjectsApi(api)
            owner = custom.create_namespaced_custom_object(
                GROUP, VERSION, "default", PLURAL, widget("owner")
            )
            took = assert_owned_secret_collected(
                api,
                "default",
                owner_ref(owner, f"{GROUP}/{VERSION}", "Widget"),
                lambda: custom.delete_namespaced_custom_object(
                    GROUP, VERSION, "default", PLURAL, "owner"
                ),
            )
        print(f"custom-resource owner collected in {took:.1f}s")
        assert took < 15
    assert processes_using(workdir) == []
    assert not workdir.exists()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_interrupted_run_leaves_nothing_behind(kube_cluster: KubeCluster, signum: int) -> None:
    """A demo process stopped by Ctrl-C, kill or kill -9 takes its control plane along."""
    _needs_local_binaries(kube_cluster)
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.cluster.harness", "--no-controller-manager"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "USE_EXISTING_CLUSTER": ""},
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.startswith("export KUBECONFIG="), line
        workdir = Path(line.split("=", 1)[1].strip()).parent
        assert len(processes_using(workdir)) == 2
        child.send_signal(signum)
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    wait_for("control plane processes gone", lambda: not processes_using(workdir), 15)
    if signum == signal.SIGKILL:
        # Nothing can run at kill -9: the next start sweeps the work dir.
        assert workdir in sweep_stale_workdirs()
    assert not workdir.exists()
