"""Issue 21, item 1: refreshes back to back never send a consumed refresh token.

With rotation, each refresh consumes the refresh token in the user's Secret and the
operator writes the successor back. A refresh within a few seconds of the previous one
used to read the Secret through a 5-second cache, find the consumed token there, store it
as "new", write it back over its successor and send it: oidc-provider saw a replay,
answered invalid_grant and revoked the whole grant (the user must log in again).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from oauth2_token_operator.api.annotations import RENEW_REQUESTED_AT
from tests.operator.conftest import Namespace, introspect, wait_for
from tests.operator.runner import OperatorThread


def renew_now(ns: Namespace, name: str) -> None:
    """Ask for a token newer than now (microseconds: the token just issued is older)."""
    at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    ns.patch("accesstokenrequests", name, {"metadata": {"annotations": {RENEW_REQUESTED_AT: at}}})


def revision(ns: Namespace, name: str) -> int:
    status = (ns.get("accesstokenrequests", name) or {}).get("status") or {}
    return int(status.get("revision") or 0)


def refresh_token_in(ns: Namespace, secret: str) -> str:
    return (ns.token_secret(secret) or {})["refresh_token"]


def assert_grant_alive(ns: Namespace, request: str, client: str) -> None:
    """No refusal anywhere, and both tokens the user holds work at the server."""
    test_client = ns.authserver.clients[client]
    ready = ns.condition(request)
    assert ready is not None
    assert (ready["status"], ready["reason"]) == ("True", "TokenValid"), ready
    assert not [e for e in ns.events(request) if e[0] in ("RenewalFailed", "IssuanceFailed")]
    access = (ns.token_secret(request) or {})["access_token"]
    assert introspect(ns.authserver, access, test_client)["active"] is True
    refresh = introspect(ns.authserver, refresh_token_in(ns, "user-grant"), test_client)
    assert refresh["active"] is True, "the Secret does not hold the newest refresh token"


@pytest.mark.parametrize("delay", [0.5, 1.0, 3.0])
def test_refreshes_asked_for_right_after_ready_keep_the_grant(
    ns: Namespace, operator: OperatorThread, delay: float
) -> None:
    original = ns.user_grant("client_secret_basic")
    ns.refresh_request("api", "idp", "user-grant")
    ns.wait_ready("api")
    seen = [refresh_token_in(ns, "user-grant")]
    for expected in (2, 3):
        time.sleep(delay)
        renew_now(ns, "api")
        wait_for(f"revision {expected}", lambda e=expected: revision(ns, "api") >= e, 15)  # type: ignore[misc]
        seen.append(refresh_token_in(ns, "user-grant"))
    assert seen[0] != original
    assert len(set(seen)) == 3, "each refresh rotated the refresh token and persisted it"
    assert_grant_alive(ns, "api", "client_secret_basic")


def test_three_second_tokens_renewing_for_a_minute_keep_the_grant(
    ns: Namespace, operator: OperatorThread
) -> None:
    """Renewal every 1.5 s (half of a 3 s life): every refresh within the old cache's
    5 s of the one before. A refresh token once replaced in the Secret never comes back."""
    ns.user_grant("short_ttl")
    ns.refresh_request("api", "idp", "user-grant")
    ns.wait_ready("api")
    history: list[str] = []
    end = time.monotonic() + 60
    while time.monotonic() < end:
        current = refresh_token_in(ns, "user-grant")
        if not history or history[-1] != current:
            assert current not in history, "a consumed refresh token was written back"
            history.append(current)
        time.sleep(0.2)
    assert revision(ns, "api") >= 20, "renewed continuously"
    assert len(history) >= 20
    assert_grant_alive(ns, "api", "short_ttl")
