"""The plan of one request's reconcile: what to do and why, as a pure function of what
the operator knows of the request (its `Situation`: the policy chains' facts, its grant,
its failures so far). The controller gathers the situation once, asks `plan`, and its
executor carries the plan out (the HTTP call, the Secret write, the status, the Events
and metrics the plan names); nothing here reads the cluster or the clock.

As in cert-manager's certificates controllers: the chains (`checks`) give the first
reason, and the plan adds what the chains alone cannot say: a registered token nobody
can renew, and failures backing off (`status.failedAttempts`, `status.nextAttemptTime`,
and the server's `Retry-After`, kept in memory).

After a failure, `after_failure` says when to try again and what to report; after a
failed API write (which leaves nothing in the request saying when), `api_retry` and
`api_wait` do the same from the operator's memory.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from oauth2_token_operator.policies import checks
from oauth2_token_operator.policies.backoff import Backoff, History, backoff_until
from oauth2_token_operator.policies.conditions import ISSUING, ConditionUpdate
from oauth2_token_operator.policies.failures import Failure
from oauth2_token_operator.policies.outcome import SECRET_CONFLICT, Outcome, not_ready
from oauth2_token_operator.policies.reasons import (
    GRANT_REFUSED,
    NOT_FOR_REGISTERED,
    RENEWALS,
    Reason,
)
from oauth2_token_operator.util.rfc3339 import rfc3339


class Action(enum.Enum):
    KEEP = "keep"
    """The held token and its Secret are as they should be: report them."""
    REPAIR_SECRET = "repair"  # noqa: S105 - an action, no password
    """Write the Secret again for the held token (`Plan.why` says what was wrong)."""
    ISSUE = "issue"
    """Obtain a new token (`Plan.why` is the trigger)."""
    WAIT = "wait"
    """A new token is wanted, but failures back off until `Plan.retry_at`."""


@dataclass(frozen=True)
class Situation:
    """What the plan looks at: gathered once per reconcile."""

    facts: checks.Facts
    renewable: bool
    """Can the operator renew the token (not a registered one)?"""
    history: History = field(default_factory=History)


@dataclass(frozen=True)
class Plan:
    action: Action
    why: checks.Verdict | None = None
    """The trigger (`ISSUE`, `WAIT`) or what is wrong with the Secret (`REPAIR_SECRET`)."""
    retry_at: float | None = None
    """`WAIT`: when the backoff lets the next attempt through."""

    @property
    def reason(self) -> Reason | None:
        return None if self.why is None else Reason(self.why.reason)

    @property
    def wants_longer(self) -> bool:
        """`ISSUE`: the new token must outlive the held one (a renewal: a fresher token
        another request shares qualifies, the held one never does)."""
        return self.reason in RENEWALS

    @property
    def replaces(self) -> bool:
        """`ISSUE`: the held token was issued for another spec (revoked once unheld)."""
        return self.reason is Reason.SPEC_CHANGED


def plan(situation: Situation) -> Plan:
    """What to do for the request now."""
    facts = situation.facts
    trigger = checks.evaluate(checks.ISSUANCE_CHAIN, facts)
    if (
        trigger is not None
        and facts.token is not None
        and not situation.renewable
        and trigger.reason in NOT_FOR_REGISTERED
    ):
        trigger = None  # nobody can renew a registered token: readiness reports it
    if trigger is not None:
        retry_at = backoff_until(situation.history, facts.now)
        if retry_at is not None and checks.waits_for_backoff(trigger):
            return Plan(Action.WAIT, trigger, retry_at=retry_at)
        return Plan(Action.ISSUE, trigger)
    repair = checks.evaluate(checks.SECRET_CHAIN, facts)
    if repair is not None:
        return Plan(Action.REPAIR_SECRET, repair)
    return Plan(Action.KEEP)


def while_waiting(
    trigger: checks.Verdict,
    retry_at: float,
    *,
    last_failure: tuple[str, str] | None,
    token_ready: ConditionUpdate | None,
) -> Outcome:
    """What a request waiting for its backoff reports: Ready as the held token says
    (`token_ready`), unless the last failure (the `Issuing` condition's reason and
    message) refused the grant the token came from; with no token, the last failure
    (or the trigger) is why it is not Ready."""
    if token_ready is not None and (last_failure is None or last_failure[0] not in GRANT_REFUSED):
        ready = token_ready
    elif last_failure is not None:
        ready = not_ready(*last_failure)
    else:
        ready = not_ready(trigger.reason, trigger.message)
    issuing = [] if last_failure is None else [ConditionUpdate(ISSUING, "True", *last_failure)]
    return Outcome(conditions=[ready, *issuing], wake_at=retry_at)


def announces(plan: Plan, *, first_issue: bool, failed_attempts: int) -> bool:
    """Is the new token worth an Event? A first one always; a renewal unless routine."""
    assert plan.why is not None
    return first_issue or checks.announces_renewal(plan.why, failed_attempts=failed_attempts)


@dataclass(frozen=True)
class FailurePlan:
    """What a failed issuance (or renewal) means: when to try again, and what to say."""

    attempts: int
    retry_at: int
    """Rounded up to the whole second `status.nextAttemptTime` keeps: the reconcile that
    reads it back must not find it due early."""
    message: str
    server_asked_until: float | None
    """The server's `Retry-After` to remember (`None`: forget any)."""
    renewing: bool
    """A token was held (a renewal failed); else the first issuance did."""
    ready_from_token: bool
    """Ready as the held token says; else Ready=False with the failure's reason."""
    wake_at: float
    """The retry, or the held token's expiry if sooner (Ready must turn False on time)."""

    @property
    def event_reason(self) -> Literal["RenewalFailed", "IssuanceFailed"]:
        return "RenewalFailed" if self.renewing else "IssuanceFailed"

    @property
    def metric_kind(self) -> Literal["renewed", "issued"]:
        return "renewed" if self.renewing else "issued"

    def status(self, now: float, generation: int | None) -> dict[str, Any]:
        return {
            "failedAttempts": self.attempts,
            "lastFailureTime": rfc3339(now),
            "nextAttemptTime": rfc3339(self.retry_at),
            "observedGeneration": generation,
        }


def after_failure(
    trigger: checks.Verdict,
    failure: Failure,
    *,
    failed_attempts: int,
    held_expires_at: float | None,
    held: bool,
    now: float,
    backoff: Backoff,
) -> FailurePlan:
    """The plan after the attempt `trigger` asked for failed with `failure`."""
    attempts = failed_attempts + 1
    asked = math.ceil(now + failure.retry_after) if failure.retry_after else None
    if failure.retry:
        retry_at = math.ceil(now + backoff.delay(attempts, failure.retry_after))
        when = f"; retrying at {rfc3339(retry_at)}"
    else:
        # Trying again cannot help until something changes (a new refresh token, the
        # spec, the client): look again rarely, never in a loop.
        retry_at = math.ceil(now + backoff.cap)
        when = (
            "; this needs a change (the spec, the client, or the Secret it reads);"
            f" checking again at {rfc3339(retry_at)}"
        )
    return FailurePlan(
        attempts=attempts,
        retry_at=retry_at,
        message=f"{trigger.message}: {failure.message}{when}",
        server_asked_until=asked,
        renewing=held,
        ready_from_token=held and failure.reason not in GRANT_REFUSED,
        wake_at=retry_at if held_expires_at is None else min(retry_at, held_expires_at),
    )


def failed_outcome(
    failure: Failure,
    decided: FailurePlan,
    ready: ConditionUpdate | None,
    *,
    now: float,
    generation: int | None,
) -> Outcome:
    """The status after a failure: `ready` is the held token's readiness, used when the
    plan says Ready follows the token."""
    if not decided.ready_from_token or ready is None:
        ready = not_ready(failure.reason, decided.message)
    return Outcome(
        status=decided.status(now, generation),
        conditions=[ready, ConditionUpdate(ISSUING, "True", failure.reason, decided.message)],
        wake_at=decided.wake_at,
    )


STILL_REJECTED_MESSAGE = (
    "the server refused the refresh token in the Secret, and it is not sent again;"
    " this needs a change: a new refresh token there (used within seconds)"
)


def still_rejected(
    *, now: float, backoff: Backoff, held_expires_at: float | None, generation: int | None
) -> Outcome:
    """The Secret still holds the refresh token the server refused (`status` says so,
    across restarts): it is not sent again, and is looked at rarely for a new one."""
    retry_at = math.ceil(now + backoff.cap)
    reason = Reason.REFRESH_TOKEN_REJECTED
    return Outcome(
        status={"nextAttemptTime": rfc3339(retry_at), "observedGeneration": generation},
        conditions=[
            not_ready(reason, STILL_REJECTED_MESSAGE),
            ConditionUpdate(ISSUING, "True", reason, STILL_REJECTED_MESSAGE),
        ],
        wake_at=retry_at if held_expires_at is None else min(retry_at, held_expires_at),
    )


def conflict_is_news(status: dict[str, Any]) -> bool:
    """A SecretConflict is said in an Event when it begins: not while Ready says it."""
    ready = next((c for c in status.get("conditions") or () if c.get("type") == "Ready"), None)
    return ready is None or ready.get("reason") != SECRET_CONFLICT


def blocked(reason: str, message: str, *, now: float, backoff: Backoff) -> Outcome:
    """The request cannot be served until something else changes: it is poked when what
    it misses comes (`awaited`), and looked at again now and then."""
    return Outcome(conditions=[not_ready(reason, message)], wake_at=now + backoff.cap)
