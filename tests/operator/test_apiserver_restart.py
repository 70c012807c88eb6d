"""A restarted kube-apiserver (every watch dropped, a few seconds of outage): the operator
reconnects, restores a Secret edited meanwhile and serves new requests. A control plane
of its own, since restarting the session's would disturb other tests."""

from __future__ import annotations

import pytest
from kubernetes import client as k8s

from oauth2_token_operator.controller.config import OperatorConfig
from tests.authserver.fixtures import AuthServer
from tests.cluster.control_plane import ControlPlane
from tests.cluster.fixtures import PROJECT_CRDS
from tests.cluster.harness import use_existing_cluster
from tests.operator.conftest import Namespace, wait_for
from tests.operator.runner import running_operator

pytestmark = [pytest.mark.cluster, pytest.mark.authserver]


@pytest.mark.skipif(use_existing_cluster(), reason="restarts its own kube-apiserver")
def test_the_operator_survives_an_apiserver_restart(authserver: AuthServer) -> None:
    with (
        ControlPlane(crds=sorted(PROJECT_CRDS.glob("*.yaml"))) as plane,
        plane.admin_client() as api,
    ):
        k8s.CoreV1Api(api).create_namespace(
            k8s.V1Namespace.model_validate({"metadata": {"name": "restart"}})
        )
        ns = Namespace(api, "restart", authserver)
        config = OperatorConfig(metrics_port=None, health_port=None)
        with running_operator(plane.configuration(), config):
            ns.client("idp", authserver.clients["client_secret_basic"])
            ns.request("before", "idp", scopes=["read"])
            ns.wait_ready("before")
            original = ns.token_secret("before")

            plane.restart_apiserver(downtime=3)
            ns.core.patch_namespaced_secret(
                "before", "restart", {"stringData": {"access_token": "edited"}}
            )
            wait_for(
                "the edited Secret restored after the restart",
                lambda: ns.token_secret("before") == original,
                timeout=60,
            )
            ns.request("after", "idp", scopes=["write"])
            ns.wait_ready("after", timeout=60)
            for name in ("before", "after"):
                ns.delete("accesstokenrequests", name)
            wait_for(
                "finalizers", lambda: ns.get("accesstokenrequests", "after") is None, timeout=30
            )
            ns.delete("oauth2clients", "idp")
            wait_for("the client", lambda: ns.get("oauth2clients", "idp") is None, timeout=30)
