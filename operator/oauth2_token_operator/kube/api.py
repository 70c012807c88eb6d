"""The few API calls the operator makes itself, through the official kubernetes client
(by path: `kube.rest`).

The client is synchronous: every call runs in a worker thread (`asyncio.to_thread`),
never on the event loop. Objects come back as plain JSON dicts (one `json.loads` of the
body), which is what the pure layers take and avoids building the client's model
objects. Failures, answered or not, become `NotFound` / `Conflict` /
`KubeApiError`.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Mapping
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from oauth2_token_operator.api.crd import GROUP, VERSION
from oauth2_token_operator.kube.rest import PathApi

MERGE_PATCH = "application/merge-patch+json"
FIELD_MANAGER = "oauth2-token-operator"

SECRETS = "/api/v1/namespaces/{namespace}/secrets"
SECRET = SECRETS + "/{name}"
CONFIG_MAP = "/api/v1/namespaces/{namespace}/configmaps/{name}"
SERVICE_ACCOUNT = "/api/v1/namespaces/{namespace}/serviceaccounts/{name}"
SERVICE_ACCOUNT_TOKEN = SERVICE_ACCOUNT + "/token"
CUSTOM_STATUS = f"/apis/{GROUP}/{VERSION}/namespaces/{{namespace}}/{{plural}}/{{name}}/status"
WORKLOAD = "/apis/apps/v1/namespaces/{namespace}/{plural}/{name}"
WORKLOAD_PLURALS = {"Deployment": "deployments", "StatefulSet": "statefulsets",
                    "DaemonSet": "daemonsets"}  # fmt: skip
LEASES_PATH = "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
LEASE = LEASES_PATH + "/{name}"

JsonObject = dict[str, Any]

ObjectKey = tuple[str, str]
"""`(namespace, name)` of a namespaced object: how the cache (`kube.cache`), the ledger,
the schedulers and the metrics name one."""


def version_of(obj: Mapping[str, Any]) -> int | None:
    """The object's resourceVersion as the integer it is on etcd-backed API servers (None
    where it is not one)."""
    value = (obj.get("metadata") or {}).get("resourceVersion")
    return int(value) if isinstance(value, str) and value.isdigit() else None


class KubeApiError(Exception):
    """An API call failed; the message carries the status and the server's reason only."""

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        """Seconds the server asked us to wait (`Retry-After` of a 429 or 503)."""


class NotFound(KubeApiError):
    pass


class Conflict(KubeApiError):
    """409: the object changed since it was read (or already exists)."""


SIZE_LIMITS = frozenset({"FieldValueTooLong", "FieldValueTooMany"})
"""Causes whose message states a limit and never echoes the value."""


def _cause(cause: dict[str, object]) -> str:
    """A 422's cause: the field and why, with the limit for a size; never the value (an
    "Invalid value" message quotes it, and for a Secret that could be a token)."""
    field = str(cause.get("field") or "?")
    reason = str(cause.get("reason") or "")
    if reason in SIZE_LIMITS:
        return f"{field}: {str(cause.get('message') or reason)[:200]}"
    return f"{field}: {reason}" if reason else field


def api_error(exc: ApiException, what: str) -> KubeApiError:
    # Only the status and the server's `reason`: never the body, which for a Secret
    # could echo what we sent.
    reason = ""
    causes: list[str] = []
    try:
        status = json.loads(exc.body or "{}")
        reason = str(status.get("reason") or "")
        causes = [_cause(c) for c in (status.get("details") or {}).get("causes") or ()][:5]
    except (ValueError, AttributeError, TypeError):
        reason = ""
    message = f"{what}: HTTP {exc.status}{f' {reason}' if reason else ''}"
    if causes:
        message += " (" + "; ".join(causes) + ")"
    if exc.status == 404:
        return NotFound(message, status=404)
    if exc.status == 409:
        return Conflict(message, status=409)
    return KubeApiError(message, status=exc.status, retry_after=_retry_after(exc))


MAX_RETRY_AFTER = 3600.0
"""A `Retry-After` longer than an hour (or not a finite number) is read as an hour."""


def _retry_after(exc: ApiException) -> float | None:
    """`Retry-After` in seconds (the API server sends no HTTP dates); `None` if absent or
    unreadable, never an exception."""
    value = (exc.headers or {}).get("Retry-After")
    try:
        seconds = float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
    if seconds is None or math.isnan(seconds):
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER)


class KubeApi:
    """Async facade over the official client for Secrets, ConfigMaps, ServiceAccounts
    (and their tokens), Leases and the custom resources' status (by path: `kube.rest`)."""

    def __init__(self, api_client: k8s.ApiClient) -> None:
        self._paths = PathApi(api_client)

    async def _call(self, what: str, method: str, template: str, **kwargs: Any) -> Any:
        def run() -> Any:
            try:
                response = self._paths.call(method, template, **kwargs)
            except ApiException as exc:
                raise api_error(exc, what) from None
            except urllib3.exceptions.HTTPError as exc:
                # No answer: refused, reset, or closed after the request went out (the
                # client retries only idempotent calls, and gives up after 3).
                raise KubeApiError(f"{what}: no answer ({type(exc).__name__})") from None
            return json.loads(response.data) if response.data else None

        return await asyncio.to_thread(run)

    async def _read(self, what: str, template: str, **path: str) -> JsonObject | None:
        try:
            found: JsonObject = await self._call(what, "GET", template, path=path)
        except NotFound:
            return None
        return found

    async def read_secret(self, namespace: str, name: str) -> JsonObject | None:
        return await self._read(
            f"reading Secret {namespace}/{name}", SECRET, namespace=namespace, name=name
        )

    async def create_secret(self, namespace: str, body: Mapping[str, Any]) -> JsonObject:
        name = body["metadata"]["name"]
        created: JsonObject = await self._call(
            f"creating Secret {namespace}/{name}",
            "POST",
            SECRETS,
            path={"namespace": namespace},
            query={"field_manager": FIELD_MANAGER},
            body=dict(body),
        )
        return created

    async def replace_secret(self, namespace: str, body: Mapping[str, Any]) -> JsonObject:
        """PUT: with `metadata.resourceVersion` set, fails with `Conflict` if it changed."""
        name = body["metadata"]["name"]
        replaced: JsonObject = await self._call(
            f"replacing Secret {namespace}/{name}",
            "PUT",
            SECRET,
            path={"namespace": namespace, "name": name},
            query={"field_manager": FIELD_MANAGER},
            body=dict(body),
        )
        return replaced

    async def delete_secret(self, namespace: str, name: str, *, uid: str | None = None) -> bool:
        """Delete; with `uid`, only that very object (a precondition). False if gone."""
        body = {"preconditions": {"uid": uid}} if uid else None
        try:
            await self._call(
                f"deleting Secret {namespace}/{name}",
                "DELETE",
                SECRET,
                path={"namespace": namespace, "name": name},
                body=body,
            )
        except NotFound:
            return False
        return True

    async def read_config_map(self, namespace: str, name: str) -> JsonObject | None:
        return await self._read(
            f"reading ConfigMap {namespace}/{name}", CONFIG_MAP, namespace=namespace, name=name
        )

    async def read_service_account(self, namespace: str, name: str) -> JsonObject | None:
        return await self._read(
            f"reading ServiceAccount {namespace}/{name}",
            SERVICE_ACCOUNT,
            namespace=namespace,
            name=name,
        )

    async def create_service_account_token(
        self, namespace: str, name: str, *, audience: str, expiration_seconds: int
    ) -> JsonObject:
        """A TokenRequest (`serviceaccounts/token` create): the answer's `status` holds
        the token and its `expirationTimestamp`. Nothing of it is logged here; a failure's
        message carries the status and the server's reason only (`api_error`)."""
        created: JsonObject = await self._call(
            f"requesting a token of ServiceAccount {namespace}/{name}",
            "POST",
            SERVICE_ACCOUNT_TOKEN,
            path={"namespace": namespace, "name": name},
            body={
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"audiences": [audience], "expirationSeconds": expiration_seconds},
            },
        )
        return created

    async def patch_status(
        self, plural: str, namespace: str, name: str, status: Mapping[str, Any]
    ) -> JsonObject:
        """Merge-patch the status subresource of one of our custom objects."""
        patched: JsonObject = await self._call(
            f"patching status of {plural}/{namespace}/{name}",
            "PATCH",
            CUSTOM_STATUS,
            path={"plural": plural, "namespace": namespace, "name": name},
            query={"field_manager": FIELD_MANAGER},
            body={"status": dict(status)},
            content_type=MERGE_PATCH,
        )
        return patched

    async def read_workload(self, kind: str, namespace: str, name: str) -> JsonObject | None:
        """A Deployment, StatefulSet or DaemonSet."""
        return await self._read(
            f"reading {kind} {namespace}/{name}",
            WORKLOAD,
            plural=WORKLOAD_PLURALS[kind],
            namespace=namespace,
            name=name,
        )

    async def annotate_pod_template(
        self, kind: str, namespace: str, name: str, annotations: Mapping[str, str]
    ) -> None:
        """Merge-patch annotations into a workload's pod template: a new rollout, as
        `kubectl rollout restart` makes."""
        await self._call(
            f"patching {kind} {namespace}/{name}",
            "PATCH",
            WORKLOAD,
            path={"plural": WORKLOAD_PLURALS[kind], "namespace": namespace, "name": name},
            query={"field_manager": FIELD_MANAGER},
            body={"spec": {"template": {"metadata": {"annotations": dict(annotations)}}}},
            content_type=MERGE_PATCH,
        )

    # Leases as plain JSON too: the typed API turns bodies into models and back, and
    # writes a MicroTime with zero microseconds in a form the API server refuses
    # ("2027-01-15T08:00:00+00:00").

    async def read_lease(self, namespace: str, name: str) -> JsonObject | None:
        return await self._read(
            f"reading Lease {namespace}/{name}", LEASE, namespace=namespace, name=name
        )

    async def create_lease(self, namespace: str, body: Mapping[str, Any]) -> JsonObject:
        created: JsonObject = await self._call(
            f"creating Lease {namespace}/{body['metadata']['name']}",
            "POST",
            LEASES_PATH,
            path={"namespace": namespace},
            query={"field_manager": FIELD_MANAGER},
            body=dict(body),
        )
        return created

    async def replace_lease(self, namespace: str, body: Mapping[str, Any]) -> JsonObject:
        """PUT with `metadata.resourceVersion`: `Conflict` if another replica wrote first."""
        name = body["metadata"]["name"]
        replaced: JsonObject = await self._call(
            f"replacing Lease {namespace}/{name}",
            "PUT",
            LEASE,
            path={"namespace": namespace, "name": name},
            query={"field_manager": FIELD_MANAGER},
            body=dict(body),
        )
        return replaced
