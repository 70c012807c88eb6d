"""The authorization server goes down during renewal and comes back: the valid token
stays in the Secret, retries back off, status and Events say so, and recovery costs one
token request, not a burst. The outage is a TCP gate in front of the real oidc-provider
(the shared session server itself cannot be stopped for one test)."""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import urlsplit

from oauth2_token_operator.oauth2.transport import RetryPolicy
from oauth2_token_operator.util.rfc3339 import parse_rfc3339
from tests.faults import stalled_server
from tests.gate import gate
from tests.integration.conftest import Counters
from tests.operator.conftest import (
    Namespace,
    recovers_with_one_call_each,
    token_endpoint_down,
    wait_for,
)
from tests.operator.runner import OperatorThread


def test_a_renewal_outage_keeps_the_token_and_recovers_without_a_burst(
    ns: Namespace, operator_factory: Callable[..., OperatorThread], counters: Counters
) -> None:
    # The backoff alone: the circuit breaker (test_server_isolation.py) would pause the
    # calls after 5 failures, and recovery would wait for its cool-down.
    operator_factory(
        min_renewal_lead=5.0, retry_base_delay=1.0, retry_max_delay=4.0, breaker_failures=0
    )
    server = ns.authserver
    port = urlsplit(server.issuer).port
    assert port is not None
    with gate(port) as outage:
        ns.client(
            "idp",
            server.clients["renewal_ttl"],  # 20 s tokens, renewed after about 13 s
            endpoints={"token": f"https://127.0.0.1:{outage.port}/token"},
        )
        ns.request("api", "idp")
        ns.wait_ready("api")
        first = ns.token_secret("api") or {}
        outage.open = False

        wait_for(
            "a failed renewal",
            lambda: (
                (ns.condition("api", "Issuing") or {}).get("reason")
                == "AuthorizationServerUnavailable"
            ),
            timeout=30,
        )
        assert (ns.condition("api") or {}).get("status") == "True", "the token is still valid"
        assert ns.token_secret("api") == first, "a failed renewal never touches the Secret"
        assert "RenewalFailed" in {reason for reason, _ in ns.events("api")}
        wait_for(
            "the token to expire",
            lambda: (ns.condition("api") or {}).get("reason") == "Expired",
            timeout=30,
        )
        assert ns.token_secret("api") == first, "an expired token is kept, not deleted"
        status = (ns.get("accesstokenrequests", "api") or {})["status"]
        attempts = status["failedAttempts"]
        assert attempts >= 2
        # The schedule stays what it was; the retry has its own field (issue 24).
        assert parse_rfc3339(status["renewalTime"]) < parse_rfc3339(status["expiresAt"])
        assert parse_rfc3339(status["nextAttemptTime"]) > parse_rfc3339(status["lastFailureTime"])
        assert outage.refused < 5 * attempts, "each attempt is a few calls, not a storm"

        before = counters.delta("client=renewal-ttl /token")
        outage.open = True
        ns.wait_ready("api", timeout=15)
        time.sleep(2)
        assert counters.delta("client=renewal-ttl /token") - before == 1, "no burst on recovery"
        assert (ns.token_secret("api") or {})["access_token"] != first["access_token"]
        status = (ns.get("accesstokenrequests", "api") or {})["status"]
        assert status["failedAttempts"] == 0
        assert "nextAttemptTime" not in status
        assert "Renewed" in {reason for reason, _ in ns.events("api")}, "recovery: an Event"


def test_a_hung_token_endpoint_does_not_stall_other_requests(
    ns: Namespace, operator: OperatorThread
) -> None:
    """One client's server accepts and never answers; another client's requests are
    served meanwhile (the hung call ends at the library's 30 s deadline)."""
    with stalled_server() as hung_url:
        ns.stalled_client("hung", hung_url)
        ns.client("idp", ns.authserver.clients["client_secret_basic"])
        ns.request("stuck", "hung", scopes=["read", "stuck"])
        time.sleep(1)  # the stuck request's call is under way
        started = time.monotonic()
        for i in range(3):
            ns.request(f"fine-{i}", "idp", scopes=["read", f"fine{i}"])
        for i in range(3):
            ns.wait_ready(f"fine-{i}", timeout=20)
        assert time.monotonic() - started < 15
        assert (ns.condition("stuck") or {}).get("status") != "True"


def test_an_issuance_outage_backs_off_with_jitter_and_recovers_once_per_request(
    ns: Namespace, operator_factory: Callable[..., OperatorThread], counters: Counters
) -> None:
    """Down before the first token: no Secret, `Ready=False` with the reason, retries
    backing off (their jitter is `retry_delay`'s, unit-tested), then one token request
    per request on recovery."""
    operator_factory(retry_base_delay=1.0, retry_max_delay=4.0, breaker_failures=0)  # as above
    names = [f"api-{i}" for i in range(5)]
    with token_endpoint_down(ns, names) as outage:

        def failed_twice(name: str) -> bool:
            status = (ns.get("accesstokenrequests", name) or {}).get("status") or {}
            return int(status.get("failedAttempts") or 0) >= 2

        wait_for("every request to fail twice", lambda: all(map(failed_twice, names)), 30)
        refused = outage.refused  # before reading the attempts, which only grow meanwhile
        attempts = 0
        for name in names:
            ready = ns.condition(name) or {}
            assert ready.get("status") == "False"
            assert ready.get("reason") == "AuthorizationServerUnavailable"
            assert ns.token_secret(name) is None, "nothing is written without a token"
            assert "IssuanceFailed" in {reason for reason, _ in ns.events(name)}
            attempts += (ns.get("accesstokenrequests", name) or {})["status"]["failedAttempts"]
        tries = RetryPolicy().attempts  # the library's tries per attempt (connection refused)
        assert refused <= tries * (attempts + len(names)), "a few tries per attempt, no storm"

        recovers_with_one_call_each(ns, outage, counters, names, timeout=15)
