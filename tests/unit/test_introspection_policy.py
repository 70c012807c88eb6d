"""`policies.introspection`: what an introspection answer does, as a table of situations.

The case it exists for: Keycloak says `active: false` for a token whose audience lacks
the introspecting client, so believing it replaces every token at each introspection."""

from __future__ import annotations

from typing import Any

import pytest

from oauth2_token_operator.policies.introspection import (
    INTROSPECTION_RELIABLE,
    Reason,
    first_look,
    judge,
    unsupported,
)


def _status(reason: str | None, status: str = "False") -> dict[str, Any]:
    if reason is None:
        return {}
    return {"conditions": [{"type": INTROSPECTION_RELIABLE, "status": status, "reason": reason}]}


INACTIVE_FIRST = {"active": False, "firstLook": True}
INACTIVE_LATER = {"active": False, "firstLook": False}
ACTIVE = {"active": True, "firstLook": True}


@pytest.mark.parametrize(
    ("active", "first", "last", "status", "retire", "condition", "event"),
    [
        # situation                                  -> retire, condition,           Event
        (True, True, None, None, False, None, None),  # quiet while all is well
        (True, False, ACTIVE, None, False, None, None),
        (False, True, None, None, True, None, "Introspected"),  # one inactive: replaced
        (False, False, ACTIVE, None, True, None, "Introspected"),  # revoked later: replaced
        (False, True, INACTIVE_LATER, None, True, None, "Introspected"),  # not at issue
        (False, False, INACTIVE_FIRST, None, True, None, "Introspected"),  # not its first
        # the second new token in a row inactive at its first look: no longer believed
        (False, True, INACTIVE_FIRST, None, False, "InactiveAtIssue", "IntrospectionUnreliable"),
        # while not believed: nothing happens, nothing is said again
        (False, True, INACTIVE_FIRST, "InactiveAtIssue", False, None, None),
        (False, False, INACTIVE_LATER, "InactiveAtIssue", False, None, None),
        # an active answer (the mapper was added) makes it believed again, said once
        (True, False, INACTIVE_LATER, "InactiveAtIssue", False, "Answered", "Introspected"),
        (True, True, None, "IntrospectionUnsupported", False, "Answered", "Introspected"),
        (True, True, ACTIVE, "Answered", False, None, None),  # a True condition stays
        (True, False, INACTIVE_FIRST, None, False, None, "Introspected"),  # back to active
    ],
)
def test_what_an_answer_does(
    active: bool,
    first: bool,
    last: dict[str, Any] | None,
    status: str | None,
    retire: bool,
    condition: str | None,
    event: str | None,
) -> None:
    current = _status(status, "True" if status == "Answered" else "False")
    judgement = judge(active=active, first=first, last=last, status=current)
    assert judgement.retire is retire
    assert (judgement.condition.reason if judgement.condition else None) == condition
    assert (judgement.event.reason if judgement.event else None) == event
    if condition == Reason.INACTIVE_AT_ISSUE:
        assert judgement.condition is not None
        assert judgement.condition.status == "False"
        assert "audience mapper" in judgement.condition.message
        assert judgement.event is not None
        assert judgement.event.type == "Warning"


def test_a_server_without_the_endpoint_is_said_once() -> None:
    said = unsupported({})
    assert said.condition is not None
    assert said.condition.reason == Reason.UNSUPPORTED
    assert said.event is not None
    assert said.event.type == "Warning"
    assert not said.retire
    again = unsupported(_status(Reason.UNSUPPORTED))
    assert (again.condition, again.event, again.retire) == (None, None, False)
    # From another reason it is said anew.
    assert unsupported(_status(Reason.INACTIVE_AT_ISSUE)).condition is not None


@pytest.mark.parametrize(
    ("last", "last_time", "issued_at", "first"),
    [
        (None, None, 100.0, True),
        ({"active": True}, None, 100.0, True),  # unreadable time
        ({"active": True}, 90.0, 100.0, True),  # about the previous token
        ({"active": True}, 110.0, 100.0, False),
    ],
)
def test_first_look(
    last: dict[str, Any] | None, last_time: float | None, issued_at: float, first: bool
) -> None:
    assert first_look(last, last_time, issued_at) is first
