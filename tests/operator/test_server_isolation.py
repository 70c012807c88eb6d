"""One authorization server cannot starve the others (issue 22, item 3): a hung server
holds at most its share of the operator's slots (`--per-server-concurrency`), and an
endpoint that keeps failing is circuit-broken (`--breaker-failures`): its calls stop for
a cool-down but one trial, its requests say `CircuitOpen`, and a deletion gives up on its
revocation at once.

The hung server is scripted (`tests/faults.py`: accepts and never answers) and the
failing endpoints go through a TCP gate in front of oidc-provider (`tests/gate.py`): the
real server cannot be made to hang or to refuse connections on demand, and it is shared
by the session. Every token comes from oidc-provider."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from oauth2_token_operator.api.crd import GROUP, VERSION
from oauth2_token_operator.oauth2.transport import RetryPolicy
from oauth2_token_operator.util.rfc3339 import parse_rfc3339
from tests.cluster.objects import json_object
from tests.faults import stalled_server
from tests.gate import Gate
from tests.integration.conftest import Counters
from tests.operator.conftest import (
    Namespace,
    recovers_with_one_call_each,
    token_endpoint_down,
    wait_for,
)
from tests.operator.runner import OperatorThread

EACH = 50


def statuses(ns: Namespace) -> dict[str, dict[str, Any]]:
    """Every request's status, in one list call."""
    plural = "accesstokenrequests"
    listed = json_object(ns.custom.list_namespaced_custom_object(GROUP, VERSION, ns.name, plural))
    return {item["metadata"]["name"]: item.get("status") or {} for item in listed["items"]}


def condition(status: dict[str, Any], type_: str = "Ready") -> dict[str, Any]:
    return next((c for c in status.get("conditions") or () if c["type"] == type_), {})


def test_requests_of_a_hung_server_do_not_keep_a_healthy_ones_from_renewing(
    ns: Namespace, operator_factory: Callable[..., OperatorThread]
) -> None:
    """50 requests whose token endpoint accepts and never answers, each retried as soon as
    the last call's 30 s deadline ends, and 50 of a healthy server (20 s tokens) that all
    come due meanwhile: every healthy one is renewed before its token expires.

    Without the per-server share, the hung requests' retries take all 16 slots, each
    for 30 s, and the healthy renewals wait behind them until long after their tokens
    expired. The circuit breaker is off here: it would stop the hung calls after the
    first deadline, and this test is about the share alone (the breaker has its own)."""
    operator_factory(
        min_renewal_lead=5.0, retry_base_delay=1.0, retry_max_delay=2.0, breaker_failures=0
    )
    with stalled_server() as hung_url:
        ns.stalled_client("hung", hung_url)
        ns.client("idp", ns.authserver.clients["renewal_ttl"])  # 20 s tokens
        hung = [f"hung-{i}" for i in range(EACH)]
        for i, name in enumerate(hung):
            ns.request(name, "hung", scopes=["read", f"h{i}"])  # distinct: one call each

        def all_failed_once() -> bool:
            found = statuses(ns)
            return all(int(found.get(n, {}).get("failedAttempts") or 0) >= 1 for n in hung)

        # Their first calls end at the deadline; from now on their retries are scheduled.
        wait_for("every hung request's first call to end", all_failed_once, timeout=90)

        healthy = [f"ok-{i}" for i in range(EACH)]
        for i, name in enumerate(healthy):
            ns.request(name, "idp", scopes=["read", f"x{i}"])

        def first_tokens() -> dict[str, float] | None:
            found = statuses(ns)
            if not all(condition(found.get(n, {})).get("status") == "True" for n in healthy):
                return None
            return {n: parse_rfc3339(found[n]["expiresAt"]) for n in healthy}

        expiry: dict[str, float] = wait_for("the healthy tokens", first_tokens, timeout=60)
        give_up = max(expiry.values()) + 5

        def renewed_or_expired() -> bool:
            found = statuses(ns)
            return time.time() > give_up or all(found[n].get("revision", 0) >= 2 for n in healthy)

        wait_for("the healthy renewals", renewed_or_expired, timeout=90)
        found = statuses(ns)
        late = [
            n
            for n in healthy
            if found[n].get("revision", 0) < 2 or parse_rfc3339(found[n]["issuedAt"]) >= expiry[n]
        ]
        assert not late, f"{len(late)} of {EACH} healthy requests not renewed before expiry"
        assert all(condition(found[n]).get("status") != "True" for n in hung)


def test_an_endpoint_that_keeps_failing_is_circuit_broken_and_one_trial_recovers_it(
    ns: Namespace, operator_factory: Callable[..., OperatorThread], counters: Counters
) -> None:
    """The token endpoint refuses every connection: after 5 failed calls no call is made
    but one trial per cool-down, the requests say `CircuitOpen` and when the next one
    goes; once the server is back, the next trial closes the circuit and each request
    gets its token with one call."""
    operator_factory(retry_base_delay=1.0, retry_max_delay=30.0, breaker_cooldown=5.0)
    names = [f"api-{i}" for i in range(6)]
    with token_endpoint_down(ns, names) as outage:

        def all_paused() -> bool:
            found = statuses(ns)
            return all(condition(found.get(n, {}), "Issuing").get("reason") == "CircuitOpen"
                       for n in names)  # fmt: skip

        wait_for("every request to find the circuit open", all_paused, timeout=60)
        refused = outage.refused
        found = statuses(ns)
        for name in names:
            ready = condition(found[name])
            assert (ready.get("status"), ready.get("reason")) == ("False", "CircuitOpen")
            message = ready["message"]
            assert "not called: its last" in message
            assert "failed in a row (no answer, or HTTP 5xx); the next call goes at" in message
            assert str(outage.port) not in message, "our words, not the endpoint's URL"
            assert ns.token_secret(name) is None
        # Calls made before it opened: the 5 that opened it and those already under way
        # then (one per request at most), each of the transport's tries.
        tries = RetryPolicy().attempts
        assert refused <= tries * (5 + len(names)), "no call once the circuit is open"
        attempts = sum(int(found[n].get("failedAttempts") or 0) for n in names)
        assert attempts > 5 + len(names), "attempts went on, without calls"
        paused = [reason for n in names for reason, m in ns.events(n) if "not called" in m]
        assert set(paused) == {"IssuanceFailed"}, "each attempt without a call says so"

        recovers_with_one_call_each(ns, outage, counters, names, timeout=90)


def test_a_deletion_gives_up_revoking_at_once_when_the_revocation_circuit_is_open(
    ns: Namespace, operator_factory: Callable[..., OperatorThread], revocation_gate: Gate
) -> None:
    """The revocation endpoint accepts and never answers: the first two deletions wait out
    the revocation deadline (2 s here), which counts as no answer; the circuit is then
    open, and the third deletion makes no call at all: its `RevocationFailed` Event says
    why, and the request is gone."""
    operator_factory(revocation_deadline=2.0, breaker_failures=2, breaker_cooldown=300.0)
    names = [f"api-{i}" for i in range(3)]
    for i, name in enumerate(names):
        ns.request(name, "idp", scopes=["read", f"x{i}"])
    for name in names:
        ns.wait_ready(name)
    revocation_gate.stalling = True
    for name in names:
        ns.delete("accesstokenrequests", name)

        def gone(name: str = name) -> bool:
            return ns.get("accesstokenrequests", name) is None

        wait_for(f"{name} to be deleted", gone)
    assert revocation_gate.stalled == 2, "the third revocation made no call"
    messages = {name: [m for reason, m in ns.events(name) if reason == "RevocationFailed"]
                for name in names}  # fmt: skip
    assert all("no answer within 2s" in m for n in names[:2] for m in messages[n])
    (third,) = messages[names[2]]
    assert "not called: its last 2 calls failed in a row" in third
