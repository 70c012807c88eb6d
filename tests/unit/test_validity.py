"""The pure validity rules (the seed's defect 2: `active`, skew, unknown expiry)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oauth2_token_operator.manager.model import (
    CLIENT_CREDENTIALS,
    AccessToken,
    RefreshToken,
    TokenKey,
    TokenState,
    ValidityPolicy,
    assess_validity,
    expiry_margin,
    is_dead,
    refresh_token_covers,
    scopes_match,
)

KEY = TokenKey("https://as.example", CLIENT_CREDENTIALS, "client")
POLICY = ValidityPolicy(clock_skew=30.0, unknown_expiry_lifetime=300.0)


def token(**overrides: object) -> AccessToken:
    fields: dict[str, object] = {
        "value": "opaque",
        "token_type": "Bearer",
        "key": KEY,
        "scopes": frozenset({"read"}),
        "obtained_at": 1000.0,
        "expires_at": 4600.0,
    }
    fields.update(overrides)
    return AccessToken(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "now", "state"),
    [
        ({}, 1000.0, TokenState.VALID),
        ({}, 4569.9, TokenState.VALID),
        # the skew margin: 30 s before exp the token already counts as expired
        ({}, 4570.0, TokenState.EXPIRED),
        ({}, 4600.0, TokenState.EXPIRED),
        ({"active": False}, 1000.0, TokenState.INACTIVE),
        ({"active": True}, 1000.0, TokenState.VALID),
        ({"not_before": 2000.0}, 1000.0, TokenState.NOT_YET_VALID),
        ({"not_before": 2000.0}, 1970.0, TokenState.VALID),
        # unknown expiry: trusted for unknown_expiry_lifetime after confirmation, not forever
        ({"expires_at": None}, 1299.0, TokenState.VALID),
        ({"expires_at": None}, 1300.0, TokenState.EXPIRED),
        ({"expires_at": None, "confirmed_at": 5000.0}, 5299.0, TokenState.VALID),
        ({"expires_at": None}, 10.0**12, TokenState.EXPIRED),
    ],
)
def test_validity_table(overrides: dict[str, object], now: float, state: TokenState) -> None:
    assert assess_validity(token(**overrides), now, POLICY).state is state


@pytest.mark.parametrize(
    ("lifetime", "now", "state"),
    [
        # Issue 6: a 5 s token was expired from the start (5 s < 30 s skew) and every get()
        # made a token request. The margin is now at most a tenth of the lifetime.
        (5.0, 1000.0, TokenState.VALID),
        (5.0, 1004.49, TokenState.VALID),
        (5.0, 1004.5, TokenState.EXPIRED),
        (3.0, 1002.69, TokenState.VALID),
        (3.0, 1002.7, TokenState.EXPIRED),
        (20.0, 1017.99, TokenState.VALID),  # a 20 s token keeps 18 s
        (20.0, 1018.0, TokenState.EXPIRED),
        # 300 s: a tenth is 30 s, the full skew again
        (300.0, 1269.9, TokenState.VALID),
        (300.0, 1270.0, TokenState.EXPIRED),
        (0.0, 1000.0, TokenState.EXPIRED),
    ],
)
def test_short_lived_tokens_table(lifetime: float, now: float, state: TokenState) -> None:
    t = token(expires_at=1000.0 + lifetime)
    assert assess_validity(t, now, POLICY).state is state


times = st.floats(min_value=0, max_value=1e10, allow_nan=False)
skews = st.floats(min_value=0, max_value=600, allow_nan=False)
fractions = st.floats(min_value=0, max_value=1, allow_nan=False)


@given(obtained=times, lifetime=st.floats(0, 1e6), now=times, skew=skews, fraction=fractions)
def test_never_usable_within_the_margin_of_expiry(
    obtained: float, lifetime: float, now: float, skew: float, fraction: float
) -> None:
    t = token(obtained_at=obtained, expires_at=obtained + lifetime)
    policy = ValidityPolicy(clock_skew=skew, max_margin_fraction=fraction)
    v = assess_validity(t, now, policy)
    if v.usable:
        assert now < obtained + lifetime - min(skew, fraction * lifetime)


@given(lifetime=st.floats(0, 1e6), skew=skews, fraction=fractions)
def test_the_margin_is_the_skew_capped_by_a_fraction_of_the_lifetime(
    lifetime: float, skew: float, fraction: float
) -> None:
    margin = expiry_margin(lifetime, ValidityPolicy(clock_skew=skew, max_margin_fraction=fraction))
    assert 0 <= margin <= skew
    assert margin <= fraction * lifetime
    if fraction * lifetime >= skew:
        assert margin == skew  # long-lived tokens keep the full margin


@given(
    obtained=times,
    lifetime=st.floats(0.01, 1e6),
    skew=skews,
    fraction=st.floats(0, 0.9),
    progress=st.floats(0, 0.99),
)
def test_a_token_is_reused_for_most_of_its_life(
    obtained: float, lifetime: float, skew: float, fraction: float, progress: float
) -> None:
    """Usable throughout the first (1 - max_margin_fraction) of its lifetime, however
    short it is compared with the clock skew."""
    t = token(obtained_at=obtained, expires_at=obtained + lifetime)
    policy = ValidityPolicy(clock_skew=skew, max_margin_fraction=fraction)
    now = obtained + progress * (1 - fraction) * lifetime
    assert assess_validity(t, now, policy).usable


@given(obtained=times, now=times, lifetime=st.floats(1, 1e5))
def test_unknown_expiry_never_valid_forever(obtained: float, now: float, lifetime: float) -> None:
    t = token(obtained_at=obtained, expires_at=None)
    v = assess_validity(t, now, ValidityPolicy(unknown_expiry_lifetime=lifetime))
    assert v.usable == (now < obtained + lifetime)


@given(now=times, exp=st.none() | times)
def test_inactive_is_never_usable(now: float, exp: float | None) -> None:
    assert not assess_validity(token(active=False, expires_at=exp), now, POLICY).usable


@given(t1=times, t2=times, exp=times)
def test_validity_is_monotonic_in_time_after_nbf(t1: float, t2: float, exp: float) -> None:
    earlier, later = sorted((t1, t2))
    t = token(obtained_at=0.0, expires_at=exp)
    if assess_validity(t, later, POLICY).usable:
        assert assess_validity(t, earlier, POLICY).usable


# The seed's exact scope matching (sorted-list equality; nil = any; [] = no scope only).
@pytest.mark.parametrize(
    ("granted", "requested_by_get", "asked", "matches"),
    [
        ({"a", "b"}, None, {"a", "b"}, True),
        ({"a", "b"}, None, {"b", "a"}, True),
        ({"a", "b"}, None, {"a"}, False),
        ({"a"}, None, {"a", "b"}, False),
        ({"a", "b"}, None, None, True),
        (set(), None, None, True),
        (set(), None, set(), True),
        ({"a"}, None, set(), False),
        # the server dropped an unknown scope: the same request matches again
        ({"a"}, {"a", "unknown"}, {"a", "unknown"}, True),
        ({"a"}, {"a", "unknown"}, {"a"}, True),
        ({"a"}, {"a", "unknown"}, {"unknown"}, False),
    ],
)
def test_exact_scope_matching_table(
    granted: set[str], requested_by_get: set[str] | None, asked: set[str] | None, matches: bool
) -> None:
    t = token(
        scopes=frozenset(granted),
        requested_scopes=None if requested_by_get is None else frozenset(requested_by_get),
    )
    assert scopes_match(t, None if asked is None else frozenset(asked)) is matches


@pytest.mark.parametrize(
    ("grant", "asked", "covers"),
    [
        ({"a", "b"}, {"a"}, True),
        ({"a", "b"}, {"a", "b"}, True),
        ({"a"}, {"a", "b"}, False),
        ({"a"}, None, True),
        ({"a"}, set(), True),
    ],
)
def test_refresh_token_covers_subsets(
    grant: set[str], asked: set[str] | None, covers: bool
) -> None:
    rt = RefreshToken("r", TokenKey("i", "alice", "c"), frozenset(grant), 0.0)
    assert refresh_token_covers(rt, None if asked is None else frozenset(asked)) is covers


@pytest.mark.parametrize(
    ("overrides", "now", "dead"),
    [
        ({}, 4570.0, False),  # within the skew margin: unusable, but the server still takes it
        ({}, 4600.0, True),
        ({"active": False}, 1000.0, True),
        ({"expires_at": None}, 1299.0, False),
        ({"expires_at": None}, 1300.0, True),
    ],
)
def test_dead_tokens(overrides: dict[str, object], now: float, dead: bool) -> None:
    t = token(**overrides)
    assert is_dead(t, assess_validity(t, now, POLICY), now) is dead
