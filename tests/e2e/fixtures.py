"""pytest fixtures for the kind tests (see kind.py and README.md)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import NoReturn

import pytest
from kubernetes import client as k8s

from tests.e2e.images import build_probe_image
from tests.e2e.kind import KindCluster, KindUnavailable, in_ci, kind_cluster_context, leftovers


def engine_unavailable(exc: KindUnavailable) -> NoReturn:
    """Skip the kind tests with the reason; under CI (``CI=true``) fail them instead."""
    reason = f"kind tests need a container engine: {exc}"
    if in_ci():
        pytest.fail(f"{reason} (CI is set: the kind tests must run here, not skip)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def kind_cluster() -> Iterator[KindCluster]:
    """The session's kind cluster: created here (and deleted), or KIND_CLUSTER's."""
    with contextlib.ExitStack() as stack:
        try:
            cluster = stack.enter_context(kind_cluster_context())
        except KindUnavailable as exc:
            engine_unavailable(exc)
        yield cluster
    if cluster.started:
        # Teardown is part of the contract: nothing may outlive the session.
        left = leftovers(cluster.name)
        assert not left, f"kind cluster left behind: {left}"
        assert not cluster.kubeconfig.exists(), f"kubeconfig left: {cluster.kubeconfig}"


@pytest.fixture(scope="session")
def kind_admin(kind_cluster: KindCluster) -> Iterator[k8s.ApiClient]:
    """An admin ApiClient (sync) for the session's kind cluster."""
    with kind_cluster.admin_client() as api:
        yield api


@pytest.fixture(scope="session")
def probe_image(kind_cluster: KindCluster, tmp_path_factory: pytest.TempPathFactory) -> str:
    """tests/e2e/probe as an image on the kind node (``imagePullPolicy: Never``)."""
    tag = build_probe_image(tmp_path_factory.mktemp("images"))
    kind_cluster.load_image(tag)
    return tag


@pytest.fixture
def kind_namespace(kind_cluster: KindCluster) -> Iterator[str]:
    """A fresh namespace, ready for pods; deleted (without waiting) after the test."""
    with kind_cluster.temporary_namespace("e2e") as name:
        kind_cluster.wait_for_service_account(name)
        yield name
