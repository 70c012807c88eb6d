"""How clients reach a test API server: kubeconfig files and client configurations."""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kubernetes import client as k8s


@contextlib.contextmanager
def closing(api: k8s.ApiClient) -> Iterator[k8s.ApiClient]:
    """Close an ApiClient (its connection pool) on exit."""
    try:
        yield api
    finally:
        api.close()  # type: ignore[no-untyped-call]  # the kubernetes client leaves it unannotated


def bearer_configuration(base: k8s.Configuration, token: str) -> k8s.Configuration:
    """The server and trust of ``base`` with a bearer token as the identity."""
    cfg = k8s.Configuration()
    cfg.host = base.host
    cfg.ssl_ca_cert = base.ssl_ca_cert
    cfg.verify_ssl = base.verify_ssl
    cfg.tls_server_name = getattr(base, "tls_server_name", None)
    cfg.api_key = {"authorization": token}
    cfg.api_key_prefix = {"authorization": "Bearer"}
    return cfg


def write_kubeconfig(
    path: Path,
    *,
    server: str,
    ca_file: str | Path | None,
    user: str,
    token: str | None = None,
    cert_file: Path | None = None,
    key_file: Path | None = None,
    insecure: bool = False,
) -> Path:
    """Write a self-contained kubeconfig (certificates embedded). JSON is valid YAML."""
    cluster: dict[str, Any] = {"server": server}
    if insecure:
        cluster["insecure-skip-tls-verify"] = True
    elif ca_file:
        cluster["certificate-authority-data"] = _b64(Path(ca_file))
    creds: dict[str, Any] = {}
    if token:
        creds["token"] = token
    if cert_file and key_file:
        creds["client-certificate-data"] = _b64(cert_file)
        creds["client-key-data"] = _b64(key_file)
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "harness", "cluster": cluster}],
        "users": [{"name": user, "user": creds}],
        "contexts": [{"name": user, "context": {"cluster": "harness", "user": user}}],
        "current-context": user,
    }
    path.write_text(json.dumps(doc, indent=2))
    path.chmod(0o600)
    return path


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()
