"""The `token_exchange` grant's decisions (RFC 8693), pure: whether another request's
token may be the subject token now, and what a server's refusal of an exchange means.
(A ServiceAccount's token as the subject token follows `policies.service_accounts`.)

The token the operator holds for another AccessTokenRequest of the same namespace (its
own record, never that request's Secret) is sent only:
- while it is valid (not expired, not known inactive): otherwise the exchange waits for
  that request's next token, and goes on within seconds of it (`awaited`);
- to the server that issued it (the same issuer, endpoint overrides and TLS settings):
  a request naming an OAuth2Client of another server would otherwise hand another
  request's token to a server of its choosing.
"""

from __future__ import annotations

from dataclasses import dataclass

from oauth2_token_operator.oauth2 import errors

SUBJECT_NOT_FOUND = "SubjectRequestNotFound"
SUBJECT_NOT_READY = "SubjectTokenNotReady"
SUBJECT_ELSEWHERE = "SubjectTokenElsewhere"
SUBJECT_REJECTED = "SubjectTokenRejected"
SUBJECT_IS_SELF = "SubjectIsSelf"

REFUSED_SUBJECT_CODES = frozenset({"invalid_request", "invalid_grant", "invalid_token"})
"""What servers answer an exchange whose subject token they do not accept (Keycloak 26.7:
`invalid_request` "Invalid token" for a revoked or unknown one)."""


class SubjectTokenUnavailable(Exception):
    """The exchange cannot be made (or was refused) because of its subject token."""

    def __init__(self, reason: str, message: str, *, retry: bool) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.retry = retry
        """True: a new token of the subject request can fix it (awaited)."""


@dataclass(frozen=True)
class SubjectFacts:
    """What the operator knows of the request whose token is the subject token."""

    name: str
    """The subject AccessTokenRequest's name (same namespace)."""
    is_self: bool
    exists: bool
    token_usable: bool | None
    """`None`: the operator holds no token for it; `False`: expired or inactive."""
    same_server: bool | None
    """Whether the exchange goes to the server that issued the subject token (its
    client's issuer configuration equals the exchanging client's); `None`: unknown."""


def subject_refusal(facts: SubjectFacts) -> SubjectTokenUnavailable | None:
    """Why the subject token cannot be sent now, or `None` if it can."""
    where = f"AccessTokenRequest {facts.name}"
    if facts.is_self:
        return SubjectTokenUnavailable(
            SUBJECT_IS_SELF,
            "tokenExchange.subjectTokenFrom names this request itself: name another request",
            retry=False,
        )
    if not facts.exists:
        return SubjectTokenUnavailable(
            SUBJECT_NOT_FOUND,
            f"{where} (the subject token's source) not found in this namespace; waiting for it",
            retry=True,
        )
    if not facts.token_usable or facts.same_server is None:
        state = "holds no token yet" if facts.token_usable is None else "has no valid token"
        return SubjectTokenUnavailable(
            SUBJECT_NOT_READY,
            f"{where} {state}; the exchange waits for its next token",
            retry=True,
        )
    if not facts.same_server:
        return SubjectTokenUnavailable(
            SUBJECT_ELSEWHERE,
            f"the token of {where} comes from another authorization server (or another"
            " configuration of it: issuer, endpoints, TLS) than this request's OAuth2Client;"
            " it is sent only to the server that issued it",
            retry=False,
        )
    return None


def exchange_refusal(
    exc: Exception, source: str, *, service_account: bool = False
) -> SubjectTokenUnavailable | None:
    """A server's refusal of an exchange that points at the subject token (a 400 with a
    code servers use for a bad `subject_token`, or a 403 `access_denied`: this client may
    not exchange it), said as such; `None` for any other failure (client
    authentication, scope, audience: classified as for other grants).
    `source`: where the subject token came from (`AccessTokenRequest NAME`,
    `ServiceAccount NAMESPACE/NAME`)."""
    if not isinstance(exc, errors.OAuth2ErrorResponse):
        return None
    again = (
        "tried again after a backoff"
        if service_account
        else ("tried again with that request's next token")
    )
    if (exc.status_code, exc.error) == (403, "access_denied"):
        # Keycloak's legacy token exchange: the client lacks the permission to exchange
        # tokens of that client or identity provider ("Client not allowed to exchange").
        return SubjectTokenUnavailable(
            SUBJECT_REJECTED,
            f"the server does not let this client exchange the token of {source} ({exc}):"
            f" a permission its administrator grants; {again}",
            retry=True,
        )
    if not (exc.status_code == 400 and exc.error in REFUSED_SUBJECT_CODES):
        return None
    why = (
        "the server may not trust the cluster's ServiceAccount tokens (their issuer), or"
        " expect another audience (serviceAccountRef.audience)"
        if service_account
        else "it may be revoked, or not meant for this client (the subject token's audience"
        " must name it)"
    )
    return SubjectTokenUnavailable(
        SUBJECT_REJECTED,
        f"the server refused to exchange the token of {source} ({exc}): {why}; {again}",
        retry=True,
    )
