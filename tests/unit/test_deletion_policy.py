"""`policies.deletion`: what becomes of a token when a request lets it go, as a table."""

from __future__ import annotations

import pytest

from oauth2_token_operator.policies.deletion import (
    Cause,
    Disposal,
    TokenRelease,
    disposal,
    revokes_on_delete,
)

DELETED, WITHDRAWN, REVOKE_ALL = Cause.DELETED, Cause.WITHDRAWN, Cause.REVOKE_ALL


@pytest.mark.parametrize(
    ("release", "expected"),
    [
        # Nothing held: nothing to do, whatever the cause.
        (TokenRelease(DELETED, held=False), Disposal.NOTHING),
        (TokenRelease(WITHDRAWN, held=False), Disposal.NOTHING),
        (TokenRelease(REVOKE_ALL, held=False), Disposal.NOTHING),
        # A deleted request: its token is revoked by its last holder only.
        (TokenRelease(DELETED, held=True), Disposal.REVOKE),
        (TokenRelease(DELETED, held=True, other_holders=True), Disposal.KEEP),
        # ... unless revocation is off: the request's choice first, then its client's.
        (TokenRelease(DELETED, held=True, request_revokes=False), Disposal.FORGET),
        (TokenRelease(DELETED, held=True, client_revokes=False), Disposal.FORGET),
        (
            TokenRelease(DELETED, held=True, request_revokes=True, client_revokes=False),
            Disposal.REVOKE,
        ),
        (
            TokenRelease(DELETED, held=True, request_revokes=False, client_revokes=True),
            Disposal.FORGET,
        ),
        (
            TokenRelease(DELETED, held=True, other_holders=True, request_revokes=False),
            Disposal.KEEP,
        ),
        # A refresh_token request ends the user's grant, unless another request
        # refreshes with the same refresh token.
        (TokenRelease(DELETED, held=True, refresh_grant=True), Disposal.END_GRANT),
        (
            TokenRelease(DELETED, held=True, refresh_grant=True, subject_in_use=True),
            Disposal.REVOKE,
        ),
        (
            TokenRelease(DELETED, held=True, refresh_grant=True, request_revokes=False),
            Disposal.FORGET,
        ),
        (
            TokenRelease(DELETED, held=True, refresh_grant=True, other_holders=True),
            Disposal.KEEP,
        ),
        # Withdrawn (its namespace may no longer use the client): revoked by the last
        # holder whatever revokeOnDelete says, and the grant is not ended.
        (TokenRelease(WITHDRAWN, held=True), Disposal.REVOKE),
        (TokenRelease(WITHDRAWN, held=True, request_revokes=False), Disposal.REVOKE),
        (TokenRelease(WITHDRAWN, held=True, client_revokes=False), Disposal.REVOKE),
        (TokenRelease(WITHDRAWN, held=True, refresh_grant=True), Disposal.REVOKE),
        (TokenRelease(WITHDRAWN, held=True, other_holders=True), Disposal.KEEP),
        # Revoke-all: for every holder, whoever else holds it and whatever the settings.
        (TokenRelease(REVOKE_ALL, held=True), Disposal.REVOKE_EVERY_HOLDER),
        (TokenRelease(REVOKE_ALL, held=True, other_holders=True), Disposal.REVOKE_EVERY_HOLDER),
        (
            TokenRelease(REVOKE_ALL, held=True, request_revokes=False, client_revokes=False),
            Disposal.REVOKE_EVERY_HOLDER,
        ),
    ],
)
def test_disposal(release: TokenRelease, expected: Disposal) -> None:
    assert disposal(release) is expected


@pytest.mark.parametrize(
    ("request_revokes", "client_revokes", "revokes"),
    [
        (None, None, True),  # unset, or the client is gone: revoke
        (None, True, True),
        (None, False, False),  # the client's setting
        (True, False, True),  # the request's own setting wins
        (False, True, False),
        (False, None, False),
    ],
)
def test_revokes_on_delete(
    request_revokes: bool | None, client_revokes: bool | None, revokes: bool
) -> None:
    assert revokes_on_delete(request_revokes, client_revokes) is revokes
