"""The operator killed with SIGKILL (a real process death: no cleanup runs, memory is
lost) at each step where it holds something only in memory, then started again:

- after obtaining a token and before its Secret is written;
- after receiving a rotated refresh token and before writing it back;
- while the finalizer's revocation call is in flight.

Each step is reached deterministically with the real components: the real API server
refuses the Secret writes (a ValidatingAdmissionPolicy, `admission.py`), and a TCP gate
in front of the real oidc-provider holds the revocation call (`tests/gate.py`: the
session's shared server cannot be paused for one test). Each test waits until the
operator is at the step, kills it, lifts the fault (or not) and starts it again."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from oauth2_token_operator.api.token_secret import MANAGED_BY, MANAGED_BY_LABEL
from oauth2_token_operator.util.rfc3339 import parse_rfc3339
from tests.cluster.objects import json_object
from tests.gate import Gate
from tests.integration.conftest import Counters
from tests.operator.admission import refusing_secret_writes
from tests.operator.conftest import Namespace, introspect, wait_for
from tests.operator.process import OperatorProcess

Start = Callable[..., OperatorProcess]


def operator_args(ns: Namespace, *extra: str) -> list[str]:
    """Watch only the test's namespace, no metrics port (each test starts several)."""
    return [f"--namespace={ns.name}", "--metrics-port=0", "--min-renewal-lead=5", *extra]


def managed_secrets(ns: Namespace) -> list[dict[str, Any]]:
    """Every Secret in the namespace that carries the operator's label: name, owners."""
    found = ns.core.list_namespaced_secret(
        ns.name, label_selector=f"{MANAGED_BY_LABEL}={MANAGED_BY}"
    )
    secrets = [json_object(s.to_dict()) for s in found.items]
    return [
        {
            "name": s["metadata"]["name"],
            "owners": [ref["uid"] for ref in s["metadata"].get("owner_references") or ()],
        }
        for s in secrets
    ]


def issuing(ns: Namespace, name: str) -> dict[str, Any]:
    return ns.condition(name, "Issuing") or {}


def status(ns: Namespace, name: str) -> dict[str, Any]:
    return (ns.get("accesstokenrequests", name) or {}).get("status") or {}


# -- after obtaining a token, before writing the Secret ----------------------------------


def test_killed_before_the_token_secret_is_written(
    operator_processes: Start, ns: Namespace, counters: Counters
) -> None:
    client = ns.authserver.clients["client_secret_basic"]
    calls = f"client={client.client_id} /token"
    ns.client("idp", client)
    with refusing_secret_writes(ns.api, ns.name, "api"):
        first = operator_processes(*operator_args(ns))
        uid = ns.request("api", "idp")["metadata"]["uid"]
        # The token endpoint answered, then the API server refused the Secret.
        failed = wait_for(
            "the refused Secret write",
            lambda: (c := issuing(ns, "api")).get("reason") == "IssuanceFailed" and c,
            timeout=30,
        )
        assert f"creating Secret {ns.name}/api: HTTP 403" in failed["message"]
        assert counters.delta(calls) == 1
        assert "IssuanceFailed" in {reason for reason, _ in ns.events("api")}
        first.kill()
    assert ns.token_secret("api") is None, "nothing was written before the kill"

    operator_processes(*operator_args(ns))
    ns.wait_ready("api", timeout=30)
    data = ns.token_secret("api")
    assert data is not None
    assert introspect(ns.authserver, data["access_token"], client)["active"] is True
    assert managed_secrets(ns) == [{"name": "api", "owners": [uid]}], "one Secret, no orphan"
    # The first token was only ever in the killed process's memory: it cannot be
    # published or revoked, and stays valid at the server until it expires. The
    # restarted operator asks once for a new one.
    assert counters.delta(calls) == 2
    assert status(ns, "api")["failedAttempts"] == 0


# -- after a rotated refresh token, before writing it back -------------------------------


def test_killed_before_a_rotated_refresh_token_is_written_back(
    operator_processes: Start, ns: Namespace, counters: Counters
) -> None:
    server = ns.authserver
    client = server.clients["renewal_ttl"]  # 20 s access tokens; refresh tokens rotate
    calls = f"client={client.client_id} /token"
    original = server.password_grant(client, ["read"], resource=server.resource)["refresh_token"]
    ns.secret("user-grant", {"refresh_token": original})
    ns.client("idp", client)
    before = counters.delta(calls)
    with refusing_secret_writes(ns.api, ns.name, "user-grant"):
        first = operator_processes(*operator_args(ns))
        uid = ns.refresh_request("api", "idp", "user-grant")["metadata"]["uid"]
        # The refresh token was used (and rotated by the server); the new one is held
        # in memory only, and the request says so.
        wait_for(
            "RefreshTokenNotPersisted",
            lambda: issuing(ns, "api").get("reason") == "RefreshTokenNotPersisted",
            timeout=30,
        )
        assert (ns.condition("api") or {}).get("status") == "True"
        assert counters.delta(calls) - before == 1
        first.kill()
    assert (ns.token_secret("user-grant") or {}).get("refresh_token") == original
    published = (ns.token_secret("api") or {})["access_token"]

    operator_processes(*operator_args(ns))
    # At the next renewal the Secret's refresh token, consumed by the rotation, is
    # refused: a condition that says what to fix, not a loop.
    rejected = ns.wait_ready("api", status="False", reason="RefreshTokenRejected", timeout=40)
    assert "needs a change" in rejected["message"]
    # The server took the reuse for a stolen refresh token and revoked the grant, the
    # published access token with it: Ready must not say the token is valid.
    assert introspect(server, published, client)["active"] is False
    assert counters.delta(calls) - before == 2, "one attempt after the restart"
    attempts = status(ns, "api")["failedAttempts"]
    next_attempt = parse_rfc3339(status(ns, "api")["nextAttemptTime"])
    assert next_attempt - time.time() > 60, "no retry soon with the same refresh token"
    time.sleep(5)  # a window in which a loop would call the token endpoint again
    assert counters.delta(calls) - before == 2
    assert status(ns, "api")["failedAttempts"] == attempts
    assert (ns.condition("api") or {}).get("reason") == "RefreshTokenRejected", "no flip back"
    assert managed_secrets(ns) == [{"name": "api", "owners": [uid]}]


# -- during the finalizer's revocation ---------------------------------------------------


def kill_during_revocation(operator_processes: Start, ns: Namespace, held: Gate) -> tuple[str, str]:
    """Issue a token, delete its request, kill the operator while the revocation call is
    in flight (held by the gate). Returns the token and the request's uid."""
    first = operator_processes(*operator_args(ns, "--revocation-deadline=60"))
    uid = ns.request("api", "idp")["metadata"]["uid"]
    ns.wait_ready("api")
    token = (ns.token_secret("api") or {})["access_token"]
    held.stalling = True
    ns.delete("accesstokenrequests", "api")
    wait_for("the revocation call", lambda: held.stalled >= 1, timeout=30)
    first.kill()
    body = ns.get("accesstokenrequests", "api") or {}
    assert body["metadata"].get("deletionTimestamp"), "being deleted, its finalizer not done"
    assert ns.token_secret("api") is not None, "the Secret goes only after revocation"
    return token, uid


def test_killed_during_revocation_revokes_after_restart(
    operator_processes: Start, ns: Namespace, revocation_gate: Gate
) -> None:
    client = ns.authserver.clients["client_secret_basic"]
    token, _ = kill_during_revocation(operator_processes, ns, revocation_gate)
    assert introspect(ns.authserver, token, client)["active"] is True

    revocation_gate.stalling = False  # the authorization server is reachable again
    operator_processes(*operator_args(ns, "--revocation-deadline=60"))
    wait_for("the deletion", lambda: ns.get("accesstokenrequests", "api") is None, timeout=30)
    assert introspect(ns.authserver, token, client)["active"] is False
    assert managed_secrets(ns) == []
    assert "Revoked" in {reason for reason, _ in ns.events("api")}


def test_killed_during_revocation_still_completes_while_unreachable(
    operator_processes: Start, ns: Namespace, revocation_gate: Gate
) -> None:
    client = ns.authserver.clients["client_secret_basic"]
    token, _ = kill_during_revocation(operator_processes, ns, revocation_gate)

    # Still unreachable (the gate keeps holding calls): the restarted operator gives up
    # on revocation after its deadline, and the deletion completes anyway.
    operator_processes(*operator_args(ns, "--revocation-deadline=3"))
    wait_for("the deletion", lambda: ns.get("accesstokenrequests", "api") is None, timeout=30)
    assert revocation_gate.stalled >= 2, "the restarted operator tried again"
    assert managed_secrets(ns) == []
    failures = [message for reason, message in ns.events("api") if reason == "RevocationFailed"]
    assert any("no answer within 3s" in message for message in failures), failures
    # Nobody could revoke it: the token stays valid at the server until it expires.
    assert introspect(ns.authserver, token, client)["active"] is True
