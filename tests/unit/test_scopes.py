import pytest
from hypothesis import given
from hypothesis import strategies as st

from oauth2_token_operator.oauth2.scopes import (
    format_scope,
    is_scope_token,
    parse_scope,
    validate_scopes,
)

# RFC 6749 §3.3: %x21 / %x23-5B / %x5D-7E
SCOPE_CHARS = [chr(c) for c in [0x21, *range(0x23, 0x5C), *range(0x5D, 0x7F)]]
scope_tokens = st.text(alphabet=SCOPE_CHARS, min_size=1, max_size=20)
bad_chars = st.sampled_from([" ", '"', "\\", "\t", "\n", "\x00", "\x7f", "é"])


@given(st.frozensets(scope_tokens, max_size=8))
def test_format_then_parse_is_identity(scopes: frozenset[str]) -> None:
    assert parse_scope(format_scope(scopes)) == scopes


@given(st.frozensets(scope_tokens, max_size=8))
def test_format_is_canonical_whatever_the_order(scopes: frozenset[str]) -> None:
    text = format_scope(scopes)
    assert text == format_scope(reversed(sorted(scopes)))
    assert "  " not in text
    assert text == text.strip()


@given(scope_tokens, bad_chars, scope_tokens)
def test_tokens_with_forbidden_characters_are_rejected(left: str, bad: str, right: str) -> None:
    token = left + bad + right
    assert not is_scope_token(token)
    if bad != " ":
        with pytest.raises(ValueError, match="invalid scope token"):
            validate_scopes([token])


def test_parse_tolerates_runs_of_spaces_but_not_other_whitespace() -> None:
    assert parse_scope("  read   write ") == {"read", "write"}
    assert parse_scope(None) == frozenset()
    assert parse_scope("") == frozenset()
    with pytest.raises(ValueError, match="invalid scope token"):
        parse_scope("read\twrite")


def test_duplicates_collapse_into_a_set() -> None:
    assert parse_scope("read read write") == {"read", "write"}
    assert format_scope(["b", "a", "b"]) == "a b"


def test_empty_token_is_not_a_scope_token() -> None:
    assert not is_scope_token("")
    with pytest.raises(ValueError, match="invalid scope token"):
        validate_scopes([""])
