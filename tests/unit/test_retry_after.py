"""A hostile server's `Retry-After` (issue 22): malformed, huge or absurd, it is read as
at most an hour or ignored, never an exception that escapes a reconcile or a finalizer
(a time out of range once reached `rfc3339` and raised)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from kubernetes.client.exceptions import ApiException

from oauth2_token_operator.kube.api import api_error
from oauth2_token_operator.oauth2.transport import MAX_RETRY_AFTER, parse_retry_after
from oauth2_token_operator.util.rfc3339 import rfc3339

NOW = 1_800_000_000.0

HOSTILE = [
    "9" * 400,  # float: inf
    "99999999999999999999",
    "1e400",
    "inf",
    "nan",
    "-5",
    "١٢٣",  # Arabic-Indic digits: str.isdigit() says yes
    "Fri, 31 Dec 9999 23:59:59 GMT",
    "Mon, 01 Jan 0001 00:00:00 GMT",
    "Wed, 99 Foo 2015 99:99:99 GMT",
]


@given(st.text(max_size=60) | st.sampled_from(HOSTILE))
def test_any_retry_after_from_an_authorization_server_is_bounded(value: str) -> None:
    seconds = parse_retry_after(value, NOW)
    assert seconds is None or 0.0 <= seconds <= MAX_RETRY_AFTER
    if seconds is not None:
        rfc3339(NOW + seconds)  # what the operator then writes into status


@given(st.text(max_size=60) | st.sampled_from(HOSTILE))
def test_any_retry_after_from_the_api_server_is_bounded(value: str) -> None:
    exc = ApiException(status=429, reason="Too Many Requests")
    exc.headers = {"Retry-After": value}
    seconds = api_error(exc, "patching status").retry_after
    assert seconds is None or 0.0 <= seconds <= 3600.0
    if seconds is not None:
        rfc3339(NOW + seconds)


def test_a_sane_retry_after_is_kept() -> None:
    assert parse_retry_after("120", NOW) == 120.0
    assert parse_retry_after("99999", NOW) == MAX_RETRY_AFTER
