"""The API reference (`docs/reference.md`), generated from the CRD schemas so that it
cannot drift from them (`make docs`; a test regenerates it and compares).

Every field of both kinds is one row: its path, type, whether it is required, its
default, its description (the model's attribute docstring) and its constraints; each
object's CEL rules follow its table as the messages the API server answers with. The
token Secret's format comes from `token_secret`'s module docstring, its single source.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oauth2_token_operator.api import token_secret
from oauth2_token_operator.api.crd import (
    API_VERSION,
    CATEGORY,
    KINDS,
    Kind,
    status_schema,
    structural_schema,
)
from oauth2_token_operator.api.durations import DURATION_PATTERN

HEADER = """\
<!-- Generated from the pydantic models in operator/oauth2_token_operator/api/ by `make docs`.
     Do not edit by hand: a test fails when this file and the models differ. -->
# API reference

Both kinds are namespaced, `apiVersion: {api_version}`, category `{category}`
(`kubectl get {category}` lists them all). Field names are as written in manifests;
a path `a.b[].c` is field `c` of each item of list `b`. **Rules** are checked by the
API server on every write (CEL `x-kubernetes-validations`): a manifest that breaks
one is refused with the message shown.
"""


@dataclass(frozen=True)
class Row:
    path: str
    type: str
    required: bool
    default: str
    description: str
    constraints: str


@dataclass(frozen=True)
class Rule:
    path: str
    message: str


def rows(schema: dict[str, Any], path: str) -> Iterator[Row | Rule]:
    """Rows for every property below `schema` (depth first), and its objects' rules."""
    for rule in schema.get("x-kubernetes-validations", []):
        yield Rule(path, rule["message"])
    required = set(schema.get("required", []))
    for name, prop in schema.get("properties", {}).items():
        child = f"{path}.{name}"
        yield Row(
            path=child,
            type=_type(prop),
            required=name in required,
            default=_default(prop),
            description=" ".join(prop.get("description", "").split()),
            constraints=_constraints(prop),
        )
        yield from _nested(prop, child)


def _nested(prop: dict[str, Any], path: str) -> Iterator[Row | Rule]:
    if prop.get("type") == "object":
        yield from rows(prop, path)
    elif prop.get("type") == "array" and prop["items"].get("type") == "object":
        yield from rows(prop["items"], f"{path}[]")


def _type(prop: dict[str, Any]) -> str:
    kind = prop.get("type", "any")
    if kind == "array":
        return f"[]{_type(prop['items'])}"
    if kind == "object" and isinstance(prop.get("additionalProperties"), dict):
        return f"map[string]{_type(prop['additionalProperties'])}"
    if kind == "string" and prop.get("pattern") == DURATION_PATTERN:
        return "duration"
    if kind == "string" and prop.get("format") == "date-time":
        return "timestamp"
    return str(kind)


def _default(prop: dict[str, Any]) -> str:
    if "default" not in prop:
        return ""
    value = prop["default"]
    return f"`{value}`" if isinstance(value, str) and value else f"`{json.dumps(value)}`"


def _constraints(prop: dict[str, Any]) -> str:
    parts: list[str] = []
    if "enum" in prop:
        parts.append("one of " + ", ".join(f"`{value}`" for value in prop["enum"]))
    for low, high, unit in (
        ("minLength", "maxLength", "characters"),
        ("minItems", "maxItems", "items"),
        ("minimum", "maximum", ""),
    ):
        if low in prop or high in prop:
            parts.append(_bounds(prop.get(low), prop.get(high), unit))
    if "pattern" in prop and prop["pattern"] != DURATION_PATTERN:
        parts.append(f"pattern `{prop['pattern']}`")
    if prop.get("type") == "array" and prop["items"].get("type") != "object":
        inner = _constraints(prop["items"])
        if inner:
            parts.append(f"each item: {inner}")
    return "; ".join(parts)


def _bounds(low: Any, high: Any, unit: str) -> str:
    unit = f" {unit}" if unit else ""
    if low is not None and high is not None:
        return f"{low} to {high}{unit}"
    if low is not None:
        return f"at least {low}{unit}"
    return f"at most {high}{unit}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def table(schema: dict[str, Any], path: str) -> str:
    """One Markdown table of every field below `schema`, then its rules."""
    lines = [
        "| Field | Type | Required | Default | Description | Constraints |",
        "|---|---|---|---|---|---|",
    ]
    rules: list[Rule] = []
    for item in rows(schema, path):
        if isinstance(item, Rule):
            rules.append(item)
            continue
        cells = (
            f"`{item.path}`",
            f"`{item.type}`",
            "yes" if item.required else "",
            item.default,
            item.description,
            item.constraints,
        )
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    if rules:
        lines += ["", "**Rules**", ""]
        lines += [f"- `{rule.path}`: {rule.message}" for rule in rules]
    return "\n".join(lines) + "\n"


def kind_section(kind: Kind) -> str:
    columns = ", ".join(
        f"{c['name']}{' (`-o wide`)' if c.get('priority') else ''}" for c in kind.columns
    )
    return "\n".join(
        [
            f"## {kind.kind}",
            "",
            f"{kind.description}",
            "",
            f"`apiVersion: {API_VERSION}`, `kind: {kind.kind}`; plural `{kind.plural}`,"
            f" short name `{kind.short_name}`. `kubectl get {kind.short_name}` shows: {columns}.",
            "",
            f"### {kind.kind} spec",
            "",
            table(structural_schema(kind.spec), "spec"),
            f"### {kind.kind} status",
            "",
            "Written by the operator only.",
            "",
            table(status_schema(kind), "status"),
        ]
    )


def secret_section() -> str:
    """The token Secret's format: `token_secret`'s docstring without its summary line."""
    doc = token_secret.__doc__ or ""
    body = doc.split("\n\n", 1)[1].strip()
    return "\n".join(
        [
            "## The token Secret",
            "",
            "What an AccessTokenRequest's Secret holds (its name is `spec.secretName`,"
            " default: the request's name).",
            "",
            body,
            "",
            f"Label: `{token_secret.MANAGED_BY_LABEL}: {token_secret.MANAGED_BY}`."
            f" Annotation: `{token_secret.TOKEN_ANNOTATION}`.",
            "",
        ]
    )


def render() -> str:
    """The whole `docs/reference.md`."""
    parts = [HEADER.format(api_version=API_VERSION, category=CATEGORY)]
    parts += [kind_section(kind) for kind in KINDS]
    parts.append(secret_section())
    return "\n".join(parts)


def write(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(), encoding="utf-8")
    return path
