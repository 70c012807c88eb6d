import inspect

import pytest

from oauth2_token_operator import oauth2
from oauth2_token_operator.oauth2 import errors
from oauth2_token_operator.oauth2.errors import (
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2ErrorResponse,
    TemporarilyUnavailableError,
    UnauthorizedClientError,
    UnexpectedStatusError,
    UnsupportedGrantTypeError,
    error_response,
    sanitize_server_text,
)


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("invalid_request", InvalidRequestError),
        ("invalid_client", InvalidClientError),
        ("invalid_grant", InvalidGrantError),
        ("unauthorized_client", UnauthorizedClientError),
        ("unsupported_grant_type", UnsupportedGrantTypeError),
        ("invalid_scope", InvalidScopeError),
        ("temporarily_unavailable", TemporarilyUnavailableError),
        ("something_else", OAuth2ErrorResponse),
    ],
)
def test_rfc6749_codes_map_to_types(code: str, cls: type[OAuth2ErrorResponse]) -> None:
    exc = error_response(
        endpoint="token_endpoint", status_code=400, error=code, error_description="why"
    )
    assert type(exc) is cls
    # The server's description (and a code no RFC registers) is its own text: kept for a
    # debug log, never in the message, which reaches status and Events (issue 22).
    named = code if code != "something_else" else "an error code the RFCs do not define"
    assert str(exc) == f"token_endpoint: {named} (HTTP 400)"
    assert exc.error == code
    assert exc.error_description == "why"


def test_server_text_cannot_forge_log_lines() -> None:
    exc = error_response(
        endpoint="token_endpoint", status_code=400, error="invalid_grant",
        error_description="bad\nERROR fake line\r" + "x" * 1000,
    )  # fmt: skip
    assert "fake line" not in str(exc)
    assert exc.error_description is not None
    assert "\n" not in exc.error_description
    assert "\r" not in exc.error_description
    assert len(exc.error_description) < 400
    assert sanitize_server_text(None) is None


def test_retryable_statuses() -> None:
    assert UnexpectedStatusError("x", status_code=503).retryable
    assert UnexpectedStatusError("x", status_code=429).retryable
    assert not UnexpectedStatusError("x", status_code=404).retryable
    assert TemporarilyUnavailableError(endpoint=None, status_code=503, error="t").retryable
    assert not InvalidGrantError(endpoint=None, status_code=400, error="invalid_grant").retryable


def test_every_error_class_is_exported_from_the_package() -> None:
    classes = {
        name
        for name, value in inspect.getmembers(errors, inspect.isclass)
        if issubclass(value, errors.OAuth2Error)
    }
    assert classes <= set(oauth2.__all__)
    assert all(getattr(oauth2, name) is getattr(errors, name) for name in classes)
