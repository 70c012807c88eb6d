"""The operator installed with ``helm install`` on kind: ``helm test`` passes, it serves
the examples as the ``kubectl apply`` install does (test_operator_kubectl.py), and ``helm
uninstall`` leaves only the CRDs (``helm.sh/resource-policy: keep``: deleting them would
delete every OAuth2Client and AccessTokenRequest) and the namespace
``--create-namespace`` made. ``helm upgrade`` from the chart that had its CRDs in crds/
takes them over and upgrades them, and re-issues no token.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from tests.cluster.objects import unless_missing
from tests.e2e.cluster_authserver import ClusterAuthServer
from tests.e2e.kind import KindCluster
from tests.e2e.ship import (
    CRDS,
    OPERATOR_NAME,
    OPERATOR_NAMESPACE,
    TOKEN_DIR,
    apply_documents,
    chart_before_crd_templates,
    example_documents,
    examples_namespace,
    helm,
    helm_test,
    in_pod,
    install_with_helm,
    kubectl,
    start_workload,
    upgrade_with_helm,
    wait_ready,
    workload_pod,
)
from tests.polling import wait_for

pytestmark = pytest.mark.kind

RELEASE_SELECTOR = f"app.kubernetes.io/instance={OPERATOR_NAME}"
CRD_NAMES = (
    "accesstokenrequests.oauth2.token-operator.io",
    "oauth2clients.oauth2.token-operator.io",
)


def uninstall_all(kubeconfig: Path) -> None:
    """The release, the CRDs it keeps, and its namespace (with the operator's Lease,
    which is not Helm's)."""
    helm(kubeconfig, "uninstall", OPERATOR_NAME, "--namespace", OPERATOR_NAMESPACE,
         "--wait", "--timeout=120s")  # fmt: skip
    kubectl(kubeconfig, "delete", "--ignore-not-found", "-f", str(CRDS), "--timeout=120s")
    kubectl(kubeconfig, "delete", "namespace", OPERATOR_NAMESPACE, "--ignore-not-found",
            "--timeout=120s")  # fmt: skip


def test_helm_install_serves_and_uninstall_leaves_only_crds(
    kind_cluster: KindCluster,
    kind_admin: k8s.ApiClient,
    operator_image: str,
    cluster_authserver: ClusterAuthServer,
) -> None:
    kubeconfig = kind_cluster.kubeconfig
    try:
        notes = install_with_helm(kubeconfig)
        try:
            assert "serving all namespaces" in notes
            tested = helm_test(kubeconfig)
            assert f"TEST SUITE:     {OPERATOR_NAME}-test" in tested, tested
            assert "Phase:          Succeeded" in tested, tested
            with examples_namespace(kind_cluster, kind_admin, cluster_authserver) as installed:
                server = installed.server
                apply_documents(
                    kubeconfig,
                    installed.namespace,
                    example_documents("client-credentials-request", server)
                    + example_documents("workload", server),
                )
                wait_ready(kind_admin, installed.namespace, "accesstokenrequests", "api-token")
                pod = workload_pod(kind_admin, installed.namespace)
                args = installed.introspection_args()
                sample = in_pod(kind_admin, installed.namespace, pod, "sample", TOKEN_DIR, *args)
                assert sample["active"] is True
                data = installed.secret_data("api-token")
                assert data is not None
                kubectl(kubeconfig, "-n", installed.namespace, "delete", "accesstokenrequest",
                        "api-token", "--timeout=60s")  # fmt: skip
                wait_for("the Secret to go", lambda: installed.secret_data("api-token") is None, 60)
                answer = in_pod(kind_admin, installed.namespace, pod, "introspect", *args,
                                data["access_token"])  # fmt: skip
                assert answer["active"] is False
        finally:
            helm(kubeconfig, "uninstall", OPERATOR_NAME, "--namespace", OPERATOR_NAMESPACE,
                 "--wait", "--timeout=120s")  # fmt: skip

        def leftovers() -> list[str]:
            found = kubectl(
                kubeconfig, "get", "all,serviceaccounts,secrets,configmaps", "-n",
                OPERATOR_NAMESPACE, "-l", RELEASE_SELECTOR, "-o", "name",
            ).split()  # fmt: skip
            found += kubectl(
                kubeconfig, "get", "clusterroles,clusterrolebindings", "-l", RELEASE_SELECTOR,
                "-o", "name",
            ).split()  # fmt: skip
            # Helm's own release records (Secrets labelled owner=helm) too.
            found += kubectl(kubeconfig, "get", "secrets", "-n", OPERATOR_NAMESPACE,
                             "-l", "owner=helm", "-o", "name").split()  # fmt: skip
            return found

        # `helm uninstall --wait` returns once the Deployment is gone; its pod, deleted
        # by the garbage collector, may still be stopping.
        wait_for("nothing of the release left", lambda: leftovers() == [], 90, every=1)
        crds = kubectl(kubeconfig, "get", "crd", "-o", "name").split()
        assert sorted(c for c in crds if "token-operator" in c) == [
            f"customresourcedefinition.apiextensions.k8s.io/{name}" for name in CRD_NAMES
        ]
    finally:
        kubectl(kubeconfig, "delete", "--ignore-not-found", "-f", str(CRDS), "--timeout=120s")
        kubectl(kubeconfig, "delete", "namespace", OPERATOR_NAMESPACE, "--ignore-not-found",
                "--timeout=120s")  # fmt: skip


def test_two_replicas_one_leads_and_the_other_takes_over(
    kind_cluster: KindCluster,
    kind_admin: k8s.ApiClient,
    operator_image: str,
    cluster_authserver: ClusterAuthServer,
) -> None:
    """`replicaCount=2`: both pods Ready, one holds the Lease and works; when it goes,
    the other takes the Lease over and serves the requests."""
    kubeconfig = kind_cluster.kubeconfig
    core = k8s.CoreV1Api(kind_admin)
    leases = k8s.CoordinationV1Api(kind_admin)

    def holder() -> str | None:
        lease = unless_missing(
            lambda: leases.read_namespaced_lease(OPERATOR_NAME, OPERATOR_NAMESPACE)
        )
        return lease.spec.holder_identity if lease is not None and lease.spec else None

    install_with_helm(kubeconfig, "replicaCount=2")  # --wait: both replicas Ready
    try:
        pods = [
            pod.metadata.name
            for pod in core.list_namespaced_pod(
                OPERATOR_NAMESPACE, label_selector=RELEASE_SELECTOR
            ).items
            if pod.metadata and pod.metadata.name
        ]
        assert len(pods) == 2
        leader = wait_for("a leader", lambda: holder() if holder() in pods else None, 60)
        with examples_namespace(kind_cluster, kind_admin, cluster_authserver) as installed:
            apply_documents(
                kubeconfig,
                installed.namespace,
                example_documents("client-credentials-request", installed.server),
            )
            ready = wait_ready(kind_admin, installed.namespace, "accesstokenrequests", "api-token")
            revision = ready["status"]["revision"]

            # A graceful stop releases the Lease: the standby, or the pod replacing the
            # deleted one, takes it.
            started = time.monotonic()
            core.delete_namespaced_pod(leader, OPERATOR_NAMESPACE)
            successor = wait_for(
                "another replica to lead",
                lambda: (found := holder()) not in (None, leader) and found,
                120,
                every=0.5,
            )
            print(f"{successor} leads {time.monotonic() - started:.1f}s after {leader} was deleted")
            running = {
                pod.metadata.name
                for pod in core.list_namespaced_pod(
                    OPERATOR_NAMESPACE, label_selector=RELEASE_SELECTOR
                ).items
                if pod.metadata
            }
            assert successor in running

            time.sleep(1.1)  # the renewal asked for is of a token issued before this second
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            kubectl(kubeconfig, "-n", installed.namespace, "annotate", "accesstokenrequest",
                    "api-token", f"oauth2.token-operator.io/renew-requested-at={now}",
                    "--overwrite")  # fmt: skip

            def renewed() -> bool:
                obj = wait_ready(kind_admin, installed.namespace, "accesstokenrequests",
                                 "api-token")  # fmt: skip
                return bool(obj["status"]["revision"] > revision)

            wait_for("the new leader to renew", renewed, 60, every=1)
    finally:
        uninstall_all(kubeconfig)


def test_helm_upgrade_from_the_chart_with_crds_in_crds_dir_reissues_nothing(
    kind_cluster: KindCluster,
    kind_admin: k8s.ApiClient,
    operator_image: str,
    cluster_authserver: ClusterAuthServer,
    tmp_path: Path,
) -> None:
    """Install the previous chart (CRDs in crds/), create a client and a request, upgrade
    to this chart (``--take-ownership``, as the chart README says): the CRDs are now the
    release's (and kept on uninstall), the token stays valid, nothing is re-issued (same
    revision, same Secret data), and ``helm test`` passes."""
    kubeconfig = kind_cluster.kubeconfig
    previous = chart_before_crd_templates(tmp_path)
    assert (previous / "crds").is_dir()
    assert not (previous / "templates" / "crds.yaml").exists()
    install_with_helm(kubeconfig, chart=previous)

    def crd_metadata(name: str) -> Any:
        return json.loads(kubectl(kubeconfig, "get", "crd", name, "-o", "json"))["metadata"]

    try:
        for name in CRD_NAMES:
            assert "meta.helm.sh/release-name" not in crd_metadata(name).get("annotations", {})
        with examples_namespace(kind_cluster, kind_admin, cluster_authserver) as installed:
            apply_documents(
                kubeconfig,
                installed.namespace,
                example_documents("client-credentials-request", installed.server),
            )
            before = wait_ready(kind_admin, installed.namespace, "accesstokenrequests",
                                "api-token")  # fmt: skip
            data = installed.secret_data("api-token")
            assert data is not None
            pod = start_workload(installed, "token-consumer", "api-token")

            upgrade_with_helm(kubeconfig, "--take-ownership")
            for name in CRD_NAMES:
                metadata = crd_metadata(name)
                assert metadata["annotations"]["meta.helm.sh/release-name"] == OPERATOR_NAME
                assert metadata["annotations"]["helm.sh/resource-policy"] == "keep"
                assert metadata["labels"]["app.kubernetes.io/managed-by"] == "Helm"
            tested = helm_test(kubeconfig)
            assert "Phase:          Succeeded" in tested, tested

            # The upgraded operator has had time to look at the request (it handles every
            # object at start): still the same token.
            time.sleep(15)
            after = wait_ready(kind_admin, installed.namespace, "accesstokenrequests",
                               "api-token")  # fmt: skip
            assert after["status"]["revision"] == before["status"]["revision"]
            assert installed.secret_data("api-token") == data
            answer = in_pod(kind_admin, installed.namespace, pod, "introspect",
                            *installed.introspection_args(), data["access_token"])  # fmt: skip
            assert answer["active"] is True
    finally:
        uninstall_all(kubeconfig)
