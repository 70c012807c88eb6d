"""The chart's alerts (issue 25): `promtool check rules` on the PrometheusRule the chart
renders, `promtool test rules` on each alert with series (`alerts_test.yaml`), and every
metric an alert names is one the operator serves.

promtool is built from the Prometheus Go module (`tests/monitoring/build.sh`)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import yaml

from oauth2_token_operator.controller.shared.metrics import Metrics
from tests.e2e.ship import helm_template
from tests.monitoring.promtool import refuses, run

HERE = Path(__file__).resolve().parent
RULE_TEMPLATE = "templates/prometheusrule.yaml"


def rendered_rules(*values: str) -> dict[str, object]:
    """The rule groups of the chart's PrometheusRule, as a Prometheus rule file."""
    docs = helm_template("metrics.prometheusRule.enabled=true", *values)
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    return {"groups": rule["spec"]["groups"]}


def test_the_rules_check_and_every_alert_passes_its_unit_test(
    promtool: Path, tmp_path: Path
) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rendered_rules()))
    shutil.copy(HERE / "alerts_test.yaml", tmp_path)
    assert "SUCCESS" in run(promtool, "check", "rules", "rules.yaml", cwd=tmp_path)
    run(promtool, "test", "rules", "alerts_test.yaml", cwd=tmp_path)


def test_every_alert_has_a_unit_test() -> None:
    alerts = {r["alert"] for g in rendered_rules()["groups"] for r in g["rules"]}  # type: ignore[attr-defined]
    tested = {
        t["alertname"]
        for case in yaml.safe_load((HERE / "alerts_test.yaml").read_text())["tests"]
        for t in case["alert_rule_test"]
        if t["exp_alerts"]
    }
    assert alerts == tested


def test_the_alerts_name_only_metrics_the_operator_serves() -> None:
    served = {sample_family.name for sample_family in Metrics().registry.collect()}
    counters = {f"{name}_total" for name in served}
    text = yaml.safe_dump(rendered_rules())
    named = set(re.findall(r"\b(oauth2_token_operator_[a-z0-9_]+)", text))
    assert named
    assert named <= served | counters


def test_a_broken_expression_is_refused(promtool: Path, tmp_path: Path) -> None:
    """The check above can fail: promtool refuses a rule file with a bad expression."""
    rules = rendered_rules()
    rules["groups"][0]["rules"][0]["expr"] = "rate(oauth2_token_operator_request_ready[5m]"  # type: ignore[index]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    assert refuses(promtool, "check", "rules", "rules.yaml", cwd=tmp_path)
