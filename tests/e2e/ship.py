"""The operator installed on a kind cluster as users install it, and seen from inside
pods. Used by the kind tests (``test_operator_*.py``) and by ``make demo``.

* ``install_with_kubectl``: ``kubectl apply`` of ``crds/`` and ``deploy/``;
* ``example_documents``: the manifests of ``deploy/examples`` for a namespace and issuer;
* ``in_pod``: ``tests/e2e/in_pod.py`` run in a pod of the operator's image (read the
  mounted token, introspect it, password grant), answering JSON.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s

from oauth2_token_operator.api.crd import GROUP, VERSION
from tests.cluster.binaries import cache_dirs
from tests.cluster.objects import metadata, unless_missing
from tests.e2e.cluster_authserver import ClusterAuthServer, publish_ca
from tests.e2e.kind import KindCluster
from tests.e2e.pods import exec_in_pod
from tests.polling import wait_for

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CRDS = ROOT / "crds"
DEPLOY = ROOT / "deploy"
EXAMPLES = DEPLOY / "examples"
CHART = DEPLOY / "helm" / "oauth2-token-operator"
OPERATOR_NAMESPACE = "oauth2-token-operator"
OPERATOR_NAME = "oauth2-token-operator"
IN_POD_SOURCE = (HERE / "in_pod.py").read_text()
#: Where deploy/examples/workload.yaml mounts the token Secret.
TOKEN_DIR = "/var/run/secrets/oauth2"


class ShipError(RuntimeError):
    """kubectl, helm or a wait failed."""


def kubectl_binary() -> Path:
    """The kubectl that tests/cluster/build.sh builds (the kind tests depend on it)."""
    return cache_dirs()[1] / "kubectl"


def run_tool(
    argv: Sequence[str | Path], *, input: str | None = None, env: dict[str, str] | None = None
) -> str:
    """Run a command; its stdout, or ShipError with what it printed."""
    result = subprocess.run(
        [str(a) for a in argv],
        capture_output=True,
        text=True,
        input=input,
        env={**os.environ, **env} if env else None,
        check=False,
    )
    if result.returncode != 0:
        raise ShipError(
            f"{' '.join(map(str, argv[:4]))}... failed ({result.returncode}):\n"
            f"{result.stdout[-2000:]}{result.stderr[-4000:]}"
        )
    return result.stdout


def kubectl(kubeconfig: Path, *args: str, input: str | None = None) -> str:
    return run_tool([kubectl_binary(), f"--kubeconfig={kubeconfig}", *args], input=input)


def install_with_kubectl(kubeconfig: Path) -> None:
    """What the README tells users: the CRDs, then deploy/ (namespace, RBAC, operator)."""
    kubectl(kubeconfig, "apply", "-f", str(CRDS))
    kubectl(kubeconfig, "wait", "--for=condition=Established", "--timeout=60s",
            "crd/accesstokenrequests.oauth2.token-operator.io",
            "crd/oauth2clients.oauth2.token-operator.io")  # fmt: skip
    kubectl(kubeconfig, "apply", "-f", str(DEPLOY))
    wait_for_operator(kubeconfig)


def wait_for_operator(kubeconfig: Path, namespace: str = OPERATOR_NAMESPACE) -> None:
    kubectl(kubeconfig, "-n", namespace, "rollout", "status", f"deployment/{OPERATOR_NAME}",
            "--timeout=180s")  # fmt: skip


def operator_logs(kubeconfig: Path, namespace: str = OPERATOR_NAMESPACE) -> str:
    return kubectl(kubeconfig, "-n", namespace, "logs", f"deployment/{OPERATOR_NAME}",
                   "--tail=-1")  # fmt: skip


def example_documents(name: str, server: ClusterAuthServer) -> list[dict[str, Any]]:
    """The manifests of deploy/examples/NAME.yaml, their issuer the given server's."""
    docs = [d for d in yaml.safe_load_all((EXAMPLES / f"{name}.yaml").read_text()) if d]
    for doc in docs:
        if doc["kind"] == "OAuth2Client":
            doc["spec"]["issuer"] = server.issuer
    return docs


def apply_documents(kubeconfig: Path, namespace: str, docs: Iterable[dict[str, Any]]) -> None:
    text = "\n---\n".join(json.dumps(doc) for doc in docs)
    kubectl(kubeconfig, "-n", namespace, "apply", "-f", "-", input=text)


def custom_object(api: k8s.ApiClient, namespace: str, plural: str, name: str) -> Any:
    return unless_missing(
        lambda: k8s.CustomObjectsApi(api).get_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, name
        )
    )


def condition(obj: Any, kind: str = "Ready") -> dict[str, Any]:
    for cond in (obj or {}).get("status", {}).get("conditions", []):
        if cond["type"] == kind:
            return dict(cond)
    return {}


def wait_ready(
    api: k8s.ApiClient, namespace: str, plural: str, name: str, timeout: float = 120
) -> dict[str, Any]:
    """The object once its Ready condition is True."""

    def ready() -> Any:
        obj = custom_object(api, namespace, plural, name)
        return obj if condition(obj).get("status") == "True" else None

    try:
        return dict(wait_for(f"{plural}/{namespace}/{name} Ready", ready, timeout, every=0.5))
    except AssertionError as exc:
        obj = custom_object(api, namespace, plural, name)
        raise AssertionError(f"{exc}\nstatus: {(obj or {}).get('status')}") from None


def workload_pod(api: k8s.ApiClient, namespace: str, app: str = "token-consumer") -> str:
    """The name of the running, ready pod of a Deployment's app label."""

    def ready_pod() -> str | None:
        pods = k8s.CoreV1Api(api).list_namespaced_pod(
            namespace, label_selector=f"app.kubernetes.io/name={app}"
        )
        for pod in pods.items:
            conditions = (pod.status and pod.status.conditions) or []
            deleting = pod.metadata and pod.metadata.deletion_timestamp
            if not deleting and any(c.type == "Ready" and c.status == "True" for c in conditions):
                return str(metadata(pod).name)
        return None

    return str(wait_for(f"a ready {app} pod in {namespace}", ready_pod, 180, every=0.5))


def in_pod(api: k8s.ApiClient, namespace: str, pod: str, *args: str) -> dict[str, Any]:
    """Run tests/e2e/in_pod.py in the pod (the operator's image); its JSON answer."""
    result = exec_in_pod(api, namespace, pod, ["python3", "-c", IN_POD_SOURCE, *args], timeout=60)
    if result.returncode != 0:
        raise ShipError(f"in_pod {args[0]} failed ({result.returncode}): {result.stderr[-2000:]}")
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def helm_binary() -> Path:
    """helm, built by tests/e2e/helm.sh (seconds when cached)."""
    return Path(run_tool(["bash", str(HERE / "helm.sh")]).strip().splitlines()[-1])


def helm(kubeconfig: Path | None, *args: str) -> str:
    config = [f"--kubeconfig={kubeconfig}"] if kubeconfig is not None else []
    return run_tool([helm_binary(), *config, *args])


def helm_template(
    *values: str, release: str = OPERATOR_NAME, namespace: str = OPERATOR_NAMESPACE
) -> list[dict[str, Any]]:
    """``helm template`` of the chart (``--set`` each of `values`): every manifest, in order."""
    sets = [arg for value in values for arg in ("--set", value)]
    out = helm(None, "template", release, str(CHART), "--namespace", namespace, *sets)
    return [doc for doc in yaml.safe_load_all(out) if doc]


def install_with_helm(
    kubeconfig: Path,
    *values: str,
    release: str = OPERATOR_NAME,
    namespace: str = OPERATOR_NAMESPACE,
    chart: Path = CHART,
) -> str:
    """``helm install`` of the chart (its defaults, or ``--set`` each of `values`),
    waiting for the operator."""
    sets = [arg for value in values for arg in ("--set", value)]
    return helm(kubeconfig, "install", release, str(chart), "--namespace", namespace,
                "--create-namespace", "--wait", "--timeout=180s", *sets)  # fmt: skip


def chart_before_crd_templates(dest: Path) -> Path:
    """The chart as main held it before its CRDs became templates (they were in crds/,
    which Helm never upgrades): extracted by ``git archive`` of the commit before the one
    that removed the chart's crds/ directory, into ``dest``; the chart's path there."""
    chart = CHART.relative_to(ROOT)
    moved = run_tool(["git", "-C", str(ROOT), "rev-list", "-1", "HEAD", "--",
                      f"{chart}/crds"]).strip()  # fmt: skip
    if not moved:
        raise ShipError(f"no commit removed {chart}/crds in this checkout's history")
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", f"{moved}^", str(chart)],
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest / chart


def upgrade_with_helm(
    kubeconfig: Path, *args: str, release: str = OPERATOR_NAME, namespace: str = OPERATOR_NAMESPACE
) -> str:
    """``helm upgrade`` of the release to the working tree's chart, waiting for it."""
    return helm(kubeconfig, "upgrade", release, str(CHART), "--namespace", namespace,
                "--wait", "--timeout=180s", *args)  # fmt: skip


def helm_test(
    kubeconfig: Path, release: str = OPERATOR_NAME, namespace: str = OPERATOR_NAMESPACE
) -> str:
    """``helm test`` of the release (its pod is deleted once it passed, so no --logs)."""
    return helm(kubeconfig, "test", release, "--namespace", namespace, "--timeout=180s")


@dataclass
class Installed:
    """The operator installed, the authorization server, and a namespace for examples."""

    cluster: KindCluster
    api: k8s.ApiClient
    server: ClusterAuthServer
    namespace: str  # where the examples go

    @property
    def kubeconfig(self) -> Path:
        return self.cluster.kubeconfig

    def introspection_args(self, client: str = "client_secret_basic") -> list[str]:
        test_client = self.server.clients[client]
        assert test_client.client_secret is not None
        return [
            self.server.introspection_endpoint,
            test_client.client_id,
            test_client.client_secret,
            self.server.ca_pem,
        ]

    def secret_data(self, name: str) -> dict[str, str] | None:
        core = k8s.CoreV1Api(self.api)
        secret = unless_missing(lambda: core.read_namespaced_secret(name, self.namespace))
        if secret is None:
            return None
        return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}


def start_workload(installed: Installed, name: str, secret_name: str) -> str:
    """deploy/examples/workload.yaml as Deployment ``name`` mounting ``secret_name``."""
    (doc,) = example_documents("workload", installed.server)
    doc["metadata"]["name"] = name
    labels = {"app.kubernetes.io/name": name}
    doc["metadata"]["labels"] = doc["spec"]["selector"]["matchLabels"] = labels
    doc["spec"]["template"]["metadata"]["labels"] = labels
    doc["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"] = secret_name
    apply_documents(installed.kubeconfig, installed.namespace, [doc])
    return workload_pod(installed.api, installed.namespace, name)


@contextlib.contextmanager
def examples_namespace(
    cluster: KindCluster, api: k8s.ApiClient, server: ClusterAuthServer
) -> Iterator[Installed]:
    """A namespace with the server's CA and the example client (Ready); on exit it is
    deleted and waited for, while the operator still runs to revoke its tokens."""
    with cluster.temporary_namespace("examples") as namespace:
        cluster.wait_for_service_account(namespace)
        publish_ca(api, server, namespace)
        apply_documents(cluster.kubeconfig, namespace, example_documents("client", server))
        wait_ready(api, namespace, "oauth2clients", "demo")
        yield Installed(cluster, api, server, namespace)
        kubectl(cluster.kubeconfig, "delete", "namespace", namespace, "--timeout=120s")
