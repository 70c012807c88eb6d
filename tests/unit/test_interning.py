"""`manager.interning`: stored tokens share one copy of the values they repeat."""

from __future__ import annotations

from oauth2_token_operator.manager import CLIENT_CREDENTIALS, AccessToken, TokenKey
from oauth2_token_operator.util.interning import CAPACITY, interned


def test_an_equal_value_seen_before_is_that_very_object() -> None:
    first = frozenset({"interning-test", "read"})
    again = frozenset({"read", "interning-test"})
    assert again is not first
    assert interned(first) is first
    assert interned(again) is first


def test_equal_values_of_different_types_stay_apart() -> None:
    assert type(interned(1)) is int
    assert type(interned(1.0)) is float


def test_a_value_not_used_for_long_is_forgotten_not_kept_forever() -> None:
    old = ("interning-test", "old")
    assert interned(old) is old
    for i in range(CAPACITY):
        interned(("interning-test", i))
    fresh = ("interning-test", "old")
    assert interned(fresh) is fresh


def test_tokens_share_their_key_scopes_and_resources() -> None:
    def token(value: str) -> AccessToken:
        return AccessToken(
            value=value,
            token_type="".join(["Bea", "rer"]),  # a copy, as parsed from a response
            key=TokenKey("https://interning.example", CLIENT_CREDENTIALS, "c", "ns/c"),
            scopes=frozenset({"read"}),
            obtained_at=0.0,
            expires_at=60.0,
            requested_scopes=frozenset({"read", "write"}),
            resources=frozenset(),
        )

    first, second = token("a"), token("b")
    for name in ("token_type", "key", "scopes", "requested_scopes", "resources"):
        assert getattr(first, name) is getattr(second, name), name
