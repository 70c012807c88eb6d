import base64
import json

import pytest

from oauth2_token_operator.oauth2.errors import MalformedResponseError
from oauth2_token_operator.oauth2.responses import (
    parse_introspection,
    parse_token_response,
    unverified_subject,
)


def parse(body: object, requested: frozenset[str] | None = None):  # type: ignore[no-untyped-def]
    return parse_token_response(
        body, endpoint="token_endpoint", requested_scopes=requested, now=100.0
    )


def test_expiry_becomes_absolute_and_echoed_scope_wins() -> None:
    r = parse(
        {"access_token": "at", "token_type": "bearer", "expires_in": 60, "scope": "b a",
         "id_token": "x", "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"},
        frozenset({"a", "b", "c"}),
    )  # fmt: skip
    assert r.expires_at == 160.0
    assert r.token_type == "Bearer"  # compared case-insensitively, kept canonical
    assert r.scopes == {"a", "b"}
    assert r.scope_echoed
    assert r.extra == {
        "id_token": "x", "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"
    }  # fmt: skip


def test_requested_scopes_apply_when_not_echoed_and_expiry_may_be_unknown() -> None:
    r = parse({"access_token": "at", "token_type": "Bearer"}, frozenset({"a"}))
    assert r.scopes == {"a"}
    assert not r.scope_echoed
    assert r.expires_at is None


def test_numeric_string_expires_in_is_accepted() -> None:
    assert (
        parse({"access_token": "at", "token_type": "Bearer", "expires_in": "30"}).expires_at == 130
    )


def test_secrets_are_not_in_repr() -> None:
    r = parse({"access_token": "AT-SECRET", "token_type": "Bearer", "refresh_token": "RT-SECRET"})
    assert "AT-SECRET" not in repr(r)
    assert "RT-SECRET" not in repr(r)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "not a JSON object"),
        ({"token_type": "Bearer"}, "no access_token"),
        ({"access_token": "", "token_type": "Bearer"}, "no access_token"),
        ({"access_token": "at"}, "no token_type"),
        ({"access_token": "at", "token_type": "Bearer", "expires_in": "soon"}, "not a number"),
        ({"access_token": "at", "token_type": "Bearer", "expires_in": -1}, "negative"),
        ({"access_token": "at", "token_type": "Bearer", "scope": ["a"]}, "scope is not a string"),
        ({"access_token": "at", "token_type": "Bearer", "scope": 'a"b'}, "invalid scope token"),
        ({"access_token": "at", "token_type": "Bearer", "refresh_token": 5}, "refresh_token"),
    ],
)
def test_malformed_token_responses(body: object, message: str) -> None:
    with pytest.raises(MalformedResponseError, match=message) as caught:
        parse(body)
    assert caught.value.endpoint == "token_endpoint"


def test_introspection_fields() -> None:
    i = parse_introspection(
        {"active": True, "scope": "a b", "exp": 200, "nbf": 50, "aud": ["x", "y"], "sub": "alice",
         "client_id": "c", "cnf": {"x5t#S256": "t"}},
        endpoint="introspection_endpoint",
    )  # fmt: skip
    assert (i.active, i.scopes, i.exp, i.nbf, i.aud, i.sub) == (
        True, frozenset({"a", "b"}), 200.0, 50.0, ["x", "y"], "alice"
    )  # fmt: skip
    assert i.extra == {"cnf": {"x5t#S256": "t"}}


def test_inactive_introspection_discards_everything_else() -> None:
    i = parse_introspection({"active": False, "exp": 999, "sub": "x"}, endpoint="e")
    assert i.active is False
    assert i.exp is None
    assert i.sub is None


@pytest.mark.parametrize(
    "body",
    [{}, {"active": "true"}, {"active": 1}, {"active": True, "exp": "tomorrow"},
     {"active": True, "exp": True}, {"active": True, "aud": 5}, {"active": True, "sub": 3}, None],
)  # fmt: skip
def test_malformed_introspection(body: object) -> None:
    with pytest.raises(MalformedResponseError):
        parse_introspection(body, endpoint="introspection_endpoint")


def _jwt(payload: object) -> str:
    def part(value: object) -> str:
        raw = json.dumps(value).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    return f"{part({'alg': 'RS256', 'typ': 'at+jwt'})}.{part(payload)}.c2lnbmF0dXJl"


@pytest.mark.parametrize(
    ("token", "subject"),
    [
        (_jwt({"sub": "alice", "iat": 1}), "alice"),
        (_jwt({"sub": "a" * 256}), None),  # too long to show
        (_jwt({"sub": 42}), None),
        (_jwt(["not", "an", "object"]), None),
        (_jwt({"client_id": "svc"}), None),
        ("opaque-token-value", None),
        ("a.%%%.c", None),
        ("a..c", None),
    ],
)
def test_the_subject_of_a_jwt_access_token_is_read_for_display(
    token: str, subject: str | None
) -> None:
    assert unverified_subject(token) == subject
