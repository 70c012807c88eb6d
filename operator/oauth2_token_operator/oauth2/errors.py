"""One small exception hierarchy for every OAuth2 failure.

Every message names the endpoint it concerns and is safe to log: it never
contains an access token, refresh token, client secret or key. Server-sent
``error_description`` text is kept, but trimmed and stripped of control
characters so a hostile server cannot forge log lines.
"""

from __future__ import annotations

import copy
import re
from typing import Any, Self

_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
_MAX_SERVER_TEXT = 300


def sanitize_server_text(text: str | None) -> str | None:
    """Make server-provided text safe to put in a log line or a status message."""
    if text is None:
        return None
    cleaned = _CONTROL_CHARS.sub(" ", str(text)).strip()
    if len(cleaned) > _MAX_SERVER_TEXT:
        cleaned = cleaned[: _MAX_SERVER_TEXT - 1] + "…"
    return cleaned


class OAuth2Error(Exception):
    """Base of every error raised by the OAuth2 core and the token manager."""

    #: Whether trying again later may succeed without a change of configuration.
    retryable: bool = False

    def __init__(self, message: str, *, endpoint: str | None = None) -> None:
        self.endpoint = endpoint
        super().__init__(f"{endpoint}: {message}" if endpoint else message)

    def __reduce__(self) -> tuple[Any, ...]:
        # Copies (and pickles) of every subclass, whatever its __init__ asks for.
        return (_rebuilt, (type(self), self.args, self.__dict__))

    def detached(self) -> Self:
        """The same error without its traceback and chained exceptions: one to keep. A
        kept error that had been raised holds every frame it passed through alive, and
        their locals (a response body, a reconcile's whole state) with them."""
        return copy.copy(self)


def _rebuilt(cls: type[OAuth2Error], args: tuple[Any, ...], state: dict[str, Any]) -> OAuth2Error:
    error = cls.__new__(cls, *args)
    error.args = args
    error.__dict__.update(state)
    return error


class ConfigurationError(OAuth2Error):
    """The caller's configuration is unusable (missing credentials, bad key, insecure URL)."""


class EndpointNotAdvertisedError(ConfigurationError):
    """The server has no such endpoint (its metadata names none, nor does the client's
    configuration): Entra ID and Google have no revocation endpoint, many servers no
    introspection endpoint. Raised before any request is sent; asking again changes
    nothing until the metadata or the configuration does."""


class MetadataError(OAuth2Error):
    """Authorization server metadata could not be discovered or is invalid."""

    retryable = True


class IssuerMismatchError(MetadataError):
    """The discovered document names another issuer than the one configured (RFC 8414 §3.3)."""

    retryable = False


class NoResponseError(OAuth2Error):
    """The request got no HTTP answer (DNS, connect, TLS, timeout, dropped connection).

    The message names the cause, e.g. ``ConnectError (connection refused)``.
    """

    retryable = True


class DeadlineExceededError(NoResponseError):
    """The call did not complete within its total deadline (``Timeouts.total``).

    The deadline covers every attempt and every wait between them, so a server
    that answers slowly, or a byte at a time, cannot hold a call forever.
    """


class CircuitOpenError(OAuth2Error):
    """Not sent: the endpoint's last calls failed in a row, and its circuit is open until
    `retry_at` (epoch seconds; see ``breaker``)."""

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        endpoint: str | None = None,
        server: str,
        failures: int,
        retry_at: float,
        retry_after: float,
    ) -> None:
        self.server = server
        self.failures = failures
        self.retry_at = retry_at
        self.retry_after = retry_after
        """Seconds from when it was raised until `retry_at`."""
        super().__init__(message, endpoint=endpoint)


class UnexpectedStatusError(OAuth2Error):
    """An HTTP answer that is neither success nor an RFC 6749 §5.2 error body."""

    def __init__(
        self,
        message: str,
        *,
        endpoint: str | None = None,
        status_code: int,
        retry_after: float | None = None,
    ) -> None:
        self.status_code = status_code
        self.retry_after = retry_after
        self.retryable = status_code == 429 or status_code >= 500
        super().__init__(message, endpoint=endpoint)


class MalformedResponseError(OAuth2Error):
    """A success status with a body that does not follow the RFC."""


class EgressRefusedError(OAuth2Error):
    """The operator's egress rules (``egress.EgressPolicy``, its administrator's flags)
    refuse the call: nothing was sent. The message names the rule, never a server's text."""


class AddressNotAllowedError(EgressRefusedError):
    """The host is, or resolves only to, addresses in the deny list (``--deny-cidr``)."""


class HostNotAllowedError(EgressRefusedError):
    """The host matches no allowed pattern (``--allow-issuer``)."""


class InsecureHTTPForbiddenError(EgressRefusedError):
    """Plain http, which the operator forbids (``--forbid-insecure-http``)."""


class OAuth2ErrorResponse(OAuth2Error):
    """An RFC 6749 §5.2 (or RFC 7009 / RFC 8707) error response.

    Subclasses exist for the codes callers act on; unknown codes use this class.
    """

    code: str = "unknown_error"

    def __init__(
        self,
        *,
        endpoint: str | None,
        status_code: int,
        error: str,
        error_description: str | None = None,
        error_uri: str | None = None,
    ) -> None:
        self.status_code = status_code
        self.error = error
        self.error_description = sanitize_server_text(error_description)
        """The server's words: for a debug log, never in the message (which reaches
        status and Events, where a server must not be able to write what it likes)."""
        self.error_uri = sanitize_server_text(error_uri)
        super().__init__(f"{describe_error_code(error)} (HTTP {status_code})", endpoint=endpoint)


class InvalidRequestError(OAuth2ErrorResponse):
    code = "invalid_request"


class InvalidClientError(OAuth2ErrorResponse):
    code = "invalid_client"


class InvalidGrantError(OAuth2ErrorResponse):
    code = "invalid_grant"


class UnauthorizedClientError(OAuth2ErrorResponse):
    code = "unauthorized_client"


class UnsupportedGrantTypeError(OAuth2ErrorResponse):
    code = "unsupported_grant_type"


class InvalidScopeError(OAuth2ErrorResponse):
    code = "invalid_scope"


class InvalidTargetError(OAuth2ErrorResponse):
    """RFC 8707 §2: the requested resource is unknown or not allowed."""

    code = "invalid_target"


class UnsupportedTokenTypeError(OAuth2ErrorResponse):
    """RFC 7009 §2.2.1: the server cannot revoke this type of token."""

    code = "unsupported_token_type"


class TemporarilyUnavailableError(OAuth2ErrorResponse):
    code = "temporarily_unavailable"
    retryable = True


_BY_CODE: dict[str, type[OAuth2ErrorResponse]] = {
    cls.code: cls
    for cls in (
        InvalidRequestError,
        InvalidClientError,
        InvalidGrantError,
        UnauthorizedClientError,
        UnsupportedGrantTypeError,
        InvalidScopeError,
        InvalidTargetError,
        UnsupportedTokenTypeError,
        TemporarilyUnavailableError,
    )
}


KNOWN_ERROR_CODES = frozenset(_BY_CODE)
"""The RFC 6749 §5.2 / RFC 7009 / RFC 8707 codes given their own class (and metric label)."""

REGISTERED_ERROR_CODES = KNOWN_ERROR_CODES | {
    "server_error",  # RFC 6749 §4.1.2.1
    "access_denied",
    "unsupported_response_type",
    "invalid_token",  # RFC 6750 §3.1
    "insufficient_scope",
}
"""Error codes the RFCs register: named in messages. Any other is the server's text."""


def describe_error_code(error: str | None) -> str:
    """A registered error code as it is; any other, our own words (a message reaches
    status and Events: a server's free text, or a probe's answer, is not repeated)."""
    return error if error in REGISTERED_ERROR_CODES else "an error code the RFCs do not define"


def error_response(
    *,
    endpoint: str | None,
    status_code: int,
    error: str,
    error_description: str | None = None,
    error_uri: str | None = None,
) -> OAuth2ErrorResponse:
    """Build the typed exception for an RFC 6749 §5.2 error body."""
    cls = _BY_CODE.get(error, OAuth2ErrorResponse)
    return cls(
        endpoint=endpoint,
        status_code=status_code,
        error=error,
        error_description=error_description,
        error_uri=error_uri,
    )


class TokenError(OAuth2Error):
    """Base of the token manager's own errors."""


class NoTokenAvailableError(TokenError):
    """``get`` found no valid token and had no way to obtain one."""


class SpentRefreshTokenError(TokenError):
    """The refresh token was already used up (rotated to a successor, or refused by the
    server): sending it again would be a replay, which can cost the whole grant."""


class InactiveTokenError(TokenError):
    """Introspection says the token is not active (RFC 7662 ``active: false``)."""
