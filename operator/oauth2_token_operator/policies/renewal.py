"""When to renew a token: a pure function of its lifetime and the request's policy.

Default: at 2/3 of the real lifetime, moved earlier by up to 10 % of it (a jitter
derived from the request, so tokens issued together do not renew together, and the
same request keeps the same schedule across operator restarts), and never later than
a minimum lead time before expiry, so the kubelet has time to bring the new Secret
into mounted volumes before the old token expires.

A token too short for that lead time is renewed at a fixed fraction of its life
instead, and the schedule says so: the caller surfaces it in a condition. Every
schedule lies strictly after issuance, so no policy can renew in a loop.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from oauth2_token_operator.manager import AccessToken, ValidityPolicy, assess_validity

DEFAULT_RENEWAL_FRACTION = 2 / 3
"""Renew when this fraction of the lifetime has passed (cert-manager's default too)."""
SHORT_LIVED_FRACTION = 1 / 2
"""Where a token too short for the lead time is renewed."""
MIN_RENEWAL_DELAY = 1.0
"""Seconds after issuance before which no renewal is ever scheduled."""


@dataclass(frozen=True)
class RenewalPolicy:
    renew_before: float | None = None
    """Seconds before expiry (`spec.renewBefore`)."""
    renew_before_percentage: int | None = None
    """Percent of the lifetime left at renewal (`spec.renewBeforePercentage`)."""
    min_lead: float = 90.0
    """Never renew later than this many seconds before expiry (operator setting)."""
    jitter: float = 0.10
    """Up to this fraction of the lifetime earlier, for the default policy only."""


@dataclass(frozen=True)
class RenewalSchedule:
    renew_at: float
    """Epoch seconds."""
    short_lived: bool = False
    """The lead time or the requested policy could not be honoured; see `message`."""
    message: str = ""


def jitter_fraction(seed: str) -> float:
    """A stable number in [0, 1) for `seed` (e.g. the request's uid and revision)."""
    digest = hashlib.sha256(seed.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def renewal_time(
    issued_at: float, expires_at: float, policy: RenewalPolicy, *, seed: str
) -> RenewalSchedule:
    """When to renew a token valid from `issued_at` until `expires_at`."""
    lifetime = expires_at - issued_at
    if lifetime <= 2 * MIN_RENEWAL_DELAY:
        return RenewalSchedule(
            issued_at + MIN_RENEWAL_DELAY,
            short_lived=True,
            message=f"the token's lifetime ({lifetime:.0f}s) is too short to renew ahead of"
            f" expiry; renewing {MIN_RENEWAL_DELAY:.0f}s after issuance",
        )
    fallback = issued_at + lifetime * SHORT_LIVED_FRACTION
    if policy.renew_before is not None:
        if policy.renew_before >= lifetime:
            return RenewalSchedule(
                fallback,
                short_lived=True,
                message=f"renewBefore ({policy.renew_before:.0f}s) is not shorter than the"
                f" token's lifetime ({lifetime:.0f}s); renewing at half its lifetime",
            )
        wanted = expires_at - policy.renew_before
    elif policy.renew_before_percentage is not None:
        wanted = expires_at - lifetime * policy.renew_before_percentage / 100
    else:
        earlier = policy.jitter * jitter_fraction(seed) * lifetime
        wanted = issued_at + lifetime * DEFAULT_RENEWAL_FRACTION - earlier
    earliest = issued_at + MIN_RENEWAL_DELAY
    latest = expires_at - policy.min_lead
    if latest < fallback:
        return RenewalSchedule(
            max(earliest, min(wanted, fallback)),
            short_lived=True,
            message=f"the token's lifetime ({lifetime:.0f}s) is too short for the"
            f" {policy.min_lead:.0f}s lead time before expiry; renewing at half its lifetime,"
            " so pods that read the token from a volume may see the new one late",
        )
    return RenewalSchedule(max(earliest, min(wanted, latest)))


def renewal_min_remaining(held: AccessToken, now: float, policy: ValidityPolicy) -> float:
    """What a renewal of `held` asks of the token it gets (the manager's `min_remaining`):
    to stay usable longer than `held`, as the manager judges tokens under `policy`. A
    fresher token another request shared qualifies; `held` itself never does, whatever
    its lifetime (a token of unknown lifetime once renewed into itself, in a loop)."""
    until = assess_validity(held, now, policy).usable_until
    if until is None:  # inactive: any usable token will do
        return 0.0
    return max(0.0, until - now) + 1.0
