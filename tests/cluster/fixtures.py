"""pytest fixtures for the test control plane (see harness.py and README.md)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client as k8s

from tests.cluster.harness import (
    ControlPlane,
    KubeCluster,
    kube_cluster_context,
    processes_using,
)

#: The project's CRDs, applied before kube-controller-manager starts (so its garbage
#: collector knows them at once) or, on an existing cluster, applied and left there.
PROJECT_CRDS = Path(__file__).resolve().parents[2] / "crds"


@pytest.fixture(scope="session")
def kube_cluster() -> Iterator[KubeCluster]:
    """The session's Kubernetes cluster: started here, or the existing one if asked for."""
    workdir: Path | None = None
    crds = sorted([*PROJECT_CRDS.glob("*.yaml"), *PROJECT_CRDS.glob("*.yml")])
    with kube_cluster_context(crds=crds) as cluster:
        if isinstance(cluster, ControlPlane):
            workdir = cluster.workdir
        yield cluster
    if workdir is not None:
        # Teardown is part of the contract: nothing may outlive the session.
        left = processes_using(workdir)
        assert not left, f"control-plane processes left running: {left}"
        assert not workdir.exists(), f"work dir left behind: {workdir}"


@pytest.fixture(scope="session")
def kube_admin(kube_cluster: KubeCluster) -> Iterator[k8s.ApiClient]:
    """An admin ApiClient (sync) for the session's cluster."""
    with kube_cluster.admin_client() as api:
        yield api


@pytest.fixture
def kube_namespace(kube_cluster: KubeCluster) -> Iterator[str]:
    """A fresh namespace, deleted (without waiting) after the test."""
    with kube_cluster.temporary_namespace() as name:
        yield name
