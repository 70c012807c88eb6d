"""What one reconcile of a request reports: status fields, conditions, and when to look
again. Pure values, shared by the plan (`policies.plan`) and the controller that writes
them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from oauth2_token_operator.policies.conditions import ISSUING, READY, ConditionUpdate
from oauth2_token_operator.policies.reasons import Reason
from oauth2_token_operator.util.rfc3339 import rfc3339


@dataclass
class Outcome:
    """What one reconciliation decided: status fields, conditions, the next wake-up."""

    status: dict[str, Any] = field(default_factory=dict)
    conditions: list[ConditionUpdate] = field(default_factory=list)
    wake_at: float | None = None

    def merge(self, other: Outcome) -> Outcome:
        """This outcome plus `other`'s status fields and conditions (this one's win, type
        by type), and the sooner wake-up."""
        wakes = [w for w in (self.wake_at, other.wake_at) if w is not None]
        mine = {c.type for c in self.conditions}
        return Outcome(
            status={**other.status, **self.status},
            conditions=self.conditions + [c for c in other.conditions if c.type not in mine],
            wake_at=min(wakes) if wakes else None,
        )


def not_ready(reason: str, message: str) -> ConditionUpdate:
    return ConditionUpdate(READY, "False", reason, message)


SECRET_CONFLICT = Reason.SECRET_CONFLICT


def secret_conflict(name: str, message: str | None = None) -> Outcome:
    """The Secret the token would go to is not this request's: nothing is issued, renewed
    or written (Ready and Issuing both say so)."""
    message = message or (
        f"Secret {name} exists and is not owned by this request; it is left untouched"
        " (delete it, or choose another spec.secretName)"
    )
    return Outcome(
        conditions=[
            not_ready(SECRET_CONFLICT, message),
            ConditionUpdate(ISSUING, "False", SECRET_CONFLICT, "nothing is issued: " + message),
        ]
    )


def time_or_unknown(epoch: float | None) -> str:
    return "an unknown time" if epoch is None else rfc3339(epoch)
