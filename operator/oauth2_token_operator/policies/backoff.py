"""Backoff, in one place: when a request that failed tries again. Pure.

- After a failed issuance: `status.failedAttempts` failures in a row wait
  `retry_delay` (exponential, jittered by the request's uid, capped, never sooner than
  the server's `Retry-After`) until `status.nextAttemptTime` (`backoff_until`); a new
  spec, or what the failure missed coming (`awaited`), tries at once, once the server's
  `Retry-After` is over. `plan.after_failure` writes those fields.
- After a failed API write (the status patch, a Secret repair), which leaves nothing in
  the request saying when: `ApiBackoff`, kept in memory (`api_retry`, `api_wait`).
"""

from __future__ import annotations

from dataclasses import dataclass

from oauth2_token_operator.policies.renewal import jitter_fraction


@dataclass(frozen=True)
class Backoff:
    """The operator's backoff settings for one request."""

    base: float
    """Seconds before the first retry (`--retry-base-delay`)."""
    cap: float
    """The longest wait, and how often a failure that needs a change is looked at again."""
    seed: str
    """The request's uid: its jitter stays the same across restarts."""

    def delay(self, attempts: int, retry_after: float | None = None) -> float:
        """Seconds to wait after the `attempts`-th failure in a row."""
        return retry_delay(
            attempts, base=self.base, cap=self.cap, seed=self.seed, retry_after=retry_after
        )


@dataclass(frozen=True)
class History:
    """The request's failed issuances so far, as its status and the operator say them."""

    failed_attempts: int = 0
    """Failures in a row (`status.failedAttempts`)."""
    new_spec: bool = False
    """The spec changed since the status was written (`observedGeneration` is older)."""
    next_attempt_at: float | None = None
    """The planned retry (`status.nextAttemptTime`), if readable."""
    server_asked_until: float | None = None
    """When the server's `Retry-After` of the last failure ends (in memory only)."""
    retry_now: bool = False
    """What the last failure missed has come (`awaited`): no backoff for that failure."""


def backoff_until(history: History, now: float) -> float | None:
    """While failures back off, the next attempt's time; `None` to try now."""
    if not history.failed_attempts:
        return None
    if history.retry_now or history.new_spec:
        # The spec changed, or what the failure missed came: try at once, or once the
        # server's wait is over.
        asked = history.server_asked_until
        return asked if asked is not None and asked > now else None
    planned = history.next_attempt_at
    return planned if planned is not None and planned > now else None


@dataclass(frozen=True, slots=True)
class ApiBackoff:
    """A request waiting to try again after failed API writes (the status patch, a
    Secret write), which leave nothing in the request to say when."""

    attempts: int
    """Failures in a row."""
    retry_at: float
    """When the backoff lets the next attempt through (epoch seconds)."""
    not_before: float
    """When the server's `Retry-After` ends (the failure's time if it gave none)."""
    generation: int | None
    """The request's `metadata.generation` that failed."""

    def until(self, generation: int | None) -> float:
        """When a request of `generation` may be tried again: a new spec as soon as the
        server allows, not after the old one's backoff (as for failed issuances)."""
        return self.retry_at if generation == self.generation else self.not_before


def retry_delay(
    failed_attempts: int,
    *,
    base: float,
    cap: float,
    seed: str,
    retry_after: float | None = None,
) -> float:
    """Exponential backoff with jitter after `failed_attempts` (≥ 1) failures.

    The jitter is drawn from [1/2, 1] of the exponential step (never a zero wait), from
    a stable seed so a restart does not reshuffle it; a server's `Retry-After` wins
    when it asks for longer.
    """
    step = min(cap, base * 2.0 ** max(0, failed_attempts - 1))
    delay = step * (0.5 + 0.5 * jitter_fraction(f"{seed}/{failed_attempts}"))
    return max(delay, float(retry_after or 0.0))


def api_retry(
    previous: ApiBackoff | None,
    retry_after: float | None,
    *,
    now: float,
    generation: int | None,
    backoff: Backoff,
) -> tuple[ApiBackoff, float]:
    """After a failed API write (the status patch, a Secret repair: a 500, a 429), which
    leaves no trace that would bring the request back: the next attempt, backing off per
    request, never sooner than the server's Retry-After; and the delay until it."""
    attempts = (previous.attempts if previous is not None else 0) + 1
    delay = backoff.delay(attempts, retry_after)
    pending = ApiBackoff(
        attempts, retry_at=now + delay, not_before=now + (retry_after or 0.0), generation=generation
    )
    return pending, delay


def api_wait(pending: ApiBackoff | None, generation: int | None, now: float) -> float | None:
    """Until when a failed API write of the request waits for its retry (events until
    then write nothing); `None` if it need not. A new spec waits only for the server's
    `Retry-After`."""
    if pending is None:
        return None
    until = pending.until(generation)
    return None if now >= until else until
