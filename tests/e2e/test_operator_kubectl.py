"""The operator installed with ``kubectl apply -f crds/ -f deploy/`` on kind, its image
built by ``docker build``, serving deploy/examples to real pods.

Everything a workload sees is checked from inside its pod: the token in the mounted
Secret introspects as active at the authorization server (oidc-provider, running in the
cluster), renewals reach the file before the token expires, and deleting the request
revokes the token and removes the Secret.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from oauth2_token_operator.api.crd import GROUP, VERSION
from oauth2_token_operator.api.labels import USABLE_BY_OPERATOR, USABLE_VALUE
from tests.cluster.kubeconfig import bearer_configuration
from tests.cluster.objects import metadata
from tests.e2e.cluster_authserver import ClusterAuthServer
from tests.e2e.fixtures_ship import SHORT_LIFETIME
from tests.e2e.kind import KindCluster
from tests.e2e.pods import exec_in_pod
from tests.e2e.ship import (
    CRDS,
    DEPLOY,
    OPERATOR_NAMESPACE,
    TOKEN_DIR,
    Installed,
    apply_documents,
    example_documents,
    examples_namespace,
    in_pod,
    install_with_kubectl,
    kubectl,
    operator_logs,
    start_workload,
    wait_ready,
    workload_pod,
)
from tests.polling import wait_for

pytestmark = pytest.mark.kind


@pytest.fixture(scope="module")
def installed(
    kind_cluster: KindCluster,
    kind_admin: k8s.ApiClient,
    operator_image: str,
    cluster_authserver: ClusterAuthServer,
) -> Iterator[Installed]:
    """crds/ and deploy/ applied with kubectl; a namespace with the example client."""
    kubeconfig = kind_cluster.kubeconfig
    install_with_kubectl(kubeconfig)
    try:
        with examples_namespace(kind_cluster, kind_admin, cluster_authserver) as installed:
            yield installed
    finally:
        kubectl(kubeconfig, "delete", "--ignore-not-found", "--timeout=120s", "-f", str(DEPLOY))
        kubectl(kubeconfig, "delete", "--ignore-not-found", "--timeout=120s", "-f", str(CRDS))


def test_workload_pod_reads_an_active_token(installed: Installed) -> None:
    apply_documents(
        installed.kubeconfig,
        installed.namespace,
        example_documents("client-credentials-request", installed.server)
        + example_documents("workload", installed.server),
    )
    request = wait_ready(installed.api, installed.namespace, "accesstokenrequests", "api-token")
    data = installed.secret_data("api-token")
    assert data is not None
    assert set(data) == {"access_token", "token_type", "expires_at", "scope", "authorization"}
    assert data["scope"] == "read"
    assert request["status"]["secretName"] == "api-token"
    pod = workload_pod(installed.api, installed.namespace)
    sample = in_pod(
        installed.api, installed.namespace, pod, "sample", TOKEN_DIR,
        *installed.introspection_args(),
    )  # fmt: skip
    assert sample["active"] is True
    assert sample["now"] < sample["expires_at"]
    assert sample["exp"] == pytest.approx(sample["expires_at"], abs=1)


def test_renewals_reach_the_pod_before_expiry(
    installed: Installed, capsys: pytest.CaptureFixture[str]
) -> None:
    """Tokens living SHORT_LIFETIME s, sampled in the pod for 2.5 lifetimes: the file
    changes at least twice and never holds a token that is expired or inactive."""
    short = installed.server.clients["renewal_ttl"]
    assert short.client_secret is not None
    docs = example_documents("client", installed.server)
    for doc in docs:
        doc["metadata"]["name"] = "short"
        if doc["kind"] == "Secret":
            doc["stringData"]["client-secret"] = short.client_secret
        else:
            doc["spec"]["clientId"] = short.client_id
            doc["spec"]["authentication"]["clientSecretRef"]["name"] = "short"
    (request,) = example_documents("client-credentials-request", installed.server)
    request["metadata"]["name"] = request["spec"]["secretName"] = "short-token"
    request["spec"]["clientRef"]["name"] = "short"
    apply_documents(installed.kubeconfig, installed.namespace, [*docs, request])
    wait_ready(installed.api, installed.namespace, "accesstokenrequests", "short-token")
    pod = start_workload(installed, "short-consumer", "short-token")

    samples: list[dict[str, Any]] = []

    def sample() -> bool:
        samples.append(
            in_pod(
                installed.api,
                installed.namespace,
                pod,
                "sample",
                TOKEN_DIR,
                *installed.introspection_args(),
            )
        )
        return len({s["sha"] for s in samples}) >= 3

    wait_for("two renewals seen in the pod", sample, timeout=2.5 * SHORT_LIFETIME, every=0.5)
    for s in samples:
        assert s["now"] < s["expires_at"], f"the pod held an expired token: {s}"
        assert s["active"] is True, f"the pod held an inactive token: {s}"
    # Renewals leave margin: the least time left on a token the pod held.
    margin = min(s["expires_at"] - s["now"] for s in samples)
    with capsys.disabled():
        print(
            f"\n[kind] {len(samples)} samples in the pod, {len({s['sha'] for s in samples})}"
            f" tokens of {SHORT_LIFETIME}s; least time left on a held token: {margin:.1f}s"
        )


def test_refresh_token_request(installed: Installed) -> None:
    pod = workload_pod(installed.api, installed.namespace)
    server = installed.server
    test_client = server.clients["client_secret_basic"]
    assert test_client.client_secret is not None
    grant = in_pod(
        installed.api, installed.namespace, pod, "password", server.token_endpoint,
        test_client.client_id, test_client.client_secret, server.ca_pem,
        server.username, server.password, "read", server.resource,
    )  # fmt: skip
    k8s.CoreV1Api(installed.api).create_namespaced_secret(
        installed.namespace,
        k8s.V1Secret.model_validate(
            {
                "metadata": {
                    "name": "alice-refresh-token",
                    "labels": {USABLE_BY_OPERATOR: USABLE_VALUE},
                },
                "stringData": {"refresh_token": grant["refresh_token"]},
            }
        ),
    )
    apply_documents(
        installed.kubeconfig,
        installed.namespace,
        example_documents("refresh-token-request", server),
    )
    wait_ready(installed.api, installed.namespace, "accesstokenrequests", "alice-token")
    data = installed.secret_data("alice-token")
    assert data is not None
    answer = in_pod(
        installed.api, installed.namespace, pod, "introspect",
        *installed.introspection_args(), data["access_token"],
    )  # fmt: skip
    assert answer["active"] is True
    assert answer["sub"] == server.username  # a token on the user's behalf
    # The server rotates refresh tokens; the operator wrote the new one back.
    rotated = installed.secret_data("alice-refresh-token")
    assert rotated is not None
    assert rotated["refresh_token"] != grant["refresh_token"]


def test_deleting_the_request_revokes_and_removes_the_secret(installed: Installed) -> None:
    (request,) = example_documents("client-credentials-request", installed.server)
    request["metadata"]["name"] = request["spec"]["secretName"] = "doomed"
    # Scopes of its own: requests asking for the same token share it (api-token's), and a
    # shared token is revoked only when its last request goes.
    request["spec"]["scopes"] = ["write"]
    apply_documents(installed.kubeconfig, installed.namespace, [request])
    wait_ready(installed.api, installed.namespace, "accesstokenrequests", "doomed")
    data = installed.secret_data("doomed")
    assert data is not None
    pod = workload_pod(installed.api, installed.namespace)
    introspect = ["introspect", *installed.introspection_args(), data["access_token"]]
    assert in_pod(installed.api, installed.namespace, pod, *introspect)["active"] is True

    kubectl(installed.kubeconfig, "-n", installed.namespace, "delete",
            "accesstokenrequest", "doomed", "--timeout=60s")  # fmt: skip
    wait_for("the token Secret to go", lambda: installed.secret_data("doomed") is None, 60)
    answer = in_pod(installed.api, installed.namespace, pod, *introspect)
    events = kubectl(installed.kubeconfig, "-n", installed.namespace, "get", "events",
                     "--field-selector=involvedObject.name=doomed")  # fmt: skip
    assert answer["active"] is False, f"not revoked; events:\n{events}"


def test_operator_runs_read_only_as_non_root(installed: Installed) -> None:
    pods = k8s.CoreV1Api(installed.api).list_namespaced_pod(
        OPERATOR_NAMESPACE, label_selector="app.kubernetes.io/name=oauth2-token-operator"
    )
    (pod,) = pods.items
    name = str(metadata(pod).name)
    probe = "import os, pathlib; print(os.getuid(), os.getgid()); pathlib.Path('/x').touch()"
    result = exec_in_pod(installed.api, OPERATOR_NAMESPACE, name, ["python3", "-c", probe])
    assert result.stdout.split() == ["65532", "65532"]
    assert "Read-only file system" in result.stderr


def _as_operator(installed: Installed) -> k8s.ApiClient:
    """A client holding a fresh token of the operator's ServiceAccount: deploy/'s RBAC."""
    request = k8s.CoreV1Api(installed.api).create_namespaced_service_account_token(
        "oauth2-token-operator",
        OPERATOR_NAMESPACE,
        k8s.AuthenticationV1TokenRequest.model_validate({"spec": {"expirationSeconds": 600}}),
    )
    assert request.status is not None
    assert request.status.token is not None
    return k8s.ApiClient(
        bearer_configuration(installed.cluster.configuration(), request.status.token)
    )


def _status(call: Callable[[], object]) -> int:
    try:
        call()
    except ApiException as exc:
        return int(exc.status or 0)
    return 200


def test_operator_rbac_is_exactly_what_it_uses(installed: Installed) -> None:
    """Everything above ran with deploy/10-rbac.yaml's rules and nothing was refused;
    anything else is refused (last in the module: it reads the whole log)."""
    messages = [
        json.loads(line).get("message", "")
        for line in operator_logs(installed.kubeconfig).splitlines()
        if line.startswith("{")
    ]
    assert messages  # --log-format=json: one object a line
    refusals = [m for m in messages if re.search(r"forbidden|\b403\b|permission", m, re.I)]
    assert refusals == []
    ns = installed.namespace
    with _as_operator(installed) as api:
        core, custom = k8s.CoreV1Api(api), k8s.CustomObjectsApi(api)
        apps = k8s.AppsV1Api(api)
        # What it uses is granted.
        assert _status(lambda: core.list_secret_for_all_namespaces(limit=1)) == 200
        assert _status(lambda: core.read_namespaced_config_map("authserver-ca", ns)) == 200
        assert _status(lambda: core.list_namespace(limit=1)) == 200
        assert (
            _status(lambda: custom.list_cluster_custom_object(GROUP, VERSION, "oauth2clients"))
            == 200
        )
        # ServiceAccount tokens, for secretless clients (`service_account_token`): RBAC
        # grants them everywhere it serves; the operator mints one only for a
        # ServiceAccount that opted in (tests/operator/test_service_account_tokens.py).
        assert (
            _status(
                lambda: core.create_namespaced_service_account_token(
                    "oauth2-token-operator",
                    OPERATOR_NAMESPACE,
                    k8s.AuthenticationV1TokenRequest.model_validate(
                        {"spec": {"audiences": ["https://issuer.example.test"]}}
                    ),
                )
            )
            == 200
        )
        # Anything else is refused.
        refused = {
            "list pods": lambda: core.list_namespaced_pod(ns),
            "list configmaps": lambda: core.list_namespaced_config_map(ns),
            "create configmap": lambda: core.create_namespaced_config_map(
                ns, k8s.V1ConfigMap.model_validate({"metadata": {"name": "x"}})
            ),
            "patch secret": lambda: core.patch_namespaced_secret(
                "api-token", ns, {"metadata": {"labels": {"x": "y"}}}
            ),
            "get namespace": lambda: core.read_namespace(ns),
            "delete request": lambda: custom.delete_namespaced_custom_object(
                GROUP, VERSION, ns, "accesstokenrequests", "api-token"
            ),
            "create client": lambda: custom.create_namespaced_custom_object(
                GROUP, VERSION, ns, "oauth2clients", {"metadata": {"name": "x"}}
            ),
            "list deployments": lambda: apps.list_namespaced_deployment(ns),
            "delete service account": lambda: core.delete_namespaced_service_account(
                "oauth2-token-operator", OPERATOR_NAMESPACE
            ),
        }
        statuses = {what: _status(call) for what, call in refused.items()}
        assert statuses == dict.fromkeys(refused, 403)
