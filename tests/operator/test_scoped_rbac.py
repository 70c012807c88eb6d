"""An operator installed by the chart for some namespaces holds a Role in each and reads
only namespaces and CRDs cluster-wide: it serves those namespaces fully (issue, Events,
revocation on deletion) and can touch no Secret elsewhere. The rules are the chart's
own, rendered by `helm template`, and the API server enforces them."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from tests.cluster.harness import KubeCluster, unique_name
from tests.e2e.ship import OPERATOR_NAME, helm_template
from tests.operator.conftest import Namespace, introspect, wait_for
from tests.operator.runner import OperatorThread


def test_an_operator_serving_one_namespace_needs_only_the_charts_role_there(
    kube_cluster: KubeCluster,
    ns: Namespace,
    operator_factory: Callable[..., OperatorThread],
    caplog: pytest.LogCaptureFixture,
) -> None:
    docs = helm_template(f"watchNamespaces={{{ns.name}}}")
    (cluster_role,) = (
        d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"] == OPERATOR_NAME
    )
    (role,) = (d for d in docs if d["kind"] == "Role" and d["metadata"]["namespace"] == ns.name)
    assert role["metadata"]["namespace"] == ns.name
    identity = kube_cluster.service_account(
        unique_name("scoped-operator"),
        ns.name,
        rules=role["rules"],
        cluster_rules=cluster_role["rules"],
    )
    # Its seal key where its Role reaches (the chart's seal Role is for its own namespace).
    operator_factory(
        configuration=identity.configuration(), namespaces=(ns.name,), seal_namespace=ns.name
    )

    server = ns.authserver
    ns.client("idp", server.clients["client_secret_basic"])
    ns.request("billing", "idp")
    assert ns.wait_ready("billing")["reason"] == "TokenValid"
    data = ns.token_secret("billing")
    assert data is not None
    token = data["access_token"]
    assert "Issued" in {reason for reason, _ in ns.events("billing")}

    ns.delete("accesstokenrequests", "billing")
    wait_for("the request to go", lambda: ns.get("accesstokenrequests", "billing") is None, 30)
    info = introspect(server, token, server.clients["client_secret_basic"])
    assert info["active"] is False, "revoked through the finalizer"

    with identity.client() as api:
        core = k8s.CoreV1Api(api)
        with pytest.raises(ApiException) as refused:
            core.list_secret_for_all_namespaces(limit=1)
        assert refused.value.status == 403
        assert core.list_namespaced_secret(ns.name, limit=1).items is not None
    refusals = [
        r.getMessage()
        for r in caplog.records
        if re.search(r"forbidden|\b403\b", r.getMessage(), re.I)
    ]
    assert refusals == []
