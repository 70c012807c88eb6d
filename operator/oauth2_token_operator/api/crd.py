"""The CRDs, generated from the pydantic models so the two cannot drift.

`crds/*.yaml` is this module's output (`make crds`); a test regenerates it and
compares. The conversion turns pydantic's JSON Schema into a Kubernetes
structural schema: references inlined, `Optional` unwrapped, titles dropped,
`x-kubernetes-validations` (CEL) carried over from the models.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from oauth2_token_operator.api.accesstokenrequest import (
    AccessTokenRequestSpec,
    AccessTokenRequestStatus,
)
from oauth2_token_operator.api.oauth2client import OAuth2ClientSpec, OAuth2ClientStatus
from oauth2_token_operator.api.references import GROUP as GROUP  # re-exported: its home of old

VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
CATEGORY = "oauth2"

_READY = '.status.conditions[?(@.type=="Ready")]'


@dataclass(frozen=True)
class Kind:
    kind: str
    plural: str
    short_name: str
    spec: type[BaseModel]
    status: type[BaseModel]
    description: str
    columns: tuple[dict[str, Any], ...]

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"


OAUTH2_CLIENT = Kind(
    kind="OAuth2Client",
    plural="oauth2clients",
    short_name="oac",
    spec=OAuth2ClientSpec,
    status=OAuth2ClientStatus,
    description="An OAuth2 authorization server and the credentials to talk to it.",
    columns=(
        {"name": "Ready", "type": "string", "jsonPath": f"{_READY}.status"},
        {"name": "Issuer", "type": "string", "jsonPath": ".spec.issuer"},
        {"name": "Client ID", "type": "string", "jsonPath": ".spec.clientId"},
        {"name": "Reason", "type": "string", "jsonPath": f"{_READY}.reason"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ),
)
ACCESS_TOKEN_REQUEST = Kind(
    kind="AccessTokenRequest",
    plural="accesstokenrequests",
    short_name="atr",
    spec=AccessTokenRequestSpec,
    status=AccessTokenRequestStatus,
    description="Keep a valid OAuth2 access token with these scopes in this Secret.",
    columns=(
        # The reason by default, as External Secrets shows its status; `-o wide` adds more.
        {"name": "Ready", "type": "string", "jsonPath": f"{_READY}.status"},
        {"name": "Reason", "type": "string", "jsonPath": f"{_READY}.reason"},
        {"name": "Secret", "type": "string", "jsonPath": ".status.secretName"},
        # `date` columns print the age of a time: a future expiry would show "<invalid>".
        {"name": "Expires", "type": "string", "jsonPath": ".status.expiresAt"},
        {"name": "Client", "type": "string", "jsonPath": ".spec.clientRef.name", "priority": 1},
        {"name": "Renewal", "type": "string", "jsonPath": ".status.renewalTime", "priority": 1},
        {"name": "Revision", "type": "integer", "jsonPath": ".status.revision", "priority": 1},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ),
)
KINDS = (OAUTH2_CLIENT, ACCESS_TOKEN_REQUEST)

_DROPPED_KEYS = frozenset({"title", "$defs"})
_KEY_ORDER = {"description": 0, "type": 1}


def _one_line_paragraphs(text: str) -> str:
    """Docstring line breaks are layout, not meaning: keep only paragraph breaks."""
    return "\n\n".join(" ".join(p.split()) for p in text.split("\n\n"))


def structural_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's validation JSON Schema as a Kubernetes structural schema."""
    schema = model.model_json_schema(by_alias=True, mode="validation")
    definitions = schema.get("$defs", {})
    converted: dict[str, Any] = _convert(schema, definitions)
    return converted


def _convert(node: Any, definitions: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_convert(item, definitions) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$ref" in node:
        target = definitions[node.pop("$ref").rsplit("/", 1)[-1]]
        node = {**copy.deepcopy(target), **node}
    if "anyOf" in node:
        options = [o for o in node.pop("anyOf") if o != {"type": "null"}]
        if len(options) != 1:
            raise ValueError(f"no structural form for a union of {options}")
        node = {**_convert(options[0], definitions), **node}
        if node.get("default", ...) is None:
            del node["default"]
    result: dict[str, Any] = {}
    for key in sorted(node, key=lambda k: _KEY_ORDER.get(k, len(_KEY_ORDER))):
        value = node[key]
        if key in _DROPPED_KEYS:
            continue
        if key == "description":
            result[key] = _one_line_paragraphs(value)
        elif key == "properties":
            result[key] = {name: _convert(prop, definitions) for name, prop in value.items()}
        else:
            result[key] = _convert(value, definitions)
    if (
        result.get("type") == "object"
        and "properties" not in result
        and ("additionalProperties" not in result)
    ):
        result["x-kubernetes-preserve-unknown-fields"] = True
    return result


def status_schema(kind: Kind) -> dict[str, Any]:
    schema = structural_schema(kind.status)
    schema["properties"]["kopf"] = {
        "type": "object",
        "description": "The operator framework's own bookkeeping (kopf progress storage).",
        "x-kubernetes-preserve-unknown-fields": True,
    }
    return schema


def custom_resource_definition(kind: Kind) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": kind.crd_name,
            "labels": {"app.kubernetes.io/name": "oauth2-token-operator"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.kind.lower(),
                "shortNames": [kind.short_name],
                "categories": [CATEGORY],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": list(kind.columns),
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": kind.description,
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": structural_schema(kind.spec),
                                "status": status_schema(kind),
                            },
                        }
                    },
                }
            ],
        },
    }


def render(kind: Kind) -> str:
    """The CRD as the YAML file in `crds/`."""
    header = (
        "# Generated from the pydantic models in operator/oauth2_token_operator/api/"
        " by `make crds`.\n# Do not edit by hand: a test fails when this file and the"
        " models differ.\n"
    )
    body: str = yaml.safe_dump(
        custom_resource_definition(kind), sort_keys=False, width=100, allow_unicode=True
    )
    return header + body


def file_name(kind: Kind) -> str:
    return f"{kind.plural}.yaml"


def write_all(directory: Path) -> list[Path]:
    """Write every CRD into `directory`; return the paths written."""
    written = []
    for kind in KINDS:
        path = directory / file_name(kind)
        path.write_text(render(kind), encoding="utf-8")
        written.append(path)
    return written
