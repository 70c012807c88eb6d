"""AccessToken keeps one copy of what introspection says (issue 6 clean-up)."""

from __future__ import annotations

import dataclasses

from oauth2_token_operator.manager import CLIENT_CREDENTIALS, AccessToken, TokenKey
from oauth2_token_operator.manager.model import with_introspection
from oauth2_token_operator.oauth2 import Introspection

KEY = TokenKey("https://as.example", CLIENT_CREDENTIALS, "client")
OBTAINED = AccessToken("v", "Bearer", KEY, frozenset({"read"}), 1000.0, 4600.0)
ANSWER = Introspection(
    active=True,
    scopes=frozenset({"read", "write"}),
    client_id="client",
    username="alice",
    token_type="Bearer",
    exp=5000.0,
    iat=900.0,
    nbf=950.0,
    sub="alice",
    aud=["https://api.example"],
    iss="https://as.example",
    jti="j1",
    extra={"cnf": {"x5t#S256": "abc"}},
)


def test_an_introspection_answer_round_trips_through_the_token() -> None:
    updated = with_introspection(OBTAINED, ANSWER, now=2000.0)
    assert (updated.scopes, updated.expires_at, updated.not_before, updated.active) == (
        ANSWER.scopes, ANSWER.exp, ANSWER.nbf, True,
    )  # fmt: skip
    assert updated.confirmed_at == 2000.0
    assert updated.issued_at == 900.0  # the server's iat, for the lifetime
    assert updated.introspection() == ANSWER
    # The fields are the only copy: changing one changes what introspection reports.
    assert dataclasses.replace(updated, expires_at=6000.0).introspection().exp == 6000.0


def test_silent_members_keep_what_we_knew() -> None:
    updated = with_introspection(OBTAINED, Introspection(active=True), now=2000.0)
    assert (updated.scopes, updated.expires_at) == (OBTAINED.scopes, OBTAINED.expires_at)


def test_an_inactive_token_says_nothing_else() -> None:
    updated = with_introspection(OBTAINED, Introspection(active=False), now=2000.0)
    assert updated.active is False
    assert updated.introspection() == Introspection(active=False)


def test_a_token_we_obtained_describes_itself_from_its_key() -> None:
    info = OBTAINED.introspection()
    assert (info.active, info.client_id, info.sub, info.iss, info.iat, info.exp) == (
        True, "client", None, KEY.issuer, 1000.0, 4600.0,
    )  # fmt: skip
