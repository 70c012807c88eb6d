"""What a failed issuance means for the request: a condition reason, and when (whether)
to try again. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from oauth2_token_operator.client_config import ClientConfigError
from oauth2_token_operator.kube.api import KubeApiError
from oauth2_token_operator.oauth2 import errors
from oauth2_token_operator.policies.exchange import SubjectTokenUnavailable
from oauth2_token_operator.policies.reasons import Reason

ISSUER_NOT_ALLOWED = "IssuerNotAllowed"
"""The operator's egress rules (`--deny-cidr`, `--allow-issuer`, `--forbid-insecure-http`)
refuse the client's issuer or one of its endpoints."""
INVALID_SPEC = "InvalidSpec"
CIRCUIT_OPEN = "CircuitOpen"
"""The reason of an attempt not made: the server's endpoint failed too often in a row."""


@dataclass(frozen=True)
class Failure:
    reason: str
    message: str
    retry: bool
    """False: retrying cannot help until something changes (the spec, the client, a
    Secret); the operator waits for that change instead of looping."""
    retry_after: float | None = None
    """Seconds the server asked us to wait (`Retry-After`)."""


def classify(exc: Exception) -> Failure:
    if isinstance(exc, ValidationError):
        # A spec the CRD admitted but pydantic refuses (a rule CEL cannot state): its text
        # would echo the input, so it is not repeated.
        return Failure(INVALID_SPEC, "the spec does not validate", retry=False)
    message = str(exc)
    if isinstance(exc, ClientConfigError):
        return Failure(exc.reason, exc.message, retry=True)
    if isinstance(exc, SubjectTokenUnavailable):
        return Failure(exc.reason, exc.message, retry=exc.retry)
    if isinstance(exc, errors.OAuth2ErrorResponse) and exc.status_code == 401:
        # RFC 6749 §5.2: a 401 is the client failing to authenticate, whatever code the
        # server names (Keycloak says unauthorized_client for a wrong secret). A fixed
        # credential can make the next attempt work: retry, never wait for a spec change.
        return Failure(Reason.INVALID_CLIENT, message, retry=True)
    if isinstance(exc, errors.InvalidGrantError | errors.SpentRefreshTokenError):
        return Failure(Reason.REFRESH_TOKEN_REJECTED, message, retry=False)
    if isinstance(exc, errors.InvalidClientError):
        return Failure(Reason.INVALID_CLIENT, message, retry=True)
    if isinstance(exc, errors.InvalidScopeError | errors.InvalidTargetError):
        return Failure("InvalidScope", message, retry=False)
    if isinstance(exc, errors.UnauthorizedClientError | errors.UnsupportedGrantTypeError):
        return Failure("GrantNotAllowed", message, retry=False)
    if isinstance(exc, errors.InactiveTokenError):
        return Failure("TokenInactive", message, retry=False)
    if isinstance(exc, errors.NoTokenAvailableError):
        return Failure("NoRefreshToken", message, retry=False)
    if isinstance(exc, errors.EgressRefusedError):
        # The operator's own flags refuse the issuer: nothing was sent, and only a change
        # of the client (or of the flags, a restart) helps.
        return Failure(ISSUER_NOT_ALLOWED, message, retry=False)
    if isinstance(exc, errors.MetadataError):
        return Failure("DiscoveryFailed", message, retry=True)
    if isinstance(exc, errors.ConfigurationError):
        return Failure("InvalidConfiguration", message, retry=False)
    if isinstance(exc, KubeApiError) and exc.status == 422:
        # The API server refused what the operator wrote (a Secret too large, say): the
        # same input gets the same answer, so wait for a change.
        return Failure("SecretRejected", message, retry=False)
    if isinstance(exc, errors.CircuitOpenError):
        # Nothing was sent: the endpoint's last calls failed in a row. The next attempt
        # waits for its circuit to let a call through again (and the usual backoff).
        return Failure(CIRCUIT_OPEN, message, retry=True, retry_after=exc.retry_after)
    asked = getattr(exc, "retry_after", None)  # a server's Retry-After, either server's
    retry_after = asked if isinstance(asked, int | float) else None
    if isinstance(exc, errors.OAuth2Error) and not isinstance(exc, errors.OAuth2ErrorResponse):
        return Failure(
            "AuthorizationServerUnavailable", message, retry=True, retry_after=retry_after
        )
    return Failure("IssuanceFailed", message, retry=True, retry_after=retry_after)
