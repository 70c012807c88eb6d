"""The test authorization server (tests/authserver, oidc-provider) running in a kind
cluster: a pod of the image ``images.build_authserver_image`` makes, behind a Service.

Its issuer is ``https://authserver.<namespace>.svc:8443``: the operator's pod and
workload pods reach it through cluster DNS, and no traffic leaves the cluster. The
configuration (clients, keys, a server certificate for the Service's names from a
throw-away CA) is made here, as ``tests/authserver/fixtures.py`` makes it for 127.0.0.1,
and handed to the pod in a Secret. Used by the kind tests and by ``make demo``.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trustme
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from tests.authserver.fixtures import TestClient
from tests.authserver.fixtures import _build as build_config
from tests.e2e.pods import PodError

NAME = "authserver"
#: Fixed ports, since the issuer URLs name them (main, mTLS, plain-http, mismatch, lean).
PORTS = {"main": 8443, "mtls": 8444, "http": 8080, "mismatch": 8081, "lean": 8445}
CONFIG_DIR = "/config"
#: The ConfigMap (and key) holding the CA that verifies the server, in each namespace
#: that uses it: what an OAuth2Client's ``tls.caBundleFrom`` names.
CA_CONFIG_MAP = "authserver-ca"
CA_KEY = "ca.crt"


@dataclass(frozen=True)
class ClusterAuthServer:
    namespace: str
    issuer: str
    ca_pem: str
    clients: Mapping[str, TestClient]
    resource: str
    username: str
    password: str

    @property
    def introspection_endpoint(self) -> str:
        return f"{self.issuer}/token/introspection"

    @property
    def token_endpoint(self) -> str:
        return f"{self.issuer}/token"


def _manifests(namespace: str, image: str) -> list[dict[str, Any]]:
    labels = {"app.kubernetes.io/name": NAME}
    container = {
        "name": NAME,
        "image": image,
        "imagePullPolicy": "Never",
        "stdin": True,  # the server stops when its stdin closes
        "ports": [{"name": name, "containerPort": port} for name, port in PORTS.items()],
        "readinessProbe": {"tcpSocket": {"port": PORTS["main"]}, "periodSeconds": 1},
        "volumeMounts": [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True}],
        "securityContext": {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": NAME, "namespace": namespace, "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "automountServiceAccountToken": False,
                        "terminationGracePeriodSeconds": 1,
                        "containers": [container],
                        "volumes": [{"name": "config", "secret": {"secretName": f"{NAME}-config"}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": NAME, "namespace": namespace, "labels": labels},
            "spec": {
                "selector": labels,
                "ports": [{"name": name, "port": port} for name, port in PORTS.items()],
            },
        },
    ]


def deploy_authserver(
    api: k8s.ApiClient,
    namespace: str,
    image: str,
    *,
    ttl_overrides: Mapping[str, int] | None = None,
    timeout: float = 120,
) -> ClusterAuthServer:
    """Run the server in ``namespace`` (which must exist) and wait until it answers.

    ``ttl_overrides`` sets the access-token lifetime (seconds) of clients by client_id.
    """
    host = f"{NAME}.{namespace}.svc"
    with tempfile.TemporaryDirectory(prefix="cluster-authserver-") as tmp:
        config, clients, _http_client = build_config(Path(tmp))
        files = {
            "ca.pem": Path(config["tls"]["ca"]).read_text(),  # verifies mTLS client certs
        }
    ca = trustme.CA(organization_name="oauth2-token-operator e2e")
    cert = ca.issue_cert(host, f"{host}.cluster.local")
    files["server.pem"] = "".join(pem.bytes().decode() for pem in cert.cert_chain_pems)
    files["server.key"] = cert.private_key_pem.bytes().decode()
    config["tls"] = {name: f"{CONFIG_DIR}/{file}" for name, file in
                     (("cert", "server.pem"), ("key", "server.key"), ("ca", "ca.pem"))}  # fmt: skip
    config["listen"] = {"host": "0.0.0.0", "publicHost": host, "ports": PORTS}  # noqa: S104
    for client_id, seconds in (ttl_overrides or {}).items():
        config["ttlOverrides"][client_id] = {"AccessToken": seconds, "ClientCredentials": seconds}
    files["config.json"] = json.dumps(config)
    core, apps = k8s.CoreV1Api(api), k8s.AppsV1Api(api)
    core.create_namespaced_secret(
        namespace,
        k8s.V1Secret.model_validate({"metadata": {"name": f"{NAME}-config"}, "stringData": files}),
    )
    deployment, service = _manifests(namespace, image)
    apps.create_namespaced_deployment(namespace, k8s.V1Deployment.model_validate(deployment))
    core.create_namespaced_service(namespace, k8s.V1Service.model_validate(service))
    _wait_available(apps, namespace, NAME, timeout)
    return ClusterAuthServer(
        namespace=namespace,
        issuer=f"https://{host}:{PORTS['main']}",
        ca_pem=ca.cert_pem.bytes().decode(),
        clients=clients,
        resource=config["resource"]["identifier"],
        username=config["user"]["username"],
        password=config["user"]["password"],
    )


def publish_ca(api: k8s.ApiClient, server: ClusterAuthServer, namespace: str) -> None:
    """The server's CA as ConfigMap ``authserver-ca`` (key ``ca.crt``) in ``namespace``."""
    body = k8s.V1ConfigMap.model_validate(
        {"metadata": {"name": CA_CONFIG_MAP}, "data": {CA_KEY: server.ca_pem}}
    )
    try:
        k8s.CoreV1Api(api).create_namespaced_config_map(namespace, body)
    except ApiException as exc:
        if exc.status != 409:
            raise
        k8s.CoreV1Api(api).replace_namespaced_config_map(CA_CONFIG_MAP, namespace, body)


def _wait_available(apps: k8s.AppsV1Api, namespace: str, name: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        status = apps.read_namespaced_deployment(name, namespace).status
        if status is not None and (status.available_replicas or 0) >= 1:
            return
        if time.monotonic() > deadline:
            raise PodError(f"deployment {namespace}/{name} not available after {timeout}s")
        time.sleep(0.5)
