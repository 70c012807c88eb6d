"""The values one AccessTokenRequest reconciliation passes around: the request as
read, what it resolved to, what it decided, and the few condition helpers every step
shares."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

from oauth2_token_operator.api import AccessTokenRequestSpec, OAuth2ClientSpec
from oauth2_token_operator.controller.context import Body
from oauth2_token_operator.controller.ledger import RequestKey
from oauth2_token_operator.policies.access import CLIENT_NOT_ALLOWED as CLIENT_NOT_ALLOWED
from oauth2_token_operator.policies.conditions import ISSUING, READY, ConditionUpdate
from oauth2_token_operator.policies.identity import TokenIdentity
from oauth2_token_operator.util.rfc3339 import rfc3339


class Blocked(Exception):
    """The request cannot be served until something else changes (reason, message)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Request:
    """An AccessTokenRequest as read from its body."""

    namespace: str
    name: str
    uid: str
    generation: int | None
    body: Body
    status: dict[str, Any]
    annotations: dict[str, str]

    @property
    def key(self) -> RequestKey:
        return (self.namespace, self.name)

    @property
    def failed_attempts(self) -> int:
        """Failed issuances in a row (`status.failedAttempts`)."""
        return int(self.status.get("failedAttempts") or 0)

    @classmethod
    def of(cls, body: Body) -> Request:
        meta = body.get("metadata", {})
        return cls(
            # Interned: the key is kept by the ledger, the scheduler and the metrics, from
            # bodies decoded anew on each read (`context.stored`); one copy for all.
            namespace=sys.intern(meta["namespace"]),
            name=sys.intern(meta["name"]),
            uid=meta["uid"],
            generation=meta.get("generation"),
            body=body,
            status=dict(body.get("status") or {}),
            annotations=dict(meta.get("annotations") or {}),
        )


@dataclass(frozen=True)
class Resolved:
    """The request's client and the token it wants."""

    spec: AccessTokenRequestSpec
    client_namespace: str
    client_spec: OAuth2ClientSpec
    identity: TokenIdentity
    secret_name: str
    source_value: str | None = None
    """For `register`: the token read from the user's Secret."""
    revoke_all_requested_at: str | None = None
    """The client's revoke-all annotation, as written (see `policies.on_demand`)."""


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


SECRET_CONFLICT = "SecretConflict"  # noqa: S105 - a condition reason


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
