"""`spec.rolloutRestartTargets` (issue 25): after each new token, the named workloads of
the request's namespace that opted in get a new rollout (their pod template annotated, as
`kubectl rollout restart` does); one that did not opt in is left alone, with a Warning.
(The restart of real pods, which read the token from their environment, is tested on
kind: tests/e2e.)"""

from __future__ import annotations

import time
from typing import Any

from kubernetes import client as k8s

from oauth2_token_operator.api.labels import USABLE_BY_OPERATOR
from oauth2_token_operator.policies.rollout_restarts import RESTARTED_AT
from tests.operator.conftest import Namespace, settle, wait_for
from tests.operator.runner import OperatorThread


def deployment(ns: Namespace, name: str, *, opted_in: bool) -> None:
    labels = {"app": name, **({USABLE_BY_OPERATOR: "true"} if opted_in else {})}
    body: dict[str, Any] = {
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "example.test/reader:1"}]},
            },
        },
    }
    k8s.AppsV1Api(ns.api).create_namespaced_deployment(
        ns.name, k8s.V1Deployment.model_validate(body)
    )


def restarted_at(ns: Namespace, name: str) -> str | None:
    found = k8s.AppsV1Api(ns.api).read_namespaced_deployment(name, ns.name)
    template = found.spec.template.metadata if found.spec is not None else None
    annotations = (template.annotations if template is not None else None) or {}
    return annotations.get(RESTARTED_AT)


def test_workloads_that_opted_in_restart_after_each_new_token(
    ns: Namespace, operator_factory: Any
) -> None:
    operator: OperatorThread = operator_factory(rollout_restart_min_interval=0)
    deployment(ns, "reader", opted_in=True)
    deployment(ns, "stranger", opted_in=False)
    ns.client("idp", ns.authserver.clients["client_secret_basic"])
    targets = [{"kind": "Deployment", "name": n} for n in ("reader", "stranger", "missing")]
    ns.request("api", "idp", rolloutRestartTargets=targets)
    ns.wait_ready("api")
    first = wait_for("a restart", lambda: restarted_at(ns, "reader"), timeout=15)
    assert restarted_at(ns, "stranger") is None
    settle(operator, ns, "api")
    status = (ns.get("accesstokenrequests", "api") or {})["status"]
    assert status["rolloutRestartRevision"] == 1
    events = ns.events("api")
    assert [m for r, m in events if r == "RolloutRestarted"] == [
        "restarted Deployment reader for token revision 1"
    ]
    refused = [m for r, m in events if r == "RolloutRestartFailed"]
    assert len(refused) == 2
    assert any("stranger lacks the label" in m for m in refused)
    assert any("missing not found" in m for m in refused)

    time.sleep(1.1)  # the annotation holds whole seconds
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time()))
    renew = {"oauth2.token-operator.io/renew-requested-at": at}
    ns.patch("accesstokenrequests", "api", {"metadata": {"annotations": renew}})
    wait_for(
        "a second restart", lambda: restarted_at(ns, "reader") not in (None, first), timeout=15
    )
    settle(operator, ns, "api")
    status = (ns.get("accesstokenrequests", "api") or {})["status"]
    assert status["revision"] == status["rolloutRestartRevision"] == 2
    assert restarted_at(ns, "stranger") is None


def test_a_restarted_operator_does_not_restart_them_again(
    ns: Namespace, operator_factory: Any
) -> None:
    first = operator_factory(rollout_restart_min_interval=0)
    deployment(ns, "reader", opted_in=True)
    ns.client("idp", ns.authserver.clients["client_secret_basic"])
    ns.request("api", "idp", rolloutRestartTargets=[{"kind": "Deployment", "name": "reader"}])
    ns.wait_ready("api")
    restarted = wait_for("a restart", lambda: restarted_at(ns, "reader"), timeout=15)
    settle(first, ns, "api")
    first.stop()
    time.sleep(1.1)
    second = operator_factory(rollout_restart_min_interval=0)
    settle(second, ns, "api")
    assert restarted_at(ns, "reader") == restarted
    assert [r for r, _ in ns.events("api")].count("RolloutRestarted") == 1
