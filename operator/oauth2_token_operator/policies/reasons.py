"""The reasons a request's plan acts on, in one place: the values are the condition
reasons the status and Events show (a `StrEnum` compares and serializes as its value,
so the status reads as it always did). The code decides on these members, never on
strings it compares."""

# ruff: noqa: S105 - condition reasons, no passwords (names with "Secret" and "Token")

from __future__ import annotations

import enum


class Reason(enum.StrEnum):
    # Why a new token is obtained (`checks.ISSUANCE_CHAIN`), in the chain's order.
    MISSING = "Missing"
    SPEC_CHANGED = "SpecChanged"
    REVOCATION_REQUESTED = "RevocationRequested"
    TOKEN_INACTIVE = "TokenInactive"
    EXPIRED = "Expired"
    RENEWAL_REQUESTED = "RenewalRequested"
    RENEWING = "Renewing"
    # Why the Secret is written again for the held token (`checks.SECRET_CHAIN`).
    SECRET_MISSING = "SecretMissing"
    SECRET_DATA_MISMATCH = "SecretDataMismatch"
    SECRET_METADATA_MISMATCH = "SecretMetadataMismatch"
    # Why nothing is issued or written.
    SECRET_CONFLICT = "SecretConflict"
    CLIENT_NOT_ALLOWED = "ClientNotAllowed"
    # Failures the plan treats apart (`failures.classify` names the rest).
    INVALID_CLIENT = "InvalidClient"
    REFRESH_TOKEN_REJECTED = "RefreshTokenRejected"


ASKED_FOR = frozenset({Reason.SPEC_CHANGED, Reason.RENEWAL_REQUESTED, Reason.REVOCATION_REQUESTED})
"""Triggers a user caused on purpose (an edit, an annotation)."""

NOT_FOR_REGISTERED = frozenset(
    {
        Reason.RENEWING,
        Reason.EXPIRED,
        Reason.RENEWAL_REQUESTED,
        Reason.TOKEN_INACTIVE,
        Reason.REVOCATION_REQUESTED,
    }
)
"""Triggers that cannot be acted on for a registered token (nobody can renew it)."""

RENEWALS = frozenset({Reason.RENEWING, Reason.RENEWAL_REQUESTED})
"""Triggers that ask for a token outliving the held one (a fresher shared one will do)."""

GRANT_REFUSED = frozenset({Reason.REFRESH_TOKEN_REJECTED})
"""Failures after which a held token, even one that has not expired, is not Ready: the
server refused the grant it came from, and a server that sees a used refresh token
again may revoke the whole grant, the held token with it (oidc-provider does; refresh
token rotation, RFC 9700 §4.14). Ready says so while the failure stands (it takes a
change to clear), not only until the next event."""
