"""Fixtures of the operator's kind tests: its image and the authorization server's,
loaded on the session's kind node, and the server running in the cluster."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client as k8s

from tests.e2e.cluster_authserver import ClusterAuthServer, deploy_authserver
from tests.e2e.images import build_authserver_image, build_operator_image
from tests.e2e.kind import KindCluster

#: Access tokens of client `renewal-ttl` live this long on the in-cluster server: long
#: enough for a renewal to reach a mounted file before expiry (kubelet sync 5 s here),
#: short enough to watch two renewals.
SHORT_LIFETIME = 30


@pytest.fixture(scope="session")
def operator_image(kind_cluster: KindCluster) -> str:
    """The operator image (Dockerfile), built and loaded on the kind node."""
    tag = build_operator_image()
    kind_cluster.load_image(tag)
    return tag


@pytest.fixture(scope="session")
def cluster_authserver(
    kind_cluster: KindCluster, kind_admin: k8s.ApiClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ClusterAuthServer]:
    """oidc-provider in its own namespace of the kind cluster, for the whole session."""
    tag = build_authserver_image(tmp_path_factory.mktemp("authserver-image"))
    kind_cluster.load_image(tag)
    with kind_cluster.temporary_namespace("authserver") as namespace:
        yield deploy_authserver(
            kind_admin, namespace, tag, ttl_overrides={"renewal-ttl": SHORT_LIFETIME}
        )
