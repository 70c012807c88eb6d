"""Shared by the CLI tests: the flags and OAuth2Client manifests naming the test
authorization server's clients."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.authserver.fixtures import AuthServer, TestClient


def flags(authserver: AuthServer, client: TestClient) -> list[str]:
    """The flags naming `client` at the main issuer (credentials not included)."""
    return [
        "--issuer",
        authserver.issuer,
        "--ca-file",
        str(authserver.ca_bundle),
        "--client-id",
        client.client_id,
        "--auth-method",
        client.auth_method,
    ]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def manifest(path: Path, authserver: AuthServer, client: TestClient, **spec: Any) -> Path:
    """An OAuth2Client manifest for `client`; `spec` adds or replaces spec fields."""
    document = {
        "apiVersion": "oauth2.token-operator.io/v1alpha1",
        "kind": "OAuth2Client",
        "metadata": {"name": "cli", "namespace": "default"},
        "spec": {
            "issuer": authserver.issuer,
            "clientId": client.client_id,
            "tls": {"caBundle": authserver.ca_bundle.read_text()},
            **spec,
        },
    }
    # A request in the same file, as users keep them, is skipped.
    request = {
        "apiVersion": "oauth2.token-operator.io/v1alpha1",
        "kind": "AccessTokenRequest",
        "metadata": {"name": "cli"},
        "spec": {"clientRef": {"name": "cli"}},
    }
    return write(path, yaml.safe_dump_all([document, request]))


def jwt_manifest(path: Path, authserver: AuthServer, secret_name: str) -> Path:
    """The client_secret_jwt client (HS512), its secret in key `secret` of `secret_name`."""
    return manifest(
        path,
        authserver,
        authserver.clients["client_secret_jwt"],
        authentication={
            "method": "client_secret_jwt",
            "clientSecretRef": {"name": secret_name, "key": "secret"},
            "signingAlgorithm": "HS512",
        },
    )
