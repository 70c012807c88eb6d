"""On-demand annotations (`renew-requested-at`, `revoke-all-requested-at`): a time asks for
a token issued after it, only once it has come; anything unreadable asks for nothing."""

from __future__ import annotations

import pytest

from oauth2_token_operator.policies.on_demand import asks_for_newer, pending_at, requested_at

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z
AT_NOW = "2027-01-15T08:00:00Z"
EARLIER = "2027-01-15T07:59:00Z"
LATER = "2027-01-15T08:05:00Z"


def test_a_past_time_asks_for_a_token_issued_after_it() -> None:
    assert requested_at(EARLIER, NOW) == NOW - 60
    assert asks_for_newer(EARLIER, issued_at=NOW - 120, now=NOW)
    assert not asks_for_newer(EARLIER, issued_at=NOW - 30, now=NOW), "already answered"


def test_the_current_second_counts_as_come() -> None:
    assert requested_at(AT_NOW, NOW) == NOW
    assert pending_at(AT_NOW, NOW) is None


def test_a_future_time_asks_nothing_until_it_comes() -> None:
    # Acting on it early would issue tokens older than it, again and again until then.
    assert requested_at(LATER, NOW) is None
    assert not asks_for_newer(LATER, issued_at=NOW - 120, now=NOW)
    assert pending_at(LATER, NOW) == NOW + 300
    assert asks_for_newer(LATER, issued_at=NOW - 120, now=NOW + 300)


@pytest.mark.parametrize("value", [None, "", "yesterday", "true", "2027-13-45T00:00:00Z"])
def test_absent_or_unreadable_asks_nothing(value: str | None) -> None:
    assert requested_at(value, NOW) is None
    assert pending_at(value, NOW) is None
    assert not asks_for_newer(value, issued_at=0.0, now=NOW)


def test_offsets_and_fractions_are_read() -> None:
    assert requested_at("2027-01-15T09:00:00+01:00", NOW) == NOW
    assert requested_at(" 2027-01-15T07:59:59.5Z ", NOW) == NOW - 0.5
