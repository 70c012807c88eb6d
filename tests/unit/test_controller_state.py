"""The operator's in-memory state: who holds which token, our writes until the watch shows
them, and what a failure means for the next attempt."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from oauth2_token_operator.api import OAuth2ClientSpec
from oauth2_token_operator.api.token_secret import TokenRecord
from oauth2_token_operator.client_config import ClientConfigError
from oauth2_token_operator.controller.request.status import waiting
from oauth2_token_operator.controller.request.values import Request
from oauth2_token_operator.controller.shared.ledger import Held, TokenLedger
from oauth2_token_operator.kube.api import KubeApiError
from oauth2_token_operator.kube.own_writes import Freshness, OwnWrites, changed_only_status
from oauth2_token_operator.manager import CLIENT_CREDENTIALS, AccessToken, TokenKey
from oauth2_token_operator.oauth2 import errors
from oauth2_token_operator.policies import checks
from oauth2_token_operator.policies.backoff import ApiBackoff, retry_delay
from oauth2_token_operator.policies.failures import classify

ISSUER = "https://login.example.com"


def held(value: str) -> Held:
    token = AccessToken(
        value=value,
        token_type="Bearer",
        key=TokenKey(ISSUER, CLIENT_CREDENTIALS, "billing", "ns/idp"),
        scopes=frozenset({"read"}),
        obtained_at=0.0,
        expires_at=3600.0,
    )
    record = TokenRecord(
        issuer=ISSUER,
        client_id="billing",
        client="ns/idp",
        subject=None,
        requested_scopes=("read",),
        resources=(),
        audience=None,
        issued_at=0.0,
        expires_at=3600.0,
        issued_for="fp",
        revision=1,
    )
    return Held(token=token, record=record)


REQUESTS = [("ns", name) for name in "abcd"]
TOKENS = [held(value) for value in ("t1", "t2", "t3")]


@given(
    st.lists(st.tuples(st.sampled_from(REQUESTS), st.none() | st.sampled_from(TOKENS)), max_size=40)
)
def test_the_ledger_agrees_with_a_plain_model(
    steps: list[tuple[tuple[str, str], Held | None]],
) -> None:
    """Holds (a token) and releases (None), whatever their order: who holds what, how
    many hold each token and what each call returns equal a plain dict of the requests'
    tokens (the ledger keeps a lone holder apart from a set of several)."""
    ledger, model = TokenLedger(), dict[tuple[str, str], Held]()
    for key, token in steps:
        before = model.get(key)
        if token is None:
            assert ledger.release(key) == before
            model.pop(key, None)
        else:
            replaced = ledger.hold(key, token)
            assert replaced == (before if before is not None and before != token else None)
            model[key] = token
        for candidate in TOKENS:
            holders = sorted(k for k, v in model.items() if v == candidate)
            assert sorted(ledger.holders_of(candidate)) == holders
            assert ledger.holders(candidate) == len(holders)
            assert ledger.is_held(candidate) == bool(holders)
        assert len(ledger) == len(model)


def test_a_shared_token_is_held_until_its_last_holder_lets_go() -> None:
    ledger = TokenLedger()
    shared = held("t1")
    ledger.hold(("ns", "a"), shared)
    ledger.hold(("ns", "b"), shared)
    assert ledger.holders(shared) == 2
    assert ledger.release(("ns", "a")) == shared
    assert ledger.is_held(shared)
    ledger.release(("ns", "b"))
    assert not ledger.is_held(shared)
    assert len(ledger) == 0


def test_holding_a_new_token_returns_the_previous_one() -> None:
    ledger = TokenLedger()
    old, new = held("t1"), held("t2")
    assert ledger.hold(("ns", "a"), old) is None
    assert ledger.hold(("ns", "a"), old) is None  # the same token again: nothing replaced
    assert ledger.hold(("ns", "a"), new) == old
    assert not ledger.is_held(old)
    assert ledger.current(("ns", "a")) == new


def test_a_revoked_token_becomes_inactive_for_every_holder() -> None:
    ledger = TokenLedger()
    shared, other = held("t1"), held("t2")
    ledger.hold(("ns", "a"), shared)
    ledger.hold(("ns", "b"), shared)
    ledger.hold(("ns", "c"), other)
    ledger.deactivate(shared)
    assert sorted(ledger.holders_of(shared)) == [("ns", "a"), ("ns", "b")]
    for key in (("ns", "a"), ("ns", "b")):
        current = ledger.current(key)
        assert current is not None
        assert current.token.active is False
        assert current.token.value == "t1"
    untouched = ledger.current(("ns", "c"))
    assert untouched is not None
    assert untouched.token.active is not False


def body(version: str | None) -> dict[str, object]:
    return {"metadata": {"resourceVersion": version}} if version else {"metadata": {}}


def test_our_write_wins_until_the_watch_catches_up() -> None:
    seen = Freshness()
    seen.wrote("k", body("12"))
    assert seen.newest("k", body("10")) == body("12"), "the watch still shows the old version"
    assert seen.newest("k", None) == body("12"), "not in the watch yet"
    assert seen.newest("k", body("13")) == body("13")
    assert seen.newest("k", body("10")) == body("10"), "forgotten once caught up"


def test_a_watched_deletion_after_our_write_is_believed() -> None:
    seen = Freshness()
    seen.wrote("k", body("12"))
    seen.observed("k", body("14"))  # the DELETED event carries the last version
    assert seen.newest("k", None) is None


def test_a_write_the_watch_already_shows_is_not_kept() -> None:
    """The watch event often comes before the write's reply: nothing to remember then
    (the reply would otherwise be held until the object's next reconcile)."""
    index = {"k": body("12")}
    seen = Freshness(index.get)
    seen.wrote("k", body("12"))
    assert seen.newest("k", None) is None, "not kept: the watch had it"
    index["k"] = body("11")
    seen.wrote("k", body("12"))
    assert seen.newest("k", body("11")) == body("12"), "kept while the watch is behind"
    assert seen.newest("k", None) == body("12")


def test_a_copy_taken_before_the_watch_moved_on_is_not_believed() -> None:
    """A reconcile may hold a copy taken before it waited for the object's lock; by then
    our write (not kept: the watch showed it) is in the index, and that is what counts."""
    index = {"k": body("10")}
    seen = Freshness(index.get)
    snapshot = index["k"]
    index["k"] = body("12")  # our write, shown by the watch before its reply came
    seen.wrote("k", body("12"))
    assert seen.newest("k", snapshot) == body("12")


def test_versions_that_are_not_numbers_defer_to_the_watch() -> None:
    seen = Freshness()
    seen.wrote("k", body("abc"))
    assert seen.newest("k", body("xyz")) == body("xyz")


def test_only_our_last_write_comes_back_as_an_echo_and_only_once() -> None:
    k, j = OwnWrites(), OwnWrites()
    assert not k.came_back(body("12")), "nothing written"
    k.wrote(body("12"), None, echo=True)
    assert not k.came_back(body("11")), "an older version is someone else's"
    assert not j.came_back(body("12")), "another object"
    assert k.came_back(body("12"))
    assert not k.came_back(body("12")), "forgotten once it came back"
    k.wrote(body("13"), None, echo=True)
    k.wrote(body("15"), None, echo=True)
    assert not k.came_back(body("13")), "only the last write"
    assert not k.came_back(body("14")), "another writer's version"
    k = OwnWrites()  # forgotten with its request's record
    assert not k.came_back(body("15"))
    k.wrote(body(None), None, echo=True)
    assert not k.came_back(body(None)), "a reply without a version is no echo"


def test_a_write_that_may_hold_someone_elses_change_is_no_echo() -> None:
    """`echo=False` (the reply is not only our change): its event is reconciled."""
    k = OwnWrites()
    k.wrote(body("12"), None, echo=False)
    assert not k.came_back(body("12"))
    assert k.newest(None, None) == body("12"), "still our newest write"


def test_one_objects_writes_follow_the_watch_like_the_keyed_ones() -> None:
    """`OwnWrites` (a request's status or Secret) keeps the same rules as `Freshness`."""
    k = OwnWrites()
    k.wrote(body("12"), body("12"), echo=False)
    assert k.newest(None, None) is None, "not kept: the watch had it"
    k.wrote(body("12"), body("11"), echo=False)
    assert k.newest(body("10"), body("11")) == body("12"), "kept while the watch is behind"
    assert k.newest(body("10"), body("13")) == body("13"), "the watch's later copy wins"
    assert k.written is None, "forgotten once caught up"
    k.wrote(body("15"), None, echo=False)
    k.observed(body("16"))  # the DELETED event carries the last version
    assert k.newest(None, None) is None


METADATA: dict[str, object] = {
    "uid": "u1",
    "generation": 3,
    "annotations": {"a": "1"},
    "labels": {"l": "x"},
    "finalizers": ["f"],
    "resourceVersion": "10",
}
REQUEST = {"metadata": METADATA, "spec": {"clientRef": {"name": "idp"}}, "status": {"revision": 1}}


@pytest.mark.parametrize(
    ("reply_changes", "only_status"),
    [
        ({"metadata": {"resourceVersion": "11"}, "status": {"revision": 2}}, True),
        ({"metadata": {"generation": 4}, "spec": {"clientRef": {"name": "other"}}}, False),
        ({"metadata": {"annotations": {"a": "2"}}}, False),
        ({"metadata": {"labels": {}}}, False),
        ({"metadata": {"finalizers": []}}, False),
        ({"metadata": {"deletionTimestamp": "2026-11-28T13:00:00Z"}}, False),
    ],
)
def test_a_status_reply_is_an_echo_only_if_nobody_changed_what_reconciles_read(
    reply_changes: dict[str, dict[str, object]], only_status: bool
) -> None:
    reply = {
        **REQUEST,
        **reply_changes,
        "metadata": {**METADATA, **reply_changes.get("metadata", {})},
    }
    assert changed_only_status(REQUEST, reply) is only_status


@pytest.mark.parametrize(
    ("exc", "reason", "retry"),
    [
        (errors.InvalidGrantError(endpoint="t", status_code=400, error="invalid_grant"),
         "RefreshTokenRejected", False),
        (errors.InvalidClientError(endpoint="t", status_code=401, error="invalid_client"),
         "InvalidClient", True),
        (errors.InvalidScopeError(endpoint="t", status_code=400, error="invalid_scope"),
         "InvalidScope", False),
        # Keycloak answers a wrong client secret so: a 401 is authentication, retried.
        (errors.UnauthorizedClientError(endpoint="t", status_code=401,
                                        error="unauthorized_client"), "InvalidClient", True),
        (errors.UnauthorizedClientError(endpoint="t", status_code=400,
                                        error="unauthorized_client"), "GrantNotAllowed", False),
        (errors.SpentRefreshTokenError("used"), "RefreshTokenRejected", False),
        (errors.NoResponseError("down"), "AuthorizationServerUnavailable", True),
        (errors.MetadataError("bad"), "DiscoveryFailed", True),
        (ClientConfigError("SecretNotFound", "Secret 'x' not found"), "SecretNotFound", True),
        (RuntimeError("?"), "IssuanceFailed", True),
    ],
)  # fmt: skip
def test_failures_become_reasons(exc: Exception, reason: str, retry: bool) -> None:
    failure = classify(exc)
    assert (failure.reason, failure.retry) == (reason, retry)


def test_a_spec_pydantic_refuses_is_invalid_and_not_echoed() -> None:
    """A spec the CRD admitted that pydantic refuses: `InvalidSpec`, waiting for a new
    spec, and the message does not repeat the input (pydantic's text would)."""
    try:
        OAuth2ClientSpec.model_validate({"issuer": "https://as", "clientId": "c",
                                         "authentication": {"method": "private_key_jwt"},
                                         "planted": "s3cr3t-value"})  # fmt: skip
    except ValidationError as exc:
        failure = classify(exc)
    assert (failure.reason, failure.retry) == ("InvalidSpec", False)
    assert "s3cr3t" not in failure.message


def test_an_api_servers_retry_after_is_kept() -> None:
    """A Secret write answered 429 backs off at least as long as the API server asked."""
    failure = classify(KubeApiError("creating Secret ns/s: HTTP 429", status=429, retry_after=7))
    assert (failure.reason, failure.retry, failure.retry_after) == ("IssuanceFailed", True, 7)


def test_an_open_circuit_is_its_own_reason_and_the_retry_waits_for_it() -> None:
    """Nothing was sent (`oauth2.breaker`): the next attempt comes no sooner than the
    circuit lets a call through, however short the backoff."""
    exc = errors.CircuitOpenError(
        "calls to https://as:443/token are paused", server="https://as:443/token",
        failures=5, retry_at=1040.0, retry_after=40.0,
    )  # fmt: skip
    failure = classify(exc)
    assert (failure.reason, failure.retry, failure.retry_after) == ("CircuitOpen", True, 40.0)
    assert failure.message == str(exc)
    assert retry_delay(1, base=5, cap=300, seed="uid", retry_after=failure.retry_after) == 40.0


def test_retry_delays_grow_with_jitter_up_to_the_cap_and_honour_retry_after() -> None:
    delays = [retry_delay(n, base=5, cap=300, seed="uid") for n in range(1, 10)]
    for n, delay in enumerate(delays, start=1):
        step = min(300, 5 * 2 ** (n - 1))
        assert step / 2 <= delay <= step
    assert retry_delay(1, base=5, cap=300, seed="uid", retry_after=120) == 120
    assert retry_delay(3, base=5, cap=300, seed="uid") == retry_delay(
        3, base=5, cap=300, seed="uid"
    )


def test_after_failed_api_writes_a_new_spec_waits_only_for_the_servers_retry_after() -> None:
    backoff = ApiBackoff(3, retry_at=1240.0, not_before=1010.0, generation=4)
    assert backoff.until(4) == 1240.0  # the same spec waits out the backoff
    assert backoff.until(5) == 1010.0  # a new one only what the server asked
    assert backoff.until(None) == 1010.0


@pytest.mark.parametrize(
    ("failure", "ready"),
    [
        ("AuthorizationServerUnavailable", ("True", "TokenValid")),
        # The server refused the grant (and may have revoked the held token with it).
        ("RefreshTokenRejected", ("False", "RefreshTokenRejected")),
    ],
)
def test_while_failures_back_off_ready_follows_the_held_token_unless_its_grant_was_refused(
    failure: str, ready: tuple[str, str]
) -> None:
    issuing = {"type": "Issuing", "status": "True", "reason": failure, "message": "m"}
    request = Request.of(
        {
            "metadata": {"namespace": "ns", "name": "api", "uid": "u", "generation": 1},
            "status": {"conditions": [issuing], "failedAttempts": 1},
        }
    )
    facts = checks.Facts(
        now=100.0,
        spec_fingerprint="fp",
        token=checks.TokenFacts(issued_at=0.0, usable_until=3000.0, issued_for="fp"),
        secret=checks.SecretFacts(exists=True, data_intact=True, metadata_intact=True),
    )
    trigger = checks.Verdict("Renewing", "renewal time")
    outcome = waiting(request, held("t1"), facts, trigger, retry_at=400.0)
    condition = next(c for c in outcome.conditions if c.type == "Ready")
    assert (condition.status, condition.reason) == ready
