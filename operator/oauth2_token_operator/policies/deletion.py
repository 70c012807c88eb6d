"""What becomes of a token when a request lets it go, or its client asks to revoke all.
Pure: `controller.revocation` gathers the facts and carries the answer out.

A token may be shared by several requests (`manager.sharing`): it is revoked only when
its last holder lets it go, so that no request is left with a token revoked under it.
Revoke-all is the exception: it is asked because a token may have leaked, so it is
revoked for every holder at once (they then get a new one).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Cause(enum.Enum):
    """Why a request lets its token go."""

    DELETED = "deleted"
    """The request is being deleted (its finalizer)."""
    WITHDRAWN = "withdrawn"
    """Its namespace may no longer use its OAuth2Client (`allowedNamespaces` changed)."""
    REVOKE_ALL = "revoke-all"
    """Its OAuth2Client asked to revoke every token of its requests."""


class Disposal(enum.Enum):
    """What is done with the token."""

    NOTHING = "nothing"
    """No token is held: nothing to revoke."""
    KEEP = "keep"
    """Another request still holds it: it stays stored and valid."""
    FORGET = "forget"
    """Its last holder let it go with revocation off: forgotten, valid until it expires."""
    REVOKE = "revoke"
    """Its last holder let it go: revoked (RFC 7009) and forgotten."""
    END_GRANT = "end-grant"
    """As `REVOKE`, and the refresh token it came from is revoked first: a deleted
    refresh_token request ends the user's grant, unless another request refreshes with
    the same refresh token."""
    REVOKE_EVERY_HOLDER = "revoke-every-holder"
    """Revoked for every request holding it, whoever else still holds it."""


@dataclass(frozen=True)
class TokenRelease:
    """The facts the decision needs; gathered by `controller.revocation`."""

    cause: Cause
    held: bool
    """The request holds a token (known to the operator, or adopted from its Secret)."""
    other_holders: bool = False
    """Another request holds the same token."""
    request_revokes: bool | None = None
    """The request's `spec.revokeOnDelete`; `None`: unset (or the spec is invalid)."""
    client_revokes: bool | None = None
    """Its OAuth2Client's `spec.revokeOnDelete`; `None`: the client is gone."""
    refresh_grant: bool = False
    """The request's grant is `refresh_token`."""
    subject_in_use: bool = False
    """Another request holds a token of the same subject (refreshes with the same
    refresh token)."""


def disposal(release: TokenRelease) -> Disposal:
    """What to do with the token of a request letting it go (see `Disposal`)."""
    if not release.held:
        return Disposal.NOTHING
    if release.cause is Cause.REVOKE_ALL:
        return Disposal.REVOKE_EVERY_HOLDER
    if release.other_holders:
        return Disposal.KEEP
    if release.cause is Cause.WITHDRAWN:
        # Not the request's choice: a namespace no longer allowed the client keeps nothing
        # valid that was obtained with it.
        return Disposal.REVOKE
    if not revokes_on_delete(release.request_revokes, release.client_revokes):
        return Disposal.FORGET
    if release.refresh_grant and not release.subject_in_use:
        return Disposal.END_GRANT
    return Disposal.REVOKE


def revokes_on_delete(request_revokes: bool | None, client_revokes: bool | None) -> bool:
    """The request's own `revokeOnDelete` wins; else its client's; else (unset, or the
    client is gone) revoke: a token nobody holds any more should not stay valid."""
    if request_revokes is not None:
        return request_revokes
    return True if client_revokes is None else client_revokes
