"""Issue 21, item 2: a token whose server states no lifetime is renewed on an interval.

oidc-provider leaves `expires_in` out of the `no_expiry` client's token responses (RFC
6749 §5.1 makes it optional). The operator used to renew such a token into itself at
its renewal time, about a hundred times a second: each time a new revision and a
Secret write, with no token request, until the request was deleted.
"""

from __future__ import annotations

import base64
import time
from typing import Any

from oauth2_token_operator.util.rfc3339 import parse_rfc3339
from tests.operator.conftest import Namespace, introspect

OBSERVED = 60.0
"""Seconds watched: six renewals of the shorter assumed lifetime."""


def status_of(ns: Namespace, name: str) -> dict[str, Any]:
    return (ns.get("accesstokenrequests", name) or {}).get("status") or {}


def test_unknown_lifetime_renews_on_the_assumed_lifetime_and_never_loops(
    ns: Namespace, operator_factory: Any, counters: Any
) -> None:
    # The flag reaches the operator: requests without an override assume 30 s.
    operator_factory(assumed_token_lifetime=30.0, min_renewal_lead=5.0, revocation_deadline=5.0)
    ns.client("idp", ns.authserver.clients["no_expiry"])
    # Different scopes: each its own token (shared ones would renew without a request).
    ns.request("flagged", "idp", scopes=["read"])
    ns.request("overridden", "idp", scopes=["write"], assumedLifetime="15s")
    for name in ("flagged", "overridden"):
        ready = ns.wait_ready(name)
        assert ready["reason"] == "LifetimeUnknown"
        assert "lifetime the server did not state" in ready["message"]
        status = status_of(ns, name)
        assert "expiresAt" not in status or status["expiresAt"] is None
        assert parse_rfc3339(status["renewalTime"]) > time.time()

    # Every Secret write carries a new token: record each (resourceVersion, token) seen.
    writes: dict[str, dict[str, str]] = {"flagged": {}, "overridden": {}}
    end = time.monotonic() + OBSERVED
    while time.monotonic() < end:
        for name, seen in writes.items():
            secret = ns.core.read_namespaced_secret(name, ns.name)
            version = str(secret.metadata.resource_version)  # type: ignore[union-attr]
            data = secret.data or {}
            seen.setdefault(version, base64.b64decode(data["access_token"]).decode())
        time.sleep(0.25)

    for name, lifetime in (("flagged", 30.0), ("overridden", 15.0)):
        status = status_of(ns, name)
        # Renewed at 2/3 of the assumed lifetime (less up to 10 %), at most lifetime - 5 s.
        earliest_interval = lifetime * (2 / 3 - 0.1)
        most = 1 + int(OBSERVED / earliest_interval) + 1
        renewals = int(status["revision"]) - 1
        assert 1 <= renewals <= most, (name, status["revision"])
        tokens = list(writes[name].values())
        assert len(set(tokens)) == len(tokens), f"{name}: a Secret write without a new token"
        assert parse_rfc3339(status["renewalTime"]) > time.time() - 1
    # The overridden request renews about twice as often as the flag's.
    assert int(status_of(ns, "overridden")["revision"]) > int(status_of(ns, "flagged")["revision"])
    latest = (ns.token_secret("overridden") or {})["access_token"]
    assert introspect(ns.authserver, latest, ns.authserver.clients["no_expiry"])["active"]
    client_id = ns.authserver.clients["no_expiry"].client_id
    issued = counters.delta(f"client={client_id} /token")
    total = int(status_of(ns, "flagged")["revision"]) + int(status_of(ns, "overridden")["revision"])
    assert issued == total, "each revision is one token request, none without"
