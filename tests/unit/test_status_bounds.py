"""Status always says why, whatever the input: messages are bounded, and a 422 from the
API server names the field and the limit, never the value (issue 21, item 3)."""

from __future__ import annotations

import json

from kubernetes.client.exceptions import ApiException

from oauth2_token_operator.kube.api import api_error
from oauth2_token_operator.policies.conditions import (
    MAX_MESSAGE,
    ConditionUpdate,
    bounded,
    set_conditions,
)
from oauth2_token_operator.policies.failures import classify


def test_a_short_message_is_kept_whole() -> None:
    assert bounded("the Secret holds a valid token") == "the Secret holds a valid token"
    assert bounded("x" * MAX_MESSAGE) == "x" * MAX_MESSAGE


def test_a_long_message_is_cut_and_says_how_much_is_left_out() -> None:
    missing = " ".join(f"scope-{i:04d}" for i in range(1000))  # 1000 scopes not granted
    message = bounded(f"the server did not grant: {missing}")
    assert len(message) == MAX_MESSAGE
    left_out = len(f"the server did not grant: {missing}") - message.index("…")
    assert message.endswith(f"… ({left_out} more characters)")


def test_conditions_carry_bounded_messages() -> None:
    update = ConditionUpdate("Ready", "True", "TokenValid", "y" * 100_000)
    (written,) = set_conditions(None, [update], now=0.0, generation=1)
    assert len(written["message"]) == MAX_MESSAGE


def _invalid(causes: list[dict[str, str]]) -> ApiException:
    exc = ApiException(status=422, reason="Unprocessable Entity")
    exc.body = json.dumps({"kind": "Status", "reason": "Invalid", "details": {"causes": causes}})
    return exc


def test_a_422_names_the_field_and_the_limit_never_the_value() -> None:
    exc = api_error(
        _invalid(
            [
                {
                    "reason": "FieldValueTooLong",
                    "message": "Too long: may not be more than 262144 bytes",
                    "field": "metadata.annotations",
                },
                {
                    "reason": "FieldValueInvalid",
                    "message": 'Invalid value: "the-token-value": bad',
                    "field": "data[access_token]",
                },
            ]
        ),
        "creating Secret ns/s",
    )
    text = str(exc)
    assert "HTTP 422 Invalid" in text
    assert "metadata.annotations: Too long: may not be more than 262144 bytes" in text
    assert "data[access_token]: FieldValueInvalid" in text
    assert "the-token-value" not in text


def test_a_422_waits_for_a_change_with_a_reason_of_its_own() -> None:
    failure = classify(api_error(_invalid([]), "creating Secret ns/s"))
    assert (failure.reason, failure.retry) == ("SecretRejected", False)
