"""Which object a log line is about, as fields of its own: kopf's JSON log format writes a
record's `k8s_ref` as `"object": {"apiVersion", "kind", "namespace", "name"}`, and its text
format prefixes `[namespace/name]`, so a log search can select by object without parsing
messages. Never anything of the object's content."""

from __future__ import annotations

from typing import Any

from oauth2_token_operator.api.crd import ACCESS_TOKEN_REQUEST, API_VERSION, OAUTH2_CLIENT


def about(kind: str, namespace: str, name: str, api_version: str = API_VERSION) -> dict[str, Any]:
    """`extra=` for a log call about one object."""
    ref = {"apiVersion": api_version, "kind": kind, "namespace": namespace, "name": name}
    return {"k8s_ref": ref}


def about_request(key: tuple[str, str]) -> dict[str, Any]:
    return about(ACCESS_TOKEN_REQUEST.kind, *key)


def about_client(key: tuple[str, str]) -> dict[str, Any]:
    return about(OAUTH2_CLIENT.kind, *key)
