"""What an introspection answer (RFC 7662) means for the token asked about. Pure.

An `active: false` answer normally retires the token: the issuance chain replaces it.
But a server can say `false` for a token that works. Keycloak does so for a token whose
`aud` lacks the introspecting client (fixed on its side by an audience mapper naming the
client). Believing it would replace every token at each introspection, forever.

The pattern that gives it away: a token found inactive at its first introspection, and
the token that replaced it found inactive at its own first introspection too. From then
on inactive answers are not acted on, the `IntrospectionReliable` condition says why (and
one Warning Event), until an answer says `active` again (say, once the mapper is added).
A server with no introspection endpoint is said once the same way, and no request is sent.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from oauth2_token_operator.policies.conditions import ConditionUpdate, condition

INTROSPECTION_RELIABLE = "IntrospectionReliable"
"""Condition type, set only once introspection has gone wrong (and when it recovers)."""


class Reason(enum.StrEnum):
    ANSWERED = "Answered"
    """The server says the token is active again: its answers are acted on."""
    INACTIVE_AT_ISSUE = "InactiveAtIssue"
    """Two tokens in a row were inactive at their first introspection."""
    UNSUPPORTED = "IntrospectionUnsupported"
    """The server has no introspection endpoint."""


INACTIVE_AT_ISSUE_MESSAGE = (
    "the authorization server said two new tokens in a row were not active at their first"
    " introspection, so its answers are not acted on (tokens are renewed on schedule);"
    " Keycloak says so when the token's audience lacks the client: add an audience mapper"
    " naming the client (see docs/authorization-servers.md)"
)
SAID_ACTIVE = "the authorization server says the token is active"
SAID_INACTIVE = "the authorization server says the token is not active"
UNSUPPORTED_MESSAGE = (
    "the authorization server has no introspection endpoint: spec.introspection is not"
    " acted on (the OAuth2Client's endpoints.introspection can name one)"
)


@dataclass(frozen=True)
class Notice:
    """An Event to post."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class Judgement:
    retire: bool
    """Whether the token is to be treated as inactive (and so replaced)."""
    condition: ConditionUpdate | None = None
    """`IntrospectionReliable` to set; `None` leaves it as it is."""
    event: Notice | None = None


def first_look(last: Mapping[str, Any] | None, last_time: float | None, issued_at: float) -> bool:
    """Whether this introspection is the token's first: none was recorded since its issue."""
    return last is None or last_time is None or last_time < issued_at


def judge(
    *, active: bool, first: bool, last: Mapping[str, Any] | None, status: Mapping[str, Any]
) -> Judgement:
    """The answer `active` for a token (`first`: at its first introspection), given the
    last recorded introspection (`status.lastIntrospection`) and the request's status."""
    distrusted = _reason(status) == Reason.INACTIVE_AT_ISSUE
    recovered = _reason(status) is not None
    if active:
        changed = last is not None and last.get("active") is False
        return Judgement(
            retire=False,
            condition=ConditionUpdate(INTROSPECTION_RELIABLE, "True", Reason.ANSWERED, SAID_ACTIVE)
            if recovered
            else None,
            event=Notice("Normal", "Introspected", SAID_ACTIVE) if changed or recovered else None,
        )
    if distrusted:
        return Judgement(retire=False)
    last_was_first_and_inactive = (
        last is not None and last.get("active") is False and last.get("firstLook") is True
    )
    if first and last_was_first_and_inactive:
        return Judgement(
            retire=False,
            condition=ConditionUpdate(
                INTROSPECTION_RELIABLE, "False", Reason.INACTIVE_AT_ISSUE, INACTIVE_AT_ISSUE_MESSAGE
            ),
            event=Notice("Warning", "IntrospectionUnreliable", INACTIVE_AT_ISSUE_MESSAGE),
        )
    return Judgement(
        retire=True,
        event=Notice("Warning", "Introspected", SAID_INACTIVE),
    )


def unsupported(status: Mapping[str, Any]) -> Judgement:
    """The server has no introspection endpoint: said once (condition and Event)."""
    if _reason(status) == Reason.UNSUPPORTED:
        return Judgement(retire=False)
    return Judgement(
        retire=False,
        condition=ConditionUpdate(
            INTROSPECTION_RELIABLE, "False", Reason.UNSUPPORTED, UNSUPPORTED_MESSAGE
        ),
        event=Notice("Warning", Reason.UNSUPPORTED, UNSUPPORTED_MESSAGE),
    )


def _reason(status: Mapping[str, Any]) -> str | None:
    """The reason of a False `IntrospectionReliable` condition, if there is one."""
    entry = condition(status, INTROSPECTION_RELIABLE)
    if entry is None or entry.get("status") != "False":
        return None
    reason = entry.get("reason")
    return reason if isinstance(reason, str) else None
