"""The operator installed with ``helm install`` on kind: it serves the examples as the
``kubectl apply`` install does (test_operator_kubectl.py), and ``helm uninstall`` leaves
only what Helm always leaves: the CRDs (Helm never deletes them, since that would delete
every OAuth2Client and AccessTokenRequest) and the namespace ``--create-namespace`` made.
"""

from __future__ import annotations

import time

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
    example_documents,
    examples_namespace,
    helm,
    in_pod,
    install_with_helm,
    kubectl,
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


def test_helm_install_serves_and_uninstall_leaves_only_crds(
    kind_cluster: KindCluster,
    kind_admin: k8s.ApiClient,
    operator_image: str,
    cluster_authserver: ClusterAuthServer,
) -> None:
    kubeconfig = kind_cluster.kubeconfig
    notes = install_with_helm(kubeconfig)
    try:
        assert "serving all namespaces" in notes
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
    try:

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
        helm(kubeconfig, "uninstall", OPERATOR_NAME, "--namespace", OPERATOR_NAMESPACE,
             "--wait", "--timeout=120s")  # fmt: skip
        kubectl(kubeconfig, "delete", "--ignore-not-found", "-f", str(CRDS), "--timeout=120s")
        # The Lease is the operator's, not Helm's: it goes with the namespace.
        kubectl(kubeconfig, "delete", "namespace", OPERATOR_NAMESPACE, "--ignore-not-found",
                "--timeout=120s")  # fmt: skip
