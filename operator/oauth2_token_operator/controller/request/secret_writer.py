"""Writes a token Secret: create, or replace the one we own, never anyone else's.

Conflicts (someone wrote the Secret since we saw it) are retried with a fresh read;
a Secret whose `type` changed in the template is deleted and created again (`type`
is immutable). Labels and annotations others added are kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from oauth2_token_operator.api.token_secret import is_owned_by
from oauth2_token_operator.kube.api import Conflict, KubeApi, KubeApiError


class SecretConflictError(Exception):
    """The Secret exists and belongs to someone else."""


async def write_token_secret(
    kube: KubeApi,
    desired: Mapping[str, Any],
    existing: Mapping[str, Any] | None,
    *,
    owner_uid: str,
    attempts: int = 4,
) -> dict[str, Any]:
    """Write `desired`; return the Secret as the API server stored it."""
    namespace = desired["metadata"]["namespace"]
    name = desired["metadata"]["name"]
    for _ in range(attempts):
        if existing is None:
            try:
                return await kube.create_secret(namespace, desired)
            except Conflict:
                existing = await kube.read_secret(namespace, name)
                continue
        if not is_owned_by(existing, owner_uid):
            raise SecretConflictError(name)
        meta = existing["metadata"]
        if existing.get("type", "Opaque") != desired["type"]:
            await kube.delete_secret(namespace, name, uid=meta["uid"])
            existing = None
            continue
        body = _merged(desired, existing)
        try:
            return await kube.replace_secret(namespace, body)
        except Conflict:
            existing = await kube.read_secret(namespace, name)
    raise KubeApiError(f"Secret {namespace}/{name}: still conflicting after {attempts} writes")


def _merged(desired: Mapping[str, Any], existing: Mapping[str, Any]) -> dict[str, Any]:
    """`desired`, keeping what others added to the metadata, at `existing`'s version."""
    have = existing["metadata"]
    want = desired["metadata"]
    return {
        **desired,
        "metadata": {
            **want,
            "resourceVersion": have["resourceVersion"],
            "labels": {**(have.get("labels") or {}), **want["labels"]},
            "annotations": {**(have.get("annotations") or {}), **want["annotations"]},
        },
    }
