"""Kubernetes conditions, updated the way `meta.SetStatusCondition` does it: the
transition time changes only when the status does. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from oauth2_token_operator.util.rfc3339 import rfc3339

READY = "Ready"
ISSUING = "Issuing"

MAX_MESSAGE = 1024
"""Characters of a condition's or an Event's message: whatever the input (a thousand
scopes not granted), a status patch or an Event stays far below the API server's limits."""


def bounded(message: str, limit: int = MAX_MESSAGE) -> str:
    """`message`, cut to `limit` characters with a note of how much was left out."""
    if len(message) <= limit:
        return message
    note = f"… ({len(message) - limit} more characters)"
    kept = limit - len(note)
    return message[:kept] + f"… ({len(message) - kept} more characters)"


@dataclass(frozen=True)
class ConditionUpdate:
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str


def set_conditions(
    existing: Sequence[Mapping[str, Any]] | None,
    updates: Sequence[ConditionUpdate],
    *,
    now: float,
    generation: int | None,
) -> list[dict[str, Any]]:
    """`existing` with each update applied; conditions not updated are kept as they are."""
    by_type = {str(c.get("type")): dict(c) for c in existing or ()}
    for update in updates:
        previous = by_type.get(update.type)
        changed = previous is None or previous.get("status") != update.status
        by_type[update.type] = {
            "type": update.type,
            "status": update.status,
            "reason": update.reason,
            "message": bounded(update.message),
            "lastTransitionTime": rfc3339(now)
            if changed or previous is None
            else previous.get("lastTransitionTime", rfc3339(now)),
            "observedGeneration": generation,
        }
    return sorted(by_type.values(), key=lambda c: (c["type"] != READY, c["type"]))


def condition(status: Mapping[str, Any] | None, type_: str) -> Mapping[str, Any] | None:
    for entry in (status or {}).get("conditions") or ():
        if entry.get("type") == type_:
            return entry  # type: ignore[no-any-return]
    return None
