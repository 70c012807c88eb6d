"""``make demo`` (``python -m demo up``) and ``make demo-down`` (``python -m demo down``).

``up`` creates a kind cluster (kind's standard node image where it can be pulled, the
one tests/e2e/build.sh makes offline otherwise), builds and loads the operator image
and the test authorization server's (oidc-provider), installs the Helm chart, runs the
server and deploy/examples in namespace ``oauth2-demo``, waits, and prints what there is
to see: the requests' status, the token Secret (token redacted) and what the workload
pod reads. The cluster stays until ``down``; running ``up`` again shows it again.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import time
from pathlib import Path

from kubernetes import client as k8s

from oauth2_token_operator.api.labels import USABLE_BY_OPERATOR, USABLE_VALUE
from tests.e2e.cluster_authserver import deploy_authserver, publish_ca
from tests.e2e.images import build_authserver_image, build_operator_image
from tests.e2e.kind import (
    KindCluster,
    build,
    cache_dir,
    delete_cluster,
    kind_config,
    network_gateway,
)
from tests.e2e.ship import (
    OPERATOR_NAMESPACE,
    apply_documents,
    example_documents,
    in_pod,
    install_with_helm,
    kubectl,
    kubectl_binary,
    run_tool,
    wait_ready,
    workload_pod,
)

#: The kind cluster (and docker network); DEMO_CLUSTER renames it (the demo's test does).
NAME = os.environ.get("DEMO_CLUSTER", "oauth2-token-operator-demo")
NAMESPACE = "oauth2-demo"
STATE = cache_dir().parent / NAME.removeprefix("oauth2-token-operator-")
KUBECONFIG = STATE / "kubeconfig"
START = time.monotonic()


def say(message: str) -> None:
    print(f"[demo {time.monotonic() - START:5.0f}s] {message}", flush=True)


def demo_cluster(kind: Path) -> KindCluster:
    return KindCluster(kind, NAME, KUBECONFIG, created=False)


def cluster_exists(kind: Path) -> bool:
    return NAME in run_tool([kind, "get", "clusters"]).split()


def create_cluster() -> Path:
    info = build()
    if cluster_exists(info.kind):
        say(f"kind cluster {NAME} is already up")
        return info.kind
    say(f"creating kind cluster {NAME} ({info.source} node image {info.node_image})")
    STATE.mkdir(parents=True, exist_ok=True)
    if NAME not in run_tool(["docker", "network", "ls", "--format", "{{.Name}}"]).split():
        run_tool(["docker", "network", "create", NAME])
    resolv_conf = STATE / "pod-resolv.conf"
    resolv_conf.write_text(f"nameserver {network_gateway(NAME)}\n")
    config = STATE / "kind.yaml"
    config.write_text(kind_config(info, resolv_conf))
    run_tool([info.kind, "create", "cluster", "--name", NAME, "--image", info.node_image,
              "--config", config, "--kubeconfig", KUBECONFIG, "--wait", "5m"],
             env={"KIND_EXPERIMENTAL_DOCKER_NETWORK": NAME})  # fmt: skip
    demo_cluster(info.kind).wait_for_service_account()
    return info.kind


def up() -> None:
    kind = create_cluster()
    say("building the operator image and the authorization server's")
    operator_image = build_operator_image()
    STATE.mkdir(parents=True, exist_ok=True)
    work = STATE / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    authserver_image = build_authserver_image(work)
    for tag in (operator_image, authserver_image):
        run_tool([kind, "load", "docker-image", tag, "--name", NAME])
    with demo_cluster(kind).admin_client() as api:
        core = k8s.CoreV1Api(api)
        if not core.list_namespace(field_selector=f"metadata.name={NAMESPACE}").items:
            say(f"helm install {OPERATOR_NAMESPACE} (deploy/helm/oauth2-token-operator)")
            install_with_helm(KUBECONFIG)
            core.create_namespace(k8s.V1Namespace.model_validate({"metadata": {"name": NAMESPACE}}))
            demo_cluster(kind).wait_for_service_account(NAMESPACE)
            say("starting the authorization server (oidc-provider) and the examples")
            server = deploy_authserver(api, NAMESPACE, authserver_image)
            publish_ca(api, server, NAMESPACE)
            apply_documents(KUBECONFIG, NAMESPACE, example_documents("client", server)
                            + example_documents("client-credentials-request", server)
                            + example_documents("workload", server))  # fmt: skip
            # The refresh-token example needs a user's refresh token: one from the
            # server's password grant, fetched from inside the workload pod.
            pod = workload_pod(api, NAMESPACE)
            user_client = server.clients["client_secret_basic"]
            grant = in_pod(api, NAMESPACE, pod, "password", server.token_endpoint,
                           user_client.client_id, user_client.client_secret or "",
                           server.ca_pem, server.username, server.password, "read",
                           server.resource)  # fmt: skip
            core.create_namespaced_secret(NAMESPACE, k8s.V1Secret.model_validate({
                "metadata": {"name": "alice-refresh-token",
                             "labels": {USABLE_BY_OPERATOR: USABLE_VALUE}},
                "stringData": {"refresh_token": grant["refresh_token"]}}))  # fmt: skip
            apply_documents(KUBECONFIG, NAMESPACE,
                            example_documents("refresh-token-request", server))  # fmt: skip
        for request in ("api-token", "alice-token"):
            wait_ready(api, NAMESPACE, "accesstokenrequests", request)
        show(api)


def redact(value: str) -> str:
    return f"<redacted: {len(value)} characters>"


def show(api: k8s.ApiClient) -> None:
    say("ready\n")
    print(kubectl(KUBECONFIG, "-n", NAMESPACE, "get", "oauth2clients,accesstokenrequests"))
    secret = k8s.CoreV1Api(api).read_namespaced_secret("api-token", NAMESPACE)
    print("Secret api-token (what the operator keeps up to date):")
    for key, raw in sorted((secret.data or {}).items()):
        value = base64.b64decode(raw).decode()
        if key in ("access_token", "authorization"):
            value = (value.split()[0] + " " if key == "authorization" else "") + redact(
                value.split()[-1]
            )
        print(f"  {key:14} {value}")
    pod = workload_pod(api, NAMESPACE)
    logs = kubectl(KUBECONFIG, "-n", NAMESPACE, "logs", pod, "--tail=2")
    print(f"\nWhat the workload pod {pod} reads from its mounted Secret (fingerprint only):")
    print("".join(f"  {line}\n" for line in logs.splitlines()))
    alias = "" if shutil.which("kubectl") else f"\n  alias kubectl={kubectl_binary()}"
    print(f"""Look around:
  export KUBECONFIG={KUBECONFIG}{alias}
  kubectl -n {NAMESPACE} get oauth2 -o wide
  kubectl -n {NAMESPACE} describe accesstokenrequest api-token
  kubectl -n {NAMESPACE} logs deploy/token-consumer -f
  kubectl -n {OPERATOR_NAMESPACE} logs deploy/oauth2-token-operator
  kubectl -n {NAMESPACE} delete accesstokenrequest api-token   # revokes, removes the Secret
Tear it down: make demo-down""")


def down() -> None:
    # The kind that build.sh made (what `up` used), or one on PATH.
    built = cache_dir() / "build.json"
    kind = Path(json.loads(built.read_text())["kind"]) if built.exists() else Path("kind")
    delete_cluster(kind, NAME)  # and its docker network
    shutil.rmtree(STATE, ignore_errors=True)
    say(f"kind cluster {NAME}, its docker network and {STATE} removed")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__)
    parser.add_argument("command", choices=("up", "down"))
    args = parser.parse_args()
    up() if args.command == "up" else down()
    say("done")


if __name__ == "__main__":
    main()
