"""The chart's Grafana dashboard (issue 25): a ConfigMap Grafana's sidecar picks up, its
JSON well formed, every panel's query valid PromQL (promtool checks them as recording
rules, Grafana's variables replaced) over metrics the operator serves.

No Grafana runs here (its server needs a front-end build this machine cannot do
offline), so the dashboard is checked, not rendered."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from oauth2_token_operator.controller.shared.metrics import Metrics
from tests.e2e.ship import helm_template
from tests.monitoring.promtool import refuses, run

VARIABLES = {"$__rate_interval": "5m", "$job": ".+"}


def dashboard(*values: str) -> tuple[dict[str, Any], dict[str, Any]]:
    docs = helm_template("metrics.grafanaDashboard.enabled=true", *values)
    (config_map,) = [
        d for d in docs if d["kind"] == "ConfigMap" and "dashboard" in d["metadata"]["name"]
    ]
    return config_map, json.loads(config_map["data"]["oauth2-token-operator.json"])


def queries(board: dict[str, Any]) -> list[str]:
    found = [target["expr"] for panel in board["panels"] for target in panel["targets"]]
    for variable in board["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            found.append(re.sub(r"label_values\((\w+), \w+\)", r"\1", query["query"]))
    return found


def test_the_sidecar_finds_it_and_every_query_is_valid(promtool: Path, tmp_path: Path) -> None:
    config_map, board = dashboard()
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert board["uid"] == "oauth2-token-operator"
    assert len({panel["id"] for panel in board["panels"]}) == len(board["panels"])
    exprs = queries(board)
    assert len(exprs) >= 10
    for variable, value in VARIABLES.items():
        exprs = [e.replace(variable, value) for e in exprs]
    rules = [{"record": f"dashboard:query_{i}", "expr": e} for i, e in enumerate(exprs)]
    (tmp_path / "queries.yaml").write_text(
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]})
    )
    run(promtool, "check", "rules", "--lint=none", "queries.yaml", cwd=tmp_path)


def test_the_queries_name_only_metrics_the_operator_serves() -> None:
    served = {family.name for family in Metrics().registry.collect()}
    kinds = {f"{name}{suffix}" for name in served for suffix in ("", "_total", "_bucket")}
    named = set(
        re.findall(r"\b(oauth2_token_operator_[a-z0-9_]+)", " ".join(queries(dashboard()[1])))
    )
    assert named
    assert named <= kinds


def test_it_goes_to_grafanas_namespace_when_asked() -> None:
    config_map, _ = dashboard("metrics.grafanaDashboard.namespace=monitoring")
    assert config_map["metadata"]["namespace"] == "monitoring"


def test_a_bad_query_is_refused(promtool: Path, tmp_path: Path) -> None:
    """The check above can fail."""
    bad = {"groups": [{"name": "d", "rules": [{"record": "d:q", "expr": "sum by (le (x)"}]}]}
    (tmp_path / "queries.yaml").write_text(yaml.safe_dump(bad))
    assert refuses(promtool, "check", "rules", "queries.yaml", cwd=tmp_path)
