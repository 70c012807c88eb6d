"""`policies.plan`: what one reconcile does, as tables of situations and outcomes.

The plan is the one place that decides: issue, renew, repair the Secret, wait for a
failure's backoff, or keep the token; and after a failure, when to try again and what
Ready says. The controller gathers the situation and carries the plan out."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from oauth2_token_operator.policies import plan
from oauth2_token_operator.policies.backoff import ApiBackoff, Backoff, History, api_retry, api_wait
from oauth2_token_operator.policies.checks import Facts, SecretFacts, TokenFacts, Verdict
from oauth2_token_operator.policies.conditions import ConditionUpdate
from oauth2_token_operator.policies.failures import Failure
from oauth2_token_operator.policies.plan import Action, Situation
from oauth2_token_operator.policies.reasons import Reason
from oauth2_token_operator.util.rfc3339 import rfc3339

NOW = 1_800_000_000.0
INTACT = SecretFacts(exists=True, data_intact=True, metadata_intact=True)
TOKEN = TokenFacts(issued_at=NOW - 100, usable_until=NOW + 1000, issued_for="spec-1")
BACKOFF = Backoff(base=5.0, cap=300.0, seed="uid-1")
NO_FAILURES = History()
FAILED = History(failed_attempts=2, next_attempt_at=NOW + 60)
"""Two failures in a row, the next attempt planned a minute from now."""
NEW_SPEC = replace(FAILED, new_spec=True)
RETRY_NOW = replace(FAILED, retry_now=True)


def situation(
    *, renewable: bool = True, history: History = NO_FAILURES, **changes: Any
) -> Situation:
    base: dict[str, Any] = {
        "now": NOW,
        "spec_fingerprint": "spec-1",
        "token": TOKEN,
        "secret": INTACT,
        "renew_at": NOW + 500,
    }
    base.update(changes)
    return Situation(facts=Facts(**base), renewable=renewable, history=history)


@pytest.mark.parametrize(
    ("given", "action", "reason", "retry_at"),
    [
        # all is well, or only the Secret needs writing again
        (situation(), Action.KEEP, None, None),
        (situation(secret=SecretFacts(exists=False)), Action.REPAIR_SECRET, "SecretMissing", None),
        (
            situation(secret=SecretFacts(exists=True, data_intact=False, metadata_intact=True)),
            Action.REPAIR_SECRET, "SecretDataMismatch", None,
        ),
        (
            situation(secret=SecretFacts(exists=True, data_intact=True, metadata_intact=False)),
            Action.REPAIR_SECRET, "SecretMetadataMismatch", None,
        ),
        # a new token is wanted: the chain's first reason wins over a Secret to repair
        (situation(token=None, secret=SecretFacts(exists=False)), Action.ISSUE, "Missing", None),
        (situation(renew_at=NOW), Action.ISSUE, "Renewing", None),
        (situation(token=replace(TOKEN, usable_until=NOW)), Action.ISSUE, "Expired", None),
        (situation(token=replace(TOKEN, active=False)), Action.ISSUE, "TokenInactive", None),
        (situation(spec_fingerprint="spec-2"), Action.ISSUE, "SpecChanged", None),
        (situation(renewal_requested=True), Action.ISSUE, "RenewalRequested", None),
        (situation(revocation_requested=True), Action.ISSUE, "RevocationRequested", None),
        # a registered token: nobody can renew it, readiness reports it
        (situation(renewable=False, renew_at=NOW), Action.KEEP, None, None),
        (
            situation(renewable=False, token=replace(TOKEN, usable_until=NOW)),
            Action.KEEP, None, None,
        ),
        (situation(renewable=False, renewal_requested=True), Action.KEEP, None, None),
        (situation(renewable=False, spec_fingerprint="spec-2"), Action.ISSUE, "SpecChanged", None),
        (situation(renewable=False, token=None), Action.ISSUE, "Missing", None),
        # failures back off: a trigger waits for the planned attempt...
        (situation(renew_at=NOW, history=FAILED), Action.WAIT, "Renewing", NOW + 60),
        (situation(token=None, history=FAILED), Action.WAIT, "Missing", NOW + 60),
        # ...unless its time has come, or none is planned
        (
            situation(renew_at=NOW, history=replace(FAILED, next_attempt_at=NOW)),
            Action.ISSUE, "Renewing", None,
        ),
        (
            situation(renew_at=NOW, history=replace(FAILED, next_attempt_at=None)),
            Action.ISSUE, "Renewing", None,
        ),
        # ...unless a user asked for it (the change may be the fix)
        (situation(spec_fingerprint="spec-2", history=FAILED), Action.ISSUE, "SpecChanged", None),
        (situation(renewal_requested=True, history=FAILED), Action.ISSUE, "RenewalRequested", None),
        # a new spec, or what the failure missed came: only the server's Retry-After holds
        (situation(token=None, history=NEW_SPEC), Action.ISSUE, "Missing", None),
        (situation(token=None, history=RETRY_NOW), Action.ISSUE, "Missing", None),
        (
            situation(
                token=None, history=replace(FAILED, new_spec=True, server_asked_until=NOW + 30)
            ),
            Action.WAIT, "Missing", NOW + 30,
        ),
        (
            situation(
                token=None, history=replace(FAILED, retry_now=True, server_asked_until=NOW - 1)
            ),
            Action.ISSUE, "Missing", None,
        ),
        # a backoff and nothing to issue: the Secret is still repaired
        (
            situation(secret=SecretFacts(exists=False), history=FAILED),
            Action.REPAIR_SECRET, "SecretMissing", None,
        ),
    ],
    ids=[
        "healthy", "secret-missing", "secret-data", "secret-metadata",
        "no-token", "renewal-due", "expired", "inactive", "spec-changed", "renew-annotation",
        "revoke-all",
        "registered-renewal-due", "registered-expired", "registered-renew-annotation",
        "registered-spec-changed", "registered-no-token",
        "backoff-renewal", "backoff-no-token",
        "backoff-over", "backoff-unplanned",
        "backoff-spec-changed", "backoff-renew-annotation",
        "backoff-new-spec", "backoff-retry-now", "new-spec-waits-retry-after",
        "retry-after-over",
        "backoff-secret-repair",
    ],
)  # fmt: skip
def test_what_a_reconcile_does(
    given: Situation, action: Action, reason: str | None, retry_at: float | None
) -> None:
    decided = plan.plan(given)
    assert decided.action is action
    assert decided.reason == reason
    if reason is not None:
        assert isinstance(decided.reason, Reason)  # the code decides on members
    assert decided.retry_at == retry_at


@pytest.mark.parametrize(
    ("reason", "wants_longer", "replaces"),
    [
        (Reason.RENEWING, True, False),
        (Reason.RENEWAL_REQUESTED, True, False),
        (Reason.SPEC_CHANGED, False, True),
        (Reason.EXPIRED, False, False),
        (Reason.MISSING, False, False),
    ],
    ids=["renewing", "renew-annotation", "spec-changed", "expired", "missing"],
)
def test_what_an_issuance_asks(reason: Reason, wants_longer: bool, replaces: bool) -> None:
    issue = plan.Plan(Action.ISSUE, Verdict(reason, "m"))
    assert (issue.wants_longer, issue.replaces) == (wants_longer, replaces)


TRIGGER = Verdict(Reason.RENEWING, "the renewal time has come")
DOWN = Failure("AuthorizationServerUnavailable", "connection refused", retry=True)
BUSY = Failure("AuthorizationServerUnavailable", "429", retry=True, retry_after=120.0)
REFUSED = Failure(Reason.REFRESH_TOKEN_REJECTED, "invalid_grant", retry=False)
SCOPE = Failure("InvalidScope", "invalid_scope", retry=False)


@pytest.mark.parametrize(
    ("failure", "held", "expires_at", "before", "retry_in", "asked", "from_token", "event", "wake"),
    [
        # a server down: back off, with jitter, from the base delay
        (DOWN, False, None, 0, (2.5, 5.0), None, False, "IssuanceFailed", "retry"),
        (DOWN, True, None, 0, (2.5, 5.0), None, True, "RenewalFailed", "retry"),
        (DOWN, True, None, 3, (20.0, 40.0), None, True, "RenewalFailed", "retry"),
        (DOWN, True, None, 20, (150.0, 300.0), None, True, "RenewalFailed", "retry"),  # cap
        # the server's Retry-After wins, and is remembered for a new spec
        (BUSY, True, None, 0, (120.0, 120.0), NOW + 120, True, "RenewalFailed", "retry"),
        # retrying cannot help: look again rarely
        (SCOPE, False, None, 0, (300.0, 300.0), None, False, "IssuanceFailed", "retry"),
        # a refused grant: not Ready even with a token held
        (REFUSED, True, None, 0, (300.0, 300.0), None, False, "RenewalFailed", "retry"),
        # the held token expires before the retry: wake then (Ready turns False on time)
        (DOWN, True, NOW + 1, 5, (80.0, 160.0), None, True, "RenewalFailed", "expiry"),
    ],
    ids=[
        "first-issue-down", "renewal-down", "fourth-failure", "capped", "retry-after",
        "needs-a-change", "grant-refused", "expires-first",
    ],
)  # fmt: skip
def test_what_a_failure_means(
    failure: Failure,
    held: bool,
    expires_at: float | None,
    before: int,
    retry_in: tuple[float, float],
    asked: float | None,
    from_token: bool,
    event: str,
    wake: str,
) -> None:
    decided = plan.after_failure(
        TRIGGER, failure, failed_attempts=before, held_expires_at=expires_at, held=held,
        now=NOW, backoff=BACKOFF,
    )  # fmt: skip
    assert decided.attempts == before + 1
    low, high = retry_in
    assert NOW + low <= decided.retry_at <= NOW + high + 1  # rounded up to the second
    assert decided.retry_at == int(decided.retry_at)
    assert decided.server_asked_until == asked
    assert decided.ready_from_token is from_token
    assert decided.event_reason == event
    assert decided.metric_kind == ("renewed" if held else "issued")
    assert decided.wake_at == (decided.retry_at if wake == "retry" else expires_at)
    assert decided.message.startswith(f"{TRIGGER.message}: {failure.message}; ")
    status = decided.status(NOW, 7)
    assert status == {
        "failedAttempts": before + 1,
        "lastFailureTime": rfc3339(NOW),
        "nextAttemptTime": rfc3339(decided.retry_at),
        "observedGeneration": 7,
    }
    token_ready = ConditionUpdate("Ready", "True", "TokenValid", "valid")
    outcome = plan.failed_outcome(failure, decided, token_ready, now=NOW, generation=7)
    ready, issuing = outcome.conditions
    assert (ready.reason == "TokenValid") is from_token
    if not from_token:
        assert (ready.status, ready.reason, ready.message) == (
            "False", failure.reason, decided.message,
        )  # fmt: skip
    assert (issuing.type, issuing.status, issuing.reason) == ("Issuing", "True", failure.reason)


def test_a_failed_attempts_time_is_read_back_as_the_plan_for_the_next() -> None:
    """What `after_failure` writes to `status.nextAttemptTime` holds the next reconcile
    back until that time, not a second earlier."""
    decided = plan.after_failure(
        TRIGGER, DOWN, failed_attempts=0, held_expires_at=None, held=True, now=NOW,
        backoff=BACKOFF,
    )  # fmt: skip
    history = History(failed_attempts=decided.attempts, next_attempt_at=decided.retry_at)
    early = situation(renew_at=NOW, history=history, now=decided.retry_at - 1)
    due = situation(renew_at=NOW, history=history, now=decided.retry_at)
    assert plan.plan(early).action is Action.WAIT
    assert plan.plan(due).action is Action.ISSUE


@pytest.mark.parametrize(
    ("previous", "retry_after", "generation", "attempts", "delay", "wait_same", "wait_new"),
    [
        (None, None, 4, 1, (2.5, 5.0), "retry", None),
        (ApiBackoff(2, NOW, NOW, 4), None, 4, 3, (10.0, 20.0), "retry", None),
        (None, 30.0, 4, 1, (30.0, 30.0), "retry", NOW + 30),  # a 429's Retry-After
    ],
    ids=["first-500", "third-500", "429-retry-after"],
)
def test_after_a_failed_api_write(
    previous: ApiBackoff | None,
    retry_after: float | None,
    generation: int,
    attempts: int,
    delay: tuple[float, float],
    wait_same: str,
    wait_new: float | None,
) -> None:
    pending, waited = api_retry(
        previous, retry_after, now=NOW, generation=generation, backoff=BACKOFF
    )
    assert pending.attempts == attempts
    assert delay[0] <= waited <= delay[1]
    assert api_wait(pending, generation, NOW) == NOW + waited  # the same spec waits
    assert api_wait(pending, generation + 1, NOW) == wait_new  # a new one: Retry-After
    assert api_wait(pending, generation, NOW + waited) is None  # then it is due
    assert api_wait(None, generation, NOW) is None


@pytest.mark.parametrize(
    ("ready_reason", "news"),
    [(None, True), ("TokenValid", True), ("SecretConflict", False)],
    ids=["first-look", "was-ready", "already-said"],
)
def test_a_conflict_is_said_when_it_begins(ready_reason: str | None, news: bool) -> None:
    conditions = [] if ready_reason is None else [{"type": "Ready", "reason": ready_reason}]
    assert plan.conflict_is_news({"conditions": conditions}) is news


def test_a_refresh_token_still_refused_waits_for_a_change() -> None:
    outcome = plan.still_rejected(now=NOW, backoff=BACKOFF, held_expires_at=NOW + 10, generation=3)
    assert [(c.type, c.status, c.reason) for c in outcome.conditions] == [
        ("Ready", "False", "RefreshTokenRejected"),
        ("Issuing", "True", "RefreshTokenRejected"),
    ]
    assert outcome.status == {"nextAttemptTime": rfc3339(NOW + 300), "observedGeneration": 3}
    assert outcome.wake_at == NOW + 10  # the held token's expiry comes first


def test_a_blocked_request_is_looked_at_again_now_and_then() -> None:
    outcome = plan.blocked(
        "ClientNotFound", "OAuth2Client ns/x not found", now=NOW, backoff=BACKOFF
    )
    [ready] = outcome.conditions
    assert (ready.status, ready.reason) == ("False", "ClientNotFound")
    assert outcome.wake_at == NOW + BACKOFF.cap


def test_the_reasons_are_todays_condition_reasons() -> None:
    """A `StrEnum`: the status says the same strings as before, and compares to them."""
    assert str(Reason.RENEWING) == "Renewing"
    assert Reason("Renewing") is Reason.RENEWING
    assert f"{Reason.SECRET_CONFLICT}" == "SecretConflict"
    assert {"reason": Reason.REFRESH_TOKEN_REJECTED} == {"reason": "RefreshTokenRejected"}


TOKEN_READY = ConditionUpdate("Ready", "True", "TokenValid", "valid")
DOWN_SINCE = ("AuthorizationServerUnavailable", "connection refused")
REFUSED_SINCE = ("RefreshTokenRejected", "invalid_grant")


@pytest.mark.parametrize(
    ("token_ready", "last_failure", "ready", "issuing"),
    [
        (TOKEN_READY, DOWN_SINCE, ("True", "TokenValid"), "AuthorizationServerUnavailable"),
        (TOKEN_READY, None, ("True", "TokenValid"), None),
        # the server refused the grant the held token came from: not Ready while it stands
        (TOKEN_READY, REFUSED_SINCE, ("False", "RefreshTokenRejected"), "RefreshTokenRejected"),
        # no token: the last failure says why, else the trigger
        (None, DOWN_SINCE, ("False", "AuthorizationServerUnavailable"), DOWN_SINCE[0]),
        (None, None, ("False", "Missing"), None),
    ],
    ids=["token-held", "token-held-no-failure", "grant-refused", "no-token", "no-token-yet"],
)
def test_what_a_request_waiting_for_its_backoff_says(
    token_ready: ConditionUpdate | None,
    last_failure: tuple[str, str] | None,
    ready: tuple[str, str],
    issuing: str | None,
) -> None:
    trigger = Verdict(Reason.MISSING, "no token yet")
    outcome = plan.while_waiting(
        trigger, NOW + 60, last_failure=last_failure, token_ready=token_ready
    )
    said = {c.type: c for c in outcome.conditions}
    assert (said["Ready"].status, said["Ready"].reason) == ready
    assert (said["Issuing"].reason if "Issuing" in said else None) == issuing
    assert outcome.wake_at == NOW + 60
