"""For tests that restart kube-apiserver: a control plane of their own (restarting the
session's would disturb other tests) with the operator and one Ready request, and the
check that the operator still serves after the fault."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from kubernetes import client as k8s

from tests.authserver.fixtures import AuthServer
from tests.cluster.control_plane import ControlPlane
from tests.cluster.fixtures import PROJECT_CRDS
from tests.operator.conftest import Namespace, wait_for
from tests.operator.runner import loopback_config, running_operator


@contextlib.contextmanager
def operator_on_own_plane(
    authserver: AuthServer, namespace: str
) -> Iterator[tuple[ControlPlane, Namespace]]:
    """The operator on a fresh control plane, with client `idp` and request `before`
    Ready in `namespace`."""
    with (
        ControlPlane(crds=sorted(PROJECT_CRDS.glob("*.yaml"))) as plane,
        plane.admin_client() as api,
    ):
        k8s.CoreV1Api(api).create_namespace(
            k8s.V1Namespace.model_validate({"metadata": {"name": namespace}})
        )
        ns = Namespace(api, namespace, authserver)
        config = loopback_config(metrics_port=None, health_port=None)
        with running_operator(plane.configuration(), config):
            ns.client("idp", authserver.clients["client_secret_basic"])
            ns.request("before", "idp", scopes=["read"])
            ns.wait_ready("before")
            yield plane, ns


def assert_still_serving(ns: Namespace, original: dict[str, str] | None) -> None:
    """Request `before`'s edited Secret is restored to `original`, a new request becomes
    Ready, and both are finalized (their finalizers handled) before the plane goes."""
    ns.core.patch_namespaced_secret("before", ns.name, {"stringData": {"access_token": "edited"}})
    wait_for(
        "the edited Secret restored after the fault",
        lambda: ns.token_secret("before") == original,
        timeout=60,
    )
    ns.request("after", "idp", scopes=["write"])
    ns.wait_ready("after", timeout=60)
    for name in ("before", "after"):
        ns.delete("accesstokenrequests", name)
    wait_for(
        "finalizers",
        lambda: (
            not ns.get("accesstokenrequests", "before")
            and not ns.get("accesstokenrequests", "after")
        ),
        timeout=30,
    )
    ns.delete("oauth2clients", "idp")
    wait_for("the client", lambda: ns.get("oauth2clients", "idp") is None, timeout=30)
