"""The user docs (docs/how-it-works.md, upgrade, uninstall, troubleshooting, faq) name
flags, condition and Event reasons, metrics, chart values, status and spec fields,
annotations and tests: each one they name in backticks exists in the code, so the docs
cannot drift from it (a renamed reason or flag fails here, not in a user's cluster)."""

from __future__ import annotations

import argparse
import ast
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.metrics import MetricWrapperBase

from oauth2_token_operator.cli.main import build_parser
from oauth2_token_operator.controller.shared.metrics import PREFIX, Metrics, ObjectGauge

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "operator" / "oauth2_token_operator"
DOCS = ("how-it-works", "upgrade", "uninstall", "troubleshooting", "faq")
CHART_VALUES = ROOT / "deploy" / "helm" / "oauth2-token-operator" / "values.yaml"

DERIVED = {
    # Reasons the code builds from a referenced object's kind (`Secret` or `ConfigMap`).
    "SecretNotFound": 'f"{key.kind}NotFound"',
    "ConfigMapNotFound": 'f"{key.kind}NotFound"',
    "ConfigMapKeyMissing": 'f"{key.kind}KeyMissing"',
}
KINDS = 'kind: Literal["Secret", "ConfigMap"]'
"""Where the kinds of `SecretKey` are declared (api/oauth2client.py)."""

POD_FIELDS = frozenset({"secretKeyRef", "subPath", "deletionTimestamp"})
"""Kubernetes' own fields the docs name (of a pod spec, of metadata)."""

SPANS = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")


def spans(doc: str) -> list[str]:
    """Inline code spans of a doc, fenced blocks left out."""
    text = re.sub(r"```.*?```", "", (ROOT / "docs" / f"{doc}.md").read_text(), flags=re.S)
    return SPANS.findall(text)


@cache
def literals() -> frozenset[str]:
    """Every string constant of the package (f-strings' constant parts included)."""
    found: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found.add(node.value)
    return frozenset(found)


@cache
def source() -> str:
    return "\n".join(path.read_text() for path in sorted(PACKAGE.rglob("*.py")))


@cache
def options() -> frozenset[str]:
    """Every option of every command of the CLI."""
    found: set[str] = set()
    parsers = [build_parser()]
    while parsers:
        parser = parsers.pop()
        for action in parser._actions:
            found.update(s for s in action.option_strings if s.startswith("--"))
            if isinstance(action, argparse._SubParsersAction):
                parsers.extend(action.choices.values())
    return frozenset(found)


@cache
def metric_labels() -> dict[str, frozenset[str]]:
    """Every metric the operator serves (as exposed: counters with `_total`), with the
    names of its labels."""
    metrics = Metrics()
    exposed = set(re.findall(r"^# HELP (\S+)", generate_latest(metrics.registry).decode(), re.M))
    found: dict[str, frozenset[str]] = {}
    for metric in vars(metrics).values():
        if isinstance(metric, ObjectGauge):
            found[metric.name] = frozenset(metric._labels)
        elif isinstance(metric, MetricWrapperBase):
            for name in (metric._name, f"{metric._name}_total"):
                if name in exposed:
                    found[name] = frozenset(metric._labelnames)
    served = {name for name in exposed if not name.endswith("_created")}  # client's own
    assert set(found) == served, "every metric served is known, with its labels"
    return found


@cache
def crd_fields() -> dict[str, frozenset[str]]:
    """Property names anywhere under spec and status, in either CRD."""
    found: dict[str, set[str]] = {"spec": set(), "status": set()}

    def walk(schema: Any, into: set[str]) -> None:
        if isinstance(schema, dict):
            for name, sub in (schema.get("properties") or {}).items():
                into.add(name)
                walk(sub, into)
            walk(schema.get("items"), into)

    for path in (ROOT / "crds").glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        for version in crd["spec"]["versions"]:
            properties = version["schema"]["openAPIV3Schema"]["properties"]
            for top in found:
                walk(properties.get(top), found[top])
    return {top: frozenset(names) for top, names in found.items()}


def chart_value(path: str) -> bool | None:
    """Whether a dotted chart value exists; `None` when the first part is no top-level
    value (then it is not a value, e.g. `status.renewalTime`)."""
    values = yaml.safe_load(CHART_VALUES.read_text())
    first, *rest = path.split(".")
    if first not in values:
        return None
    node = values[first]
    for part in rest:
        if part == "*":
            return isinstance(node, dict)
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def check(span: str) -> str | None:
    """Why `span` names something that does not exist; `None` if it exists or is not
    a name this test knows how to check."""
    if re.search(r"\.(md|ya?ml|json)$", span):
        return None  # a file
    if m := re.fullmatch(r"(--[a-z][a-z-]*)(=.*)?", span):
        return None if m[1] in options() else f"no option {m[1]}"
    if m := re.fullmatch(rf"(?:{PREFIX}|…)(_[a-z0-9_]+)(?:\{{(.*)\}})?", span):
        name = PREFIX + m[1]
        if name not in metric_labels():
            return "no such metric"
        labels = set(re.findall(r"([a-z_]+)(?:=\"[^\"]*\")?", m[2] or ""))
        return None if labels <= metric_labels()[name] else f"labels {labels}?"
    if m := re.fullmatch(r"([A-Z][a-zA-Z]+)=(True|False)(?: ([A-Z][a-zA-Z]+))?", span):
        unknown = {word for word in (m[1], m[3]) if word and check(word) is not None}
        return f"no {unknown}" if unknown else None
    if m := re.fullmatch(r"(?:True|False) ([A-Z][a-zA-Z]+)", span):
        return check(m[1])
    if re.fullmatch(r"[A-Z][a-zA-Z0-9]+", span):
        if span in DERIVED:
            derived = DERIVED[span] in source() and KINDS in source()
            return None if derived else "not derived as documented"
        return None if span in literals() else "no such string in the package"
    if m := re.fullmatch(r"(oauth2\.token-operator\.io/[a-z-]+)(: .*)?", span):
        suffix = m[1].removeprefix("oauth2.token-operator.io/")
        named = m[1] in literals() or f'f"{{GROUP}}/{suffix}"' in source()
        return None if named else "no such annotation, label or finalizer"
    if m := re.fullmatch(r"(spec|status)\.([a-zA-Z.]+)", span):
        missing = [p for p in m[2].split(".") if p not in crd_fields()[m[1]]]
        return f"no field {missing}" if missing else None
    if m := re.fullmatch(r"tests/[\w/]+\.py(::(\w+))?", span):
        path = ROOT / span.split("::")[0]
        if not path.is_file():
            return "no such test file"
        wanted = m[2] or r"test_\w+"
        found = re.search(rf"^(async )?def {wanted}\(", path.read_text(), re.M)
        return None if found else "no such test"
    if m := re.fullmatch(r"([a-z][a-zA-Z]*(?:\.(?:[a-zA-Z]+|\*))*)(?:: .*)?", span):
        # A chart value or a field of the CRDs: dotted (`introspection.interval`) or
        # camelCase (`renewBefore`); a plain lowercase word is not checked.
        dotted: str = m[1]
        if "." not in dotted and dotted == dotted.lower():
            return None
        exists = chart_value(dotted)
        if exists is not None:
            return None if exists else "no such chart value"
        if dotted in POD_FIELDS or set(dotted.split(".")) <= crd_fields()["spec"]:
            return None
        return "no such chart value or CRD field"
    return None


@pytest.mark.parametrize("doc", DOCS)
def test_every_name_a_doc_cites_exists(doc: str) -> None:
    cited = spans(doc)
    assert len(cited) > 10, cited
    wrong = {span: why for span in cited if (why := check(span)) is not None}
    assert not wrong, f"docs/{doc}.md names what the code does not have: {wrong}"


def test_the_checks_catch_a_wrong_name() -> None:
    """A misspelt name of each kind is caught (else the test above proves nothing)."""
    for span in (
        "--min-renewal-leads",
        "oauth2_token_operator_revocation_total",
        "…_request_readiness",
        "RevocationFail",
        "SecretNotFoundd",
        "oauth2.token-operator.io/revoke-token",
        "status.renewalTimes",
        "tests/operator/test_state_and_sharing.py::test_restart_adopts",
        "leaderElection.enable",
        "renewBeforePercent",
        "introspection.intervals",
        "Ready=False Expird",
        'oauth2_token_operator_revocations_total{result="failed"}',
    ):
        assert check(span) is not None, span


@pytest.mark.parametrize("doc", DOCS)
def test_the_readme_links_each_doc(doc: str) -> None:
    assert f"(docs/{doc}.md)" in (ROOT / "README.md").read_text()
