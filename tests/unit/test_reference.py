"""docs/reference.md: generated from the models, complete, and in step with them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from oauth2_token_operator.api.crd import KINDS, Kind, status_schema, structural_schema
from oauth2_token_operator.api.reference import Row, Rule, render, rows, secret_section, table
from oauth2_token_operator.api.secret_data import DATA_KEYS

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "reference.md"


def test_the_committed_reference_is_generated_from_the_models() -> None:
    assert REFERENCE.read_text(encoding="utf-8") == render(), (
        "docs/reference.md is stale: run `make docs`"
    )


def _rows(kind: Kind) -> dict[str, Row]:
    found = [*rows(structural_schema(kind.spec), "spec"), *rows(status_schema(kind), "status")]
    return {row.path: row for row in found if isinstance(row, Row)}


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_every_field_is_described(kind: Kind) -> None:
    """A field added without an attribute docstring fails here, not in a user's hands."""
    undescribed = [path for path, row in _rows(kind).items() if not row.description]
    assert undescribed == []


def test_rows_carry_types_defaults_and_requiredness() -> None:
    client, request = (_rows(kind) for kind in KINDS)
    assert client["spec.issuer"].required
    assert not client["spec.endpoints"].required
    assert client["spec.introspection.minInterval"].type == "duration"
    assert client["spec.introspection.minInterval"].default == "`30s`"
    assert client["spec.allowInsecureHTTP"].default == "`false`"
    assert client["spec.authentication.method"].default == "`client_secret_basic`"
    assert "one of `client_secret_basic`" in client["spec.authentication.method"].constraints
    assert request["spec.resources"].type == "[]string"
    assert request["spec.resources"].constraints.startswith("at most 16 items; each item: ")
    assert request["spec.secretTemplate.labels"].type == "map[string]string"
    assert request["spec.renewBeforePercentage"].constraints == "1 to 99"
    assert request["status.conditions[].lastTransitionTime"].type == "timestamp"


def test_rules_are_listed_with_the_object_they_constrain() -> None:
    client, request = ([*rows(structural_schema(kind.spec), "spec")] for kind in KINDS)
    assert Rule("spec.tls", "set caBundle or caBundleFrom, not both") in client
    assert (
        Rule(
            "spec",
            "refreshTokenSecretRef is required for the refresh_token grant and forbidden otherwise",
        )
        in request
    )
    assert "- `spec.tls`: set caBundle or caBundleFrom, not both" in render()


def test_pipes_in_cells_do_not_break_the_tables() -> None:
    schema = {"properties": {"x": {"type": "string", "pattern": "^(a|b)$", "description": "a|b"}}}
    row = table(schema, "spec").splitlines()[2]
    assert len(re.findall(r"(?<!\\)\|", row)) == 7
    for line in render().splitlines():
        if line.startswith(("| `spec.", "| `status.")):
            assert len(re.findall(r"(?<!\\)\|", line)) == 7, line


def test_the_secret_format_lists_exactly_the_keys_the_operator_writes() -> None:
    keys = re.findall(r"^\| `([a-z_]+)` \|", secret_section(), flags=re.MULTILINE)
    assert tuple(keys) == DATA_KEYS
