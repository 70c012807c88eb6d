"""When a request's `rolloutRestartTargets` are restarted, and whether a workload may be.
Pure.

After each new token (a new `status.revision`), once: never twice for one revision (a
restarted operator does not restart them again), and never sooner than the minimum
interval after the last restart (a token renewed every 20 s does not keep workloads
restarting; the restart that comes brings the newest token).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from oauth2_token_operator.api.labels import USABLE_BY_OPERATOR, USABLE_VALUE

RESTARTED_AT = "oauth2.token-operator.io/restarted-at"
"""The pod template annotation whose change makes the new rollout."""


@dataclass(frozen=True)
class RestartPlan:
    due: bool
    """Restart now."""
    wake_at: float | None = None
    """When a restart held back by the minimum interval becomes due."""


def restart_plan(
    *,
    revision: int | None,
    restarted_revision: int | None,
    last_restart: float | None,
    now: float,
    min_interval: float,
) -> RestartPlan:
    """Whether the targets are restarted now for token `revision`."""
    if revision is None or revision == restarted_revision:
        return RestartPlan(due=False)
    if last_restart is not None and now < last_restart + min_interval:
        return RestartPlan(due=False, wake_at=last_restart + min_interval)
    return RestartPlan(due=True)


def restart_refusal(kind: str, name: str, workload: Mapping[str, Any] | None) -> str | None:
    """Why the workload is not restarted, or `None` if it may be."""
    if workload is None:
        return f"{kind} {name} not found"
    labels = (workload.get("metadata") or {}).get("labels") or {}
    if labels.get(USABLE_BY_OPERATOR) != USABLE_VALUE:
        return (
            f'{kind} {name} lacks the label {USABLE_BY_OPERATOR}: "{USABLE_VALUE}" that lets'
            " the operator restart it"
        )
    return None
