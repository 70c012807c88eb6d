"""The Events the operator posts, and where none can go.

A namespace being deleted takes no new objects, Events included: the API server answers
403, and kopf tries each Event nine times, logging every attempt at ERROR. So Events
about objects in a terminating namespace are not posted: the operator's own are logged
at INFO instead (what they report that went wrong is logged at WARNING where it
happens: a failed revocation, a failed renewal), and kopf's Events of its handlers'
outcomes are dropped (kopf still logs those records). What a deletion did to the token
is also counted in `oauth2_token_operator_revocations_total`.
"""

from __future__ import annotations

import logging
from typing import Any, cast

import kopf

from oauth2_token_operator.controller.shared.context import Body
from oauth2_token_operator.kube.cache import ClusterCache
from oauth2_token_operator.policies.conditions import bounded

log = logging.getLogger(__name__)

KOPF_OBJECTS = logging.getLogger("kopf.objects")
"""kopf's per-object logger: a record with a `k8s_ref` is also posted as an Event unless
it carries `k8s_skip`."""


class EventGate:
    def __init__(self, cache: ClusterCache) -> None:
        self._cache = cache
        KOPF_OBJECTS.addFilter(self._skip_kopf_events)

    def post(self, body: Body, *, type: str, reason: str, message: str) -> None:
        message = bounded(message)
        meta = body.get("metadata") or {}
        namespace = meta.get("namespace") or ""
        if namespace and self._cache.terminating(namespace):
            log.info(
                "%s/%s: %s: %s (no Event: namespace %s is being deleted)",
                namespace, meta.get("name"), reason, message, namespace,
            )  # fmt: skip
            return
        kopf.event(cast(Any, body), type=type, reason=reason, message=message)

    def _skip_kopf_events(self, record: logging.LogRecord) -> bool:
        ref: Any = getattr(record, "k8s_ref", None)
        namespace = ref.get("namespace") if isinstance(ref, dict) else None
        if namespace and self._cache.terminating(namespace):
            record.k8s_skip = True
        return True  # the record itself is logged as ever

    async def close(self) -> None:
        KOPF_OBJECTS.removeFilter(self._skip_kopf_events)
