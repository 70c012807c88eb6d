"""Real pods on kind: what the operator's users' workloads will rely on.

The operator writes tokens into Secrets; these tests prove, on a real kubelet, the paths
by which a Secret reaches a workload (a mounted file, followed on update; an environment
variable at start) and the network paths the end-to-end tests will use (cluster DNS and
a ClusterIP Service; a server on the kind network, where the authorization server runs).
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from typing import ClassVar

import pytest
from kubernetes import client as k8s

from tests.cluster.harness import unique_name
from tests.e2e.kind import SYNC_FREQUENCY, KindCluster
from tests.e2e.pods import exec_in_pod, pod_manifest, run_pod, start_pod

pytestmark = pytest.mark.kind

TOKEN_DIR = "/etc/token"


def _secret(api: k8s.ApiClient, namespace: str, name: str, token: str) -> None:
    k8s.CoreV1Api(api).create_namespaced_secret(
        namespace,
        k8s.V1Secret.model_validate({"metadata": {"name": name}, "stringData": {"token": token}}),
    )


def test_pod_reads_mounted_secret(
    kind_admin: k8s.ApiClient, kind_namespace: str, probe_image: str
) -> None:
    token = unique_name("token")
    _secret(kind_admin, kind_namespace, "creds", token)
    pod = pod_manifest(
        "reader",
        probe_image,
        ["cat", f"{TOKEN_DIR}/token"],
        volumes={TOKEN_DIR: {"secret": {"secretName": "creds"}}},
    )
    assert run_pod(kind_admin, kind_namespace, pod) == token


def test_secret_update_reaches_mounted_file(
    kind_admin: k8s.ApiClient,
    kind_namespace: str,
    probe_image: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _secret(kind_admin, kind_namespace, "creds", "first")
    pod = pod_manifest(
        "reader",
        probe_image,
        ["sleep"],
        volumes={TOKEN_DIR: {"secret": {"secretName": "creds"}}},
    )
    name = start_pod(kind_admin, kind_namespace, pod)

    def in_pod() -> str:
        result = exec_in_pod(
            kind_admin, kind_namespace, name, ["/probe", "cat", f"{TOKEN_DIR}/token"]
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert in_pod() == "first"
    missing = exec_in_pod(kind_admin, kind_namespace, name, ["/probe", "cat", "/no/such/file"])
    assert missing.returncode != 0
    assert "no such file" in missing.stderr
    latencies = []
    previous = "first"
    for value in ("second", "third", "fourth"):
        k8s.CoreV1Api(kind_admin).patch_namespaced_secret(
            "creds", kind_namespace, {"stringData": {"token": value}}
        )
        updated = time.monotonic()
        deadline = updated + 180  # generous: the kubelet resyncs every few seconds here
        seen = in_pod()
        while seen != value and time.monotonic() < deadline:
            assert seen == previous, f"unexpected file content {seen!r}"
            time.sleep(0.25)
            seen = in_pod()
        assert seen == value, "the Secret update never reached the mounted file"
        latencies.append(time.monotonic() - updated)
        previous = value
    with capsys.disabled():
        shown = ", ".join(f"{t:.1f}s" for t in latencies)
        print(
            f"\n[kind] Secret update -> file in the pod "
            f"(kubelet syncFrequency {SYNC_FREQUENCY}): {shown}"
        )


def test_env_var_from_secret_key_at_start(
    kind_admin: k8s.ApiClient, kind_namespace: str, probe_image: str
) -> None:
    token = unique_name("token")
    _secret(kind_admin, kind_namespace, "creds", token)
    pod = pod_manifest(
        "env",
        probe_image,
        ["env", "ACCESS_TOKEN"],
        env=[
            {
                "name": "ACCESS_TOKEN",
                "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}},
            }
        ],
    )
    assert run_pod(kind_admin, kind_namespace, pod).strip() == token


def test_dns_and_cluster_ip_service(
    kind_admin: k8s.ApiClient, kind_namespace: str, probe_image: str
) -> None:
    core = k8s.CoreV1Api(kind_admin)
    answer = unique_name("web")
    start_pod(
        kind_admin,
        kind_namespace,
        pod_manifest(
            "web",
            probe_image,
            ["serve", "8080", answer],
            labels={"app": "web"},
            restart_policy="Always",
            ports=[8080],
            readiness_http_port=8080,
        ),
    )
    service = core.create_namespaced_service(
        kind_namespace,
        k8s.V1Service.model_validate(
            {
                "metadata": {"name": "web"},
                "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
            }
        ),
    )
    assert service.spec is not None
    cluster_ip = service.spec.cluster_ip
    client = start_pod(kind_admin, kind_namespace, pod_manifest("client", probe_image, ["sleep"]))
    fqdn = f"web.{kind_namespace}.svc.cluster.local."  # absolute: no search list involved
    lookup = exec_in_pod(kind_admin, kind_namespace, client, ["/probe", "lookup", fqdn])
    assert lookup.returncode == 0, lookup.stderr
    assert lookup.stdout.split() == [cluster_ip]
    # The short name goes through the pod's search list; kube-proxy may need a moment
    # to program the new Service, hence a bounded retry.
    deadline = time.monotonic() + 60
    while True:
        got = exec_in_pod(kind_admin, kind_namespace, client, ["/probe", "get", "http://web/"])
        if got.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert got.returncode == 0, got.stderr
    assert got.stdout == answer


class _Recorder(http.server.BaseHTTPRequestHandler):
    answer: ClassVar[bytes] = b""
    seen: ClassVar[list[tuple[str, str]]] = []

    def do_GET(self) -> None:
        type(self).seen.append((self.client_address[0], self.path))
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.answer)))
        self.end_headers()
        self.wfile.write(self.answer)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def network_server(kind_cluster: KindCluster) -> Iterator[tuple[str, type[_Recorder]]]:
    """An HTTP server on the host's address on the kind docker network (nothing else)."""
    handler = type("Recorder", (_Recorder,), {"answer": unique_name("hello").encode(), "seen": []})
    server = http.server.ThreadingHTTPServer((kind_cluster.network_gateway(), 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = str(server.server_address[0]), int(server.server_address[1])
    try:
        yield f"http://{host}:{port}", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_pod_reaches_server_on_kind_network(
    kind_cluster: KindCluster,
    kind_admin: k8s.ApiClient,
    kind_namespace: str,
    probe_image: str,
    network_server: tuple[str, type[_Recorder]],
) -> None:
    url, handler = network_server
    logs = run_pod(
        kind_admin, kind_namespace, pod_manifest("caller", probe_image, ["get", f"{url}/token"])
    )
    assert logs == handler.answer.decode()
    # Pod traffic leaves the node masqueraded: the server saw the node's address.
    assert handler.seen == [(kind_cluster.node_address(), "/token")]
