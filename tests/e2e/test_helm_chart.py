"""The Helm chart deploy/helm/oauth2-token-operator, without a cluster: it lints, its
CRDs are the project's, its defaults render what deploy/ holds, and its values do what
values.yaml says. (Installed on kind: test_operator_helm.py.)"""

from __future__ import annotations

import filecmp
import importlib.util
import sys
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from oauth2_token_operator.api.crd import GROUP, VERSION
from oauth2_token_operator.cli.main import build_parser, parse_arguments
from oauth2_token_operator.cli.run import operator_config
from oauth2_token_operator.controller.shared.config import OperatorConfig
from oauth2_token_operator.oauth2.egress import DEFAULT_DENIED
from oauth2_token_operator.policies.service_accounts import DEFAULT_API_AUDIENCES
from tests.cluster.harness import KubeCluster, unique_name
from tests.cluster.rbac import ServiceAccountIdentity
from tests.e2e.ship import (
    CHART,
    CRDS,
    DEPLOY,
    EXAMPLES,
    OPERATOR_NAME,
    OPERATOR_NAMESPACE,
    ShipError,
    helm,
    helm_template,
)
from tests.polling import wait_for

#: deploy/helm/values_readme.py, the script that writes the chart README's table.
_spec = importlib.util.spec_from_file_location("values_readme", CHART.parent / "values_readme.py")
assert _spec is not None
assert _spec.loader is not None
values_readme = sys.modules.setdefault("values_readme", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(values_readme)

RELEASE_LABELS = ("app.kubernetes.io/instance", "app.kubernetes.io/version",
                  "app.kubernetes.io/managed-by", "helm.sh/chart")  # fmt: skip


def render(*values: str, release: str = OPERATOR_NAME) -> dict[tuple[str, str], dict[str, Any]]:
    """``helm template`` of the chart: (kind, name) -> manifest (of cluster-scoped and
    release-namespace objects; `helm_template` has them all)."""
    docs = helm_template(*values, release=release)
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def deploy_manifests() -> dict[tuple[str, str], dict[str, Any]]:
    docs = [d for path in sorted(DEPLOY.glob("*.yaml"))
            for d in yaml.safe_load_all(path.read_text()) if d]  # fmt: skip
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def _without_release_labels(doc: dict[str, Any]) -> dict[str, Any]:
    """The manifest minus what only Helm adds (release labels; the selector's instance)."""
    doc = yaml.safe_load(yaml.safe_dump(doc))
    for meta in (doc["metadata"], doc.get("spec", {}).get("template", {}).get("metadata", {})):
        for label in RELEASE_LABELS:
            meta.get("labels", {}).pop(label, None)
    spec = doc.get("spec", {})
    for selector in (spec.get("selector", {}).get("matchLabels"), spec.get("selector")):
        if isinstance(selector, dict):
            selector.pop("app.kubernetes.io/instance", None)
    return doc


#: Rendered with the defaults besides what deploy/ holds: the CRDs (crds/, compared
#: below), the ClusterRoles aggregated into view/edit/admin, and the `helm test` pod.
BEYOND_DEPLOY = ("CustomResourceDefinition",)
EXTRA_OBJECTS = {("ClusterRole", f"{OPERATOR_NAME}-view"), ("ClusterRole", f"{OPERATOR_NAME}-edit"),
                 ("Pod", f"{OPERATOR_NAME}-test")}  # fmt: skip


def test_chart_crds_are_the_projects() -> None:
    """The chart's copy (files/crds, which `make crds` writes) is crds/, byte for byte."""
    chart_crds = CHART / "files" / "crds"
    names = sorted(p.name for p in CRDS.glob("*.yaml"))
    assert sorted(p.name for p in chart_crds.iterdir()) == names
    _, mismatch, errors = filecmp.cmpfiles(CRDS, chart_crds, names, shallow=False)
    assert mismatch == errors == [], "run: make crds"


def _crds(rendered: dict[tuple[str, str], dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: doc for (kind, name), doc in rendered.items()
            if kind == "CustomResourceDefinition"}  # fmt: skip


def test_the_chart_installs_and_keeps_the_projects_crds() -> None:
    """As templates (so `helm upgrade` upgrades them), with the release's labels and, by
    default, helm.sh/resource-policy: keep; otherwise the objects of crds/."""
    docs = [yaml.safe_load(path.read_text()) for path in sorted(CRDS.glob("*.yaml"))]
    project = {doc["metadata"]["name"]: doc for doc in docs}
    rendered = _crds(render())
    assert sorted(rendered) == sorted(project)
    for name, doc in rendered.items():
        assert doc["metadata"].pop("annotations") == {"helm.sh/resource-policy": "keep"}
        labels = doc["metadata"]["labels"]
        assert set(RELEASE_LABELS) <= set(labels)
        assert _without_release_labels(doc) == project[name], name
    kept = _crds(render("crds.keep=false"))
    assert sorted(kept) == sorted(project)
    assert not [doc for doc in kept.values() if "annotations" in doc["metadata"]]
    assert _crds(render("crds.enabled=false")) == {}


def test_helm_lint() -> None:
    out = helm(None, "lint", "--strict", str(CHART))
    assert "1 chart(s) linted, 0 chart(s) failed" in out


def test_defaults_render_what_deploy_holds() -> None:
    """``helm install`` with default values gives the objects of ``kubectl apply -f
    deploy/`` (the Namespace aside: Helm's --create-namespace makes it)."""
    rendered = {key: _without_release_labels(doc) for key, doc in render().items()
                if key[0] not in BEYOND_DEPLOY and key not in EXTRA_OBJECTS}  # fmt: skip
    expected = {key: doc for key, doc in deploy_manifests().items() if key[0] != "Namespace"}
    assert sorted(rendered) == sorted(expected)
    for key, doc in expected.items():
        assert rendered[key] == doc, key


def _container(rendered: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    deployment = rendered["Deployment", OPERATOR_NAME]
    container: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return container


def test_values_watched_namespaces_and_logging() -> None:
    container = _container(
        render("watchNamespaces={team-a,team-b}", "logLevel=DEBUG", "logFormat=text")
    )
    args = container["args"]
    assert args[:2] == ["--namespace=team-a", "--namespace=team-b"]
    assert "--all-namespaces" not in args
    assert {"--log-level=DEBUG", "--log-format=text"} <= set(args)


def test_watched_namespaces_get_roles_and_the_cluster_role_keeps_only_cluster_reads() -> None:
    """Serving some namespaces, the operator is granted in each what it does there, and
    cluster-wide only what it reads everywhere; serving all, the ClusterRole has both
    (the same rules as deploy/, compared above)."""
    docs = helm_template("watchNamespaces={team-a,team-b}")
    cluster_role = next(
        d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"] == OPERATOR_NAME
    )
    assert {r for rule in cluster_role["rules"] for r in rule["resources"]} == {
        "namespaces",
        "customresourcedefinitions",
    }
    ours = [d for d in docs if d["metadata"]["name"] == OPERATOR_NAME]
    roles = {d["metadata"]["namespace"]: d for d in ours if d["kind"] == "Role"}
    bindings = {d["metadata"]["namespace"]: d for d in ours if d["kind"] == "RoleBinding"}
    assert sorted(roles) == sorted(bindings) == ["team-a", "team-b"]
    everywhere = render()["ClusterRole", OPERATOR_NAME]["rules"]
    for namespace, role in roles.items():
        assert role["rules"] + cluster_role["rules"] == everywhere, namespace
        # Minting ServiceAccount tokens (service_account_token) only where it serves.
        granted = {
            (r, v) for rule in role["rules"] for r in rule["resources"] for v in rule["verbs"]
        }
        assert {("serviceaccounts", "get"), ("serviceaccounts/token", "create")} <= granted
        binding = bindings[namespace]
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": OPERATOR_NAME,
        }
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": OPERATOR_NAME, "namespace": OPERATOR_NAMESPACE}
        ]


SEAL = f"{OPERATOR_NAME}-seal"


def test_the_seal_key_lives_in_the_release_namespace() -> None:
    """The operator is told where its seal key is; serving only some namespaces, it is
    granted that one Secret (and creating it) in its own namespace, and no other."""
    everywhere = render()
    assert f"--seal-secret={OPERATOR_NAMESPACE}/{SEAL}" in _container(everywhere)["args"]
    assert ("Role", SEAL) not in everywhere  # the ClusterRole covers it
    scoped = render("watchNamespaces={team-a}")
    role, binding = scoped["Role", SEAL], scoped["RoleBinding", SEAL]
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == OPERATOR_NAMESPACE
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [SEAL], "verbs": ["get"]},
    ]
    assert binding["roleRef"]["name"] == SEAL
    assert binding["subjects"][0]["namespace"] == OPERATOR_NAMESPACE


def test_values_metrics_and_service_monitor() -> None:
    off = render("metrics.enabled=false")
    assert "--metrics-port=0" in _container(off)["args"]
    assert not [key for key in off if key[0] in ("Service", "ServiceMonitor")]
    assert ("ServiceMonitor", OPERATOR_NAME) not in render()
    monitor = render(
        "metrics.serviceMonitor.enabled=true", "metrics.serviceMonitor.labels.release=kp"
    )
    endpoints = monitor["ServiceMonitor", OPERATOR_NAME]["spec"]["endpoints"]
    # honorLabels: the metrics' own `namespace` and `name` (the request's) win.
    assert endpoints == [{"port": "metrics", "interval": "30s", "honorLabels": True}]
    assert monitor["ServiceMonitor", OPERATOR_NAME]["metadata"]["labels"]["release"] == "kp"
    tuned = render(
        "metrics.serviceMonitor.enabled=true",
        "metrics.serviceMonitor.scrapeTimeout=5s",
        "metrics.serviceMonitor.relabelings[0].targetLabel=cluster",
        "metrics.serviceMonitor.relabelings[0].replacement=prod",
        "metrics.serviceMonitor.metricRelabelings[0].action=drop",
        "metrics.serviceMonitor.metricRelabelings[0].regex=go_.*",
    )
    (endpoint,) = tuned["ServiceMonitor", OPERATOR_NAME]["spec"]["endpoints"]
    assert endpoint["scrapeTimeout"] == "5s"
    assert endpoint["relabelings"] == [{"targetLabel": "cluster", "replacement": "prod"}]
    assert endpoint["metricRelabelings"] == [{"action": "drop", "regex": "go_.*"}]
    rules = render(
        "metrics.prometheusRule.enabled=true", "metrics.prometheusRule.labels.release=kp"
    )
    assert rules["PrometheusRule", OPERATOR_NAME]["metadata"]["labels"]["release"] == "kp"
    assert ("PrometheusRule", OPERATOR_NAME) not in render()


def test_values_proxy_and_extra_env() -> None:
    container = _container(
        render(
            "proxy.httpsProxy=http://proxy.corp:3128",
            "proxy.noProxy=.corp",
            "extraEnv[0].name=EXTRA",
            "extraEnv[0].value=on-top",
        )
    )
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["HTTPS_PROXY"] == "http://proxy.corp:3128"
    # The API server is never sent through the proxy.
    assert env["NO_PROXY"] == "$(KUBERNETES_SERVICE_HOST),.svc,.cluster.local,.corp"
    assert env["EXTRA"] == "on-top"
    assert "env" not in _container(render())


def test_values_image_resources_and_security_context() -> None:
    rendered = render(
        "image.repository=registry.example/oto",
        "image.tag=1.2.3",
        "resources.limits.memory=1Gi",
        "securityContext.readOnlyRootFilesystem=false",
    )
    container = _container(rendered)
    assert container["image"] == "registry.example/oto:1.2.3"
    assert container["resources"]["limits"] == {"memory": "1Gi"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is False


LEASE_RBAC = (("Role", f"{OPERATOR_NAME}-leader-election"),
              ("RoleBinding", f"{OPERATOR_NAME}-leader-election"))  # fmt: skip


def test_one_replica_without_leader_election_is_never_two_at_once() -> None:
    for replicas in (0, 1):
        rendered = render(f"replicaCount={replicas}")
        deployment = rendered["Deployment", OPERATOR_NAME]
        assert deployment["spec"]["replicas"] == replicas
        assert deployment["spec"]["strategy"] == {"type": "Recreate"}
        assert "--leader-election" not in _container(rendered)["args"]
        assert not set(LEASE_RBAC) & set(rendered)


@pytest.mark.parametrize("values", [("replicaCount=3",), ("leaderElection.enabled=true",)])
def test_more_replicas_or_asking_turns_leader_election_on(values: tuple[str, ...]) -> None:
    rendered = render(*values)
    deployment = rendered["Deployment", OPERATOR_NAME]
    container = _container(rendered)
    assert {"--leader-election", f"--lease-name={OPERATOR_NAME}"} <= set(container["args"])
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container["env"]}
    assert env == {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    role = rendered[LEASE_RBAC[0]]
    assert role["metadata"]["namespace"] == OPERATOR_NAMESPACE
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
         "verbs": ["get", "create", "update"]}
    ]  # fmt: skip
    binding = rendered[LEASE_RBAC[1]]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert (
        binding["subjects"][0]["name"]
        == deployment["spec"]["template"]["spec"]["serviceAccountName"]
    )


def test_release_name_prefixes_objects() -> None:
    names = {name for kind, name in render(release="tokens") if kind not in BEYOND_DEPLOY}
    assert names == {"tokens-oauth2-token-operator", "tokens-oauth2-token-operator-metrics",
                     "tokens-oauth2-token-operator-view", "tokens-oauth2-token-operator-edit",
                     "tokens-oauth2-token-operator-test"}  # fmt: skip


EGRESS_FLAGS = ("--deny-cidr", "--allow-issuer", "--forbid-insecure-http",
                "--metrics-bind-address", "--health-bind-address")  # fmt: skip


def _operator_config(rendered: dict[tuple[str, str], dict[str, Any]]) -> OperatorConfig:
    """What the operator makes of the rendered arguments (its own parser)."""
    return operator_config(parse_arguments(build_parser(), ["run", *_container(rendered)["args"]]))


def test_values_egress_and_bind_addresses() -> None:
    """No egress values: no flags, so the operator's own defaults (deploy/ says the same);
    each value becomes the flag the operator reads as meant."""
    defaults = render()
    assert not [a for a in _container(defaults)["args"] if a.startswith(EGRESS_FLAGS)]
    assert _operator_config(defaults).deny_cidrs == DEFAULT_DENIED
    config = _operator_config(
        render(
            "egress.denyCIDRs={169.254.0.0/16,fd00:ec2::254/128}",
            "egress.allowIssuers={*.example.com,login.microsoftonline.com}",
            "egress.forbidInsecureHTTP=true",
            "metrics.bindAddress=::",
            "healthBindAddress=10.1.2.3",
        )
    )
    assert config.deny_cidrs == ("169.254.0.0/16", "fd00:ec2::254/128")
    assert config.allow_issuers == ("*.example.com", "login.microsoftonline.com")
    assert config.forbid_insecure_http
    assert (config.metrics_bind_address, config.health_bind_address) == ("::", "10.1.2.3")
    # An empty list, given: nothing denied (the tests' own servers are on loopback).
    assert _operator_config(render("egress.denyCIDRs={}")).deny_cidrs == ()


def test_values_kubernetes_api_audiences() -> None:
    """Audiences never minted for: the defaults always, and those the values add."""
    assert _operator_config(render()).kubernetes_api_audiences == DEFAULT_API_AUDIENCES
    config = _operator_config(
        render("serviceAccountTokens.kubernetesAPIAudiences={https://oidc.example.com/c1}")
    )
    assert config.kubernetes_api_audiences == (
        *DEFAULT_API_AUDIENCES,
        "https://oidc.example.com/c1",
    )


def _network_policy(*values: str) -> dict[str, Any]:
    rendered = render("networkPolicy.enabled=true", *values)
    policy: dict[str, Any] = rendered["NetworkPolicy", OPERATOR_NAME]
    return policy


def test_no_network_policy_unless_enabled() -> None:
    assert not [key for key in render() if key[0] == "NetworkPolicy"]


def test_the_network_policy_lets_out_dns_the_api_server_and_443_and_lets_in_no_one() -> None:
    spec = _network_policy()["spec"]
    assert spec["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": OPERATOR_NAME,
        "app.kubernetes.io/instance": OPERATOR_NAME,
    }
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["ingress"] == []
    dns, api_server, authorization_servers = spec["egress"]
    assert dns == {
        "to": [
            {
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                },
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
            }
        ],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    }
    assert api_server == {
        "ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}]
    }
    assert authorization_servers == {"ports": [{"protocol": "TCP", "port": 443}]}  # anywhere


def test_the_network_policy_values() -> None:
    spec = _network_policy(
        "networkPolicy.ingressFrom[0].namespaceSelector.matchLabels.team=monitoring",
        "networkPolicy.apiServer.cidrs={172.18.0.2/32}",
        "networkPolicy.apiServer.ports={6443}",
        "networkPolicy.authorizationServers.cidrs={203.0.113.0/24,2001:db8::/32}",
        "networkPolicy.extraEgress[0].ports[0].port=8443",
        "metrics.port=9090",
        "healthPort=9091",
    )["spec"]
    assert spec["ingress"] == [
        {
            "from": [{"namespaceSelector": {"matchLabels": {"team": "monitoring"}}}],
            "ports": [{"protocol": "TCP", "port": 9090}, {"protocol": "TCP", "port": 9091}],
        }
    ]
    _, api_server, authorization_servers, extra = spec["egress"]
    assert api_server == {
        "ports": [{"protocol": "TCP", "port": 6443}],
        "to": [{"ipBlock": {"cidr": "172.18.0.2/32"}}],
    }
    assert authorization_servers["to"] == [
        {"ipBlock": {"cidr": "203.0.113.0/24"}},
        {"ipBlock": {"cidr": "2001:db8::/32"}},
    ]
    assert extra == {"ports": [{"port": 8443}]}
    without_metrics = _network_policy(
        "metrics.enabled=false", "networkPolicy.ingressFrom[0].podSelector.matchLabels.a=b"
    )
    assert without_metrics["spec"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 8081}]


@pytest.mark.cluster
def test_the_api_server_accepts_the_network_policy(kube_admin: k8s.ApiClient) -> None:
    """Its defaults and every value above, as the real API server validates them."""
    for values in (
        (),
        (
            "networkPolicy.ingressFrom[0].namespaceSelector.matchLabels.team=monitoring",
            "networkPolicy.apiServer.cidrs={172.18.0.2/32}",
            "networkPolicy.authorizationServers.cidrs={203.0.113.0/24,2001:db8::/32}",
            "networkPolicy.extraEgress[0].ports[0].port=8443",
        ),
    ):
        policy = _network_policy(*values)
        body = k8s.V1NetworkPolicy.model_validate({**policy, "metadata": {"name": "dry-run"}})
        sent = kube_admin.sanitize_for_serialization(body)  # type: ignore[no-untyped-call]
        assert sent["spec"] == policy["spec"]
        k8s.NetworkingV1Api(kube_admin).create_namespaced_network_policy(
            "default", body, dry_run="All"
        )


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("replicaCont=2", "additional properties 'replicaCont' not allowed"),
        ("metrics.serviceMonitor.enable=true", "additional properties 'enable' not allowed"),
        ("replicaCount=two", "got string, want integer"),
        ("logLevel=debug", "value must be one of"),
        ("image.digest=latest", "does not match pattern"),
        ("metrics.port=0", "minimum"),
    ],
)
def test_the_schema_refuses_a_typo_or_a_wrong_type(value: str, complaint: str) -> None:
    with pytest.raises(ShipError) as refused:
        helm_template(value)
    assert "values don't meet the specifications of the schema" in str(refused.value)
    assert complaint in str(refused.value)


def test_the_readme_lists_every_value_as_values_yaml_describes_it() -> None:
    """The chart README's table is what deploy/helm/values_readme.py makes of values.yaml
    (run it after changing values.yaml), and every value is described there, by its own
    comment or the map's it is in."""
    readme = (CHART / "README.md").read_text()
    assert readme == values_readme.render(readme, (CHART / "values.yaml").read_text()), (
        "stale: run python deploy/helm/values_readme.py"
    )
    values = values_readme.parse((CHART / "values.yaml").read_text())
    described = {value.path for value in values if value.description}
    undescribed = [
        value.path
        for value in values
        if value.leaf
        and not any(
            ".".join(value.path.split(".")[:n]) in described
            for n in range(1, value.path.count(".") + 2)
        )
    ]
    assert undescribed == []
    rows = {line.split("`")[1] for line in readme.splitlines() if line.startswith("| `")}
    assert {value.path for value in values if value.leaf} <= rows
    assert "`crds.keep` | `true`" in readme


def test_values_scheduling_volumes_args_and_digest() -> None:
    rendered = render(
        "priorityClassName=system-cluster-critical",
        "topologySpreadConstraints[0].maxSkew=1",
        "topologySpreadConstraints[0].topologyKey=topology.kubernetes.io/zone",
        "topologySpreadConstraints[0].whenUnsatisfiable=ScheduleAnyway",
        "nodeSelector.pool=system",
        "tolerations[0].key=dedicated",
        "tolerations[0].operator=Exists",
        "extraArgs={--breaker-failures=9}",
        "extraVolumes[0].name=ca",
        "extraVolumes[0].configMap.name=corp-ca",
        "extraVolumeMounts[0].name=ca",
        "extraVolumeMounts[0].mountPath=/etc/corp-ca",
        "image.digest=sha256:" + "ab" * 32,
        "podLabels.team=platform",
        "podAnnotations.note=hi",
    )
    pod = rendered["Deployment", OPERATOR_NAME]["spec"]["template"]
    spec = pod["spec"]
    assert spec["priorityClassName"] == "system-cluster-critical"
    assert spec["topologySpreadConstraints"] == [
        {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
         "whenUnsatisfiable": "ScheduleAnyway"}
    ]  # fmt: skip
    assert spec["nodeSelector"] == {"pool": "system"}
    assert spec["tolerations"] == [{"key": "dedicated", "operator": "Exists"}]
    assert spec["volumes"][1:] == [{"name": "ca", "configMap": {"name": "corp-ca"}}]
    container = _container(rendered)
    assert container["volumeMounts"][1:] == [{"name": "ca", "mountPath": "/etc/corp-ca"}]
    assert container["args"][-1] == "--breaker-failures=9"
    # The operator reads the last of a repeated flag: extraArgs win over the chart's.
    assert _operator_config(rendered).breaker_failures == 9
    assert container["image"] == "oauth2-token-operator@sha256:" + "ab" * 32
    assert pod["metadata"]["labels"]["team"] == "platform"
    assert pod["metadata"]["annotations"] == {"note": "hi"}
    defaults = render()["Deployment", OPERATOR_NAME]["spec"]["template"]["spec"]
    assert not {"priorityClassName", "topologySpreadConstraints"} & set(defaults)


def test_values_names_and_service_account() -> None:
    renamed = render("nameOverride=tokens")
    deployment = renamed["Deployment", f"{OPERATOR_NAME}-tokens"]
    assert deployment["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] == "tokens"
    full = render("fullnameOverride=oto", "serviceAccount.labels.team=platform",
                  "serviceAccount.automountServiceAccountToken=true")  # fmt: skip
    assert {name for kind, name in full if kind in ("Deployment", "ServiceAccount")} == {"oto"}
    account = full["ServiceAccount", "oto"]
    assert account["metadata"]["labels"]["team"] == "platform"
    assert account["automountServiceAccountToken"] is True
    assert full["ClusterRoleBinding", "oto"]["subjects"][0]["name"] == "oto"
    assert render()["ServiceAccount", OPERATOR_NAME]["automountServiceAccountToken"] is False


def test_a_pod_disruption_budget_only_with_more_than_one_replica() -> None:
    for replicas in (0, 1):
        assert not [k for k in render(f"replicaCount={replicas}") if k[0] == "PodDisruptionBudget"]
    budget = render("replicaCount=2")["PodDisruptionBudget", OPERATOR_NAME]
    assert budget["spec"] == {
        "minAvailable": 1,
        "selector": {"matchLabels": {"app.kubernetes.io/name": OPERATOR_NAME,
                                     "app.kubernetes.io/instance": OPERATOR_NAME}},
    }  # fmt: skip
    other = render("replicaCount=3", "podDisruptionBudget.maxUnavailable=50%")
    assert other["PodDisruptionBudget", OPERATOR_NAME]["spec"]["maxUnavailable"] == "50%"
    assert "minAvailable" not in other["PodDisruptionBudget", OPERATOR_NAME]["spec"]
    off = render("replicaCount=2", "podDisruptionBudget.enabled=false")
    assert not [k for k in off if k[0] == "PodDisruptionBudget"]


def test_aggregated_cluster_roles_for_view_edit_and_admin() -> None:
    rendered = render()
    view, edit = (
        rendered["ClusterRole", f"{OPERATOR_NAME}-view"],
        rendered["ClusterRole", f"{OPERATOR_NAME}-edit"],
    )
    aggregate = "rbac.authorization.k8s.io/aggregate-to-"

    def aggregated_to(role: dict[str, Any]) -> set[str]:
        labels = role["metadata"]["labels"].items()
        return {
            k.removeprefix(aggregate) for k, v in labels if k.startswith(aggregate) and v == "true"
        }

    assert aggregated_to(view) == {"view", "edit", "admin"}
    assert aggregated_to(edit) == {"edit", "admin"}
    kinds = ["accesstokenrequests", "oauth2clients"]
    group = ["oauth2.token-operator.io"]
    assert view["rules"] == [
        {"apiGroups": group, "resources": kinds, "verbs": ["get", "list", "watch"]}
    ]
    writes = ["create", "update", "patch", "delete", "deletecollection"]
    assert edit["rules"] == [{"apiGroups": group, "resources": kinds, "verbs": writes}]
    off = render("rbac.aggregate.enabled=false")
    assert [name for kind, name in off if kind == "ClusterRole"] == [OPERATOR_NAME]


def test_the_helm_test_pod() -> None:
    rendered = render()
    pod = rendered["Pod", f"{OPERATOR_NAME}-test"]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (container,) = pod["spec"]["containers"]
    assert container["image"] == _container(rendered)["image"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["OPERATOR_URL"] == (
        f"http://{OPERATOR_NAME}-metrics.{OPERATOR_NAMESPACE}.svc:8080/metrics"
    )
    assert (
        render("metrics.enabled=false")["Pod", f"{OPERATOR_NAME}-test"]["spec"]["containers"][0][
            "env"
        ][0]["value"]
        == ""
    )
    assert not [k for k in render("helmTest.enabled=false") if k[0] == "Pod"]


@pytest.mark.cluster
def test_the_built_in_roles_get_the_operators_kinds(
    kube_cluster: KubeCluster, kube_admin: k8s.ApiClient, kube_namespace: str
) -> None:
    """The chart's aggregated ClusterRoles, on the real API server and its aggregation
    controller: a user bound to `edit` in a namespace creates AccessTokenRequests and
    OAuth2Clients there, one bound to `view` reads but does not create them; without the
    chart's roles, `edit` may not."""
    rbac = k8s.RbacAuthorizationV1Api(kube_admin)
    roles = [d for d in helm_template() if d["kind"] == "ClusterRole"
             and d["metadata"]["name"] != OPERATOR_NAME]  # fmt: skip
    assert len(roles) == 2
    users: dict[str, ServiceAccountIdentity] = {}
    for built_in in ("edit", "view"):
        identity = kube_cluster.service_account(unique_name(built_in), kube_namespace)
        rbac.create_namespaced_role_binding(
            kube_namespace,
            k8s.V1RoleBinding.model_validate(
                {
                    "metadata": {"name": identity.name},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                "name": built_in},
                    "subjects": [{"kind": "ServiceAccount", "name": identity.name,
                                  "namespace": kube_namespace}],
                }
            ),
        )  # fmt: skip
        users[built_in] = identity

    examples = {
        doc["kind"]: doc
        for name in ("client", "client-credentials-request")
        for doc in yaml.safe_load_all((EXAMPLES / f"{name}.yaml").read_text())
    }

    def create(built_in: str, kind: str) -> int:
        """The API server's answer to the user creating (dry run) the example object."""
        plural = f"{kind.lower()}s"
        with users[built_in].client() as api:
            try:
                k8s.CustomObjectsApi(api).create_namespaced_custom_object(
                    GROUP, VERSION, kube_namespace, plural, examples[kind], dry_run="All"
                )
            except ApiException as exc:
                return int(exc.status)
        return 201

    assert create("edit", "AccessTokenRequest") == 403
    created: list[str] = []
    try:
        for role in roles:
            name = unique_name(role["metadata"]["name"])
            metadata = {**role["metadata"], "name": name}
            rbac.create_cluster_role(
                k8s.V1ClusterRole.model_validate({**role, "metadata": metadata})
            )
            created.append(name)
        wait_for(
            "edit to be granted AccessTokenRequests",
            lambda: create("edit", "AccessTokenRequest") == 201,
            30,
            every=0.5,
        )
        assert create("edit", "OAuth2Client") == 201
        assert create("view", "AccessTokenRequest") == 403
        with users["view"].client() as api:
            listed: Any = k8s.CustomObjectsApi(api).list_namespaced_custom_object(
                GROUP, VERSION, kube_namespace, "accesstokenrequests"
            )
        assert listed["items"] == []
    finally:
        for name in created:
            rbac.delete_cluster_role(name)
