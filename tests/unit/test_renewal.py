"""When tokens are renewed: the default 2/3 rule with jitter, the lead time before expiry,
explicit policies, and short-lived tokens that can never cause a renewal loop."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oauth2_token_operator.manager import (
    CLIENT_CREDENTIALS,
    AccessToken,
    TokenKey,
    ValidityPolicy,
    assess_validity,
)
from oauth2_token_operator.policies.renewal import (
    MIN_RENEWAL_DELAY,
    RenewalPolicy,
    jitter_fraction,
    renewal_min_remaining,
    renewal_time,
)

T0 = 1_800_000_000.0
HOUR = 3600.0


def test_default_renews_at_two_thirds_minus_at_most_ten_percent() -> None:
    times = [
        renewal_time(T0, T0 + HOUR, RenewalPolicy(), seed=f"uid-{i}").renew_at for i in range(200)
    ]
    assert all(T0 + HOUR * (2 / 3 - 0.10) <= t <= T0 + HOUR * 2 / 3 for t in times)
    assert max(times) - min(times) > HOUR * 0.05, "requests issued together must spread out"


def test_jitter_is_stable_for_a_request() -> None:
    first = renewal_time(T0, T0 + HOUR, RenewalPolicy(), seed="uid-1/3")
    again = renewal_time(T0, T0 + HOUR, RenewalPolicy(), seed="uid-1/3")
    assert first == again
    assert 0 <= jitter_fraction("anything") < 1


def test_lead_time_before_expiry_is_kept() -> None:
    # 4 minutes: 2/3 would leave 80 s, less than the 90 s lead.
    schedule = renewal_time(T0, T0 + 240, RenewalPolicy(jitter=0), seed="x")
    assert schedule.renew_at == T0 + 240 - 90
    assert not schedule.short_lived


def test_too_short_for_the_lead_time_renews_at_half_life_and_says_so() -> None:
    schedule = renewal_time(T0, T0 + 120, RenewalPolicy(), seed="x")
    assert schedule.renew_at == T0 + 60
    assert schedule.short_lived
    assert "too short for the 90s lead time" in schedule.message


def test_renew_before() -> None:
    schedule = renewal_time(T0, T0 + HOUR, RenewalPolicy(renew_before=600), seed="x")
    assert schedule.renew_at == T0 + HOUR - 600


def test_renew_before_longer_than_the_lifetime_falls_back_to_half_life() -> None:
    schedule = renewal_time(T0, T0 + 300, RenewalPolicy(renew_before=HOUR), seed="x")
    assert schedule.renew_at == T0 + 150
    assert schedule.short_lived
    assert "renewBefore" in schedule.message


def test_renew_before_percentage() -> None:
    schedule = renewal_time(T0, T0 + HOUR, RenewalPolicy(renew_before_percentage=25), seed="x")
    assert schedule.renew_at == T0 + HOUR * 0.75


def test_explicit_policy_is_still_capped_by_the_lead_time() -> None:
    schedule = renewal_time(T0, T0 + 600, RenewalPolicy(renew_before=10), seed="x")
    assert schedule.renew_at == T0 + 600 - 90


@pytest.mark.parametrize("lifetime", [0.0, -30.0, 1.0])
def test_degenerate_lifetimes_never_loop(lifetime: float) -> None:
    schedule = renewal_time(T0, T0 + lifetime, RenewalPolicy(), seed="x")
    assert schedule.renew_at == T0 + MIN_RENEWAL_DELAY
    assert schedule.short_lived


policies = st.builds(
    RenewalPolicy,
    renew_before=st.none() | st.floats(min_value=1, max_value=10 * HOUR),
    renew_before_percentage=st.none() | st.integers(min_value=1, max_value=99),
    min_lead=st.floats(min_value=0, max_value=600),
    jitter=st.floats(min_value=0, max_value=0.5),
)


@given(
    lifetime=st.floats(min_value=0.01, max_value=30 * 24 * HOUR),
    policy=policies,
    seed=st.text(max_size=20),
)
def test_renewal_is_after_issuance_and_before_expiry(
    lifetime: float, policy: RenewalPolicy, seed: str
) -> None:
    schedule = renewal_time(T0, T0 + lifetime, policy, seed=seed)
    assert schedule.renew_at >= T0 + min(MIN_RENEWAL_DELAY, lifetime / 2) - 1e-6
    if lifetime > 2 * MIN_RENEWAL_DELAY:
        assert schedule.renew_at < T0 + lifetime
    if not schedule.short_lived:
        assert schedule.renew_at <= T0 + lifetime - policy.min_lead + 1e-6
    assert schedule.short_lived == bool(schedule.message)


validity_policies = st.builds(
    ValidityPolicy,
    clock_skew=st.floats(min_value=0, max_value=600),
    max_margin_fraction=st.floats(min_value=0, max_value=1),
    unknown_expiry_lifetime=st.floats(min_value=10, max_value=30 * 24 * HOUR),
)


@given(
    lifetime=st.none() | st.floats(min_value=0.01, max_value=30 * 24 * HOUR),
    confirmed_after=st.none() | st.floats(min_value=0, max_value=24 * HOUR),
    active=st.sampled_from([None, True, False]),
    elapsed=st.floats(min_value=0, max_value=60 * 24 * HOUR),
    policy=validity_policies,
)
def test_a_renewal_never_accepts_the_held_token(
    lifetime: float | None,
    confirmed_after: float | None,
    active: bool | None,
    elapsed: float,
    policy: ValidityPolicy,
) -> None:
    """Issue 21: a token without `expires_in` was "renewed" into itself ~100 times a
    second. Whatever the token's lifetime (stated or not), confirmations and the clock,
    the held token never meets its own renewal's demand (the manager's `_find_usable`)."""
    held = AccessToken(
        value="held",
        token_type="Bearer",
        key=TokenKey("https://issuer.example", CLIENT_CREDENTIALS, "client"),
        scopes=frozenset(),
        obtained_at=T0,
        expires_at=None if lifetime is None else T0 + lifetime,
        active=active,
        confirmed_at=None if confirmed_after is None else T0 + confirmed_after,
    )
    now = T0 + elapsed
    validity = assess_validity(held, now, policy)
    demand = renewal_min_remaining(held, now, policy)
    until = validity.usable_until if validity.usable_until is not None else float("inf")
    assert not (validity.usable and until - now >= demand)


@given(
    assumed=st.floats(min_value=10, max_value=30 * 24 * HOUR),
    policy=policies,
    seed=st.text(max_size=20),
)
def test_a_token_of_unknown_lifetime_is_renewed_later_than_its_issue(
    assumed: float, policy: RenewalPolicy, seed: str
) -> None:
    """Renewed as if it lived `assumed` seconds: the next renewal is after now."""
    now = T0
    schedule = renewal_time(now, now + assumed, policy, seed=seed)
    assert schedule.renew_at > now
