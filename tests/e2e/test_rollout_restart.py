"""`rolloutRestartTargets` on kind with real pods (issue 25): a Deployment that reads the
token from an environment variable once gets a new pod after a renewal, and that pod sees
the new token. The chart grants the rights with `rolloutRestart.enabled`."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import pytest
from kubernetes import client as k8s

from oauth2_token_operator.api.crd import GROUP, VERSION
from oauth2_token_operator.api.labels import USABLE_BY_OPERATOR
from tests.e2e.cluster_authserver import ClusterAuthServer
from tests.e2e.kind import KindCluster
from tests.e2e.pods import exec_in_pod
from tests.e2e.ship import (
    OPERATOR_NAME,
    OPERATOR_NAMESPACE,
    apply_documents,
    example_documents,
    examples_namespace,
    helm,
    install_with_helm,
    wait_ready,
    workload_pod,
)
from tests.polling import wait_for

pytestmark = pytest.mark.kind

READER = "env-reader"
FINGERPRINT = "import hashlib, os; print(hashlib.sha256(os.environ['TOKEN'].encode()).hexdigest())"


def env_reader(server: ClusterAuthServer) -> dict[str, Any]:
    """deploy/examples/workload.yaml, changed to take the token from its environment."""
    (doc,) = example_documents("workload", server)
    labels = {"app.kubernetes.io/name": READER}
    doc["metadata"]["name"] = READER
    doc["metadata"]["labels"] = {**labels, USABLE_BY_OPERATOR: "true"}
    doc["spec"]["selector"]["matchLabels"] = doc["spec"]["template"]["metadata"]["labels"] = labels
    pod = doc["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    container["args"] = ["import time\nwhile True: time.sleep(60)"]
    container["env"] = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {
        "name": "api-token", "key": "access_token"}}}]  # fmt: skip
    container.pop("volumeMounts")
    pod.pop("volumes")
    return doc


def token_in_pod(api: k8s.ApiClient, namespace: str) -> str:
    pod = workload_pod(api, namespace, READER)
    result = exec_in_pod(api, namespace, pod, ["python3", "-c", FINGERPRINT])
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def test_a_workload_reading_its_environment_restarts_with_the_new_token(
    kind_cluster: KindCluster,
    kind_admin: k8s.ApiClient,
    operator_image: str,
    cluster_authserver: ClusterAuthServer,
) -> None:
    kubeconfig = kind_cluster.kubeconfig
    install_with_helm(kubeconfig, "rolloutRestart.enabled=true", "rolloutRestart.minInterval=0")
    try:
        with examples_namespace(kind_cluster, kind_admin, cluster_authserver) as installed:
            (request,) = example_documents("client-credentials-request", installed.server)
            request["spec"]["rolloutRestartTargets"] = [{"kind": "Deployment", "name": READER}]
            apply_documents(kubeconfig, installed.namespace, [request])
            wait_ready(kind_admin, installed.namespace, "accesstokenrequests", "api-token")
            apply_documents(kubeconfig, installed.namespace, [env_reader(installed.server)])
            first = (installed.secret_data("api-token") or {})["access_token"]
            assert token_in_pod(kind_admin, installed.namespace) == fingerprint(first)

            at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            renew = {"oauth2.token-operator.io/renew-requested-at": at}
            k8s.CustomObjectsApi(kind_admin).patch_namespaced_custom_object(
                GROUP, VERSION, installed.namespace,
                "accesstokenrequests", "api-token", {"metadata": {"annotations": renew}},
            )  # fmt: skip
            second = wait_for(
                "a renewed token",
                lambda: (
                    (token := (installed.secret_data("api-token") or {}).get("access_token"))
                    not in (None, first)
                    and token
                ),
                60,
            )
            wait_for(
                "a pod with the new token in its environment",
                lambda: token_in_pod(kind_admin, installed.namespace) == fingerprint(str(second)),
                180,
                every=2,
            )
    finally:
        helm(kubeconfig, "uninstall", OPERATOR_NAME, "--namespace", OPERATOR_NAMESPACE,
             "--wait", "--timeout=120s")  # fmt: skip
