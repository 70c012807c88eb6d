"""The circuit breaker's decisions (oauth2/breaker.py) with a clock moved by hand: when a
circuit opens, how long it stays open, the one trial call of a half-open circuit, what
counts as a failure, and which endpoints share a circuit. Then the same through the
protocol client against a scripted server that answers 503: once open, nothing reaches
the server, and the calls metric says why (the real server cannot be made to answer 503
on demand)."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime

import pytest

from oauth2_token_operator.oauth2.authorization_server import AuthorizationServer
from oauth2_token_operator.oauth2.breaker import (
    BreakerPolicy,
    CircuitBreakers,
    CircuitOpenError,
    server_key,
)
from oauth2_token_operator.oauth2.client_auth import ClientConfig
from oauth2_token_operator.oauth2.errors import (
    DeadlineExceededError,
    NoResponseError,
    UnexpectedStatusError,
)
from oauth2_token_operator.oauth2.metadata import IssuerConfig, MetadataCache
from oauth2_token_operator.oauth2.transport import OAuth2Transport, RetryPolicy
from tests.faults import Respond, fault_server

URL = "https://as.example/token"
T0 = 1_800_000_000.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def breakers(clock: Clock, failures: int = 3, cooldown: float = 10.0) -> CircuitBreakers:
    policy = BreakerPolicy(failures=failures, cooldown=cooldown, max_cooldown=60.0)
    return CircuitBreakers(policy, clock=clock)


def opened(clock: Clock) -> CircuitBreakers:
    """Breakers whose circuit of `URL` opened at `clock`'s time (3 failures in a row)."""
    b = breakers(clock)
    for _ in range(3):
        fail(b)
    return b


def fail(b: CircuitBreakers, url: str = URL, exc: Exception | None = None) -> None:
    with pytest.raises(type(exc) if exc else NoResponseError), b.call(url):
        raise exc or NoResponseError("ConnectError (connection refused)")


def answer(b: CircuitBreakers, status: int = 200, url: str = URL) -> None:
    with b.call(url) as call:
        call.answered(status)


def is_open(b: CircuitBreakers, url: str = URL) -> bool:
    try:
        with b.call(url):
            pass  # no verdict: leaves the state as it was (a trial is given back)
    except CircuitOpenError:
        return True
    return False


def test_failures_in_a_row_open_the_circuit_and_an_answer_resets_the_count() -> None:
    clock = Clock(T0)
    b = breakers(clock)
    fail(b)
    fail(b)
    answer(b, 200)
    fail(b)
    fail(b)
    assert not is_open(b), "an answer in between: two in a row, not four"
    fail(b)
    with pytest.raises(CircuitOpenError) as caught, b.call(URL, endpoint="token_endpoint"):
        raise AssertionError("a call is made while the circuit is open")
    error = caught.value
    assert error.failures == 3
    assert error.retry_at == T0 + 10
    assert error.retry_after == 10
    assert error.server == "https://as.example:443/token"
    when = datetime.fromtimestamp(T0 + 10, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert str(error) == (
        "token_endpoint: not called: its last 3 calls failed in a row (no answer, or HTTP"
        f" 5xx); the next call goes at {when}"
    )
    assert error.retryable


def test_after_the_cooldown_one_trial_call_decides() -> None:
    clock = Clock(T0)
    b = opened(clock)
    clock.now = T0 + 9.9
    assert is_open(b)
    clock.now = T0 + 10
    trial = b.call(URL)  # half-open: this one goes
    assert trial.trial
    with pytest.raises(CircuitOpenError, match="; a trial call is under way;") as caught:
        b.call(URL)
    assert caught.value.retry_at == T0 + 20, "others: again after one cool-down"
    with pytest.raises(NoResponseError), trial:
        raise DeadlineExceededError("no complete answer within the 30 s deadline")
    assert b.state(URL) == (4, T0 + 10 + 20), "failed: open again, twice as long"
    clock.now = T0 + 30
    with b.call(URL) as call:  # the next trial
        call.answered(400)  # an OAuth2 error is an answer: the server is there
    assert b.state(URL) == (0, None)
    assert len(b) == 0, "a closed circuit keeps nothing"
    fail(b)
    fail(b)
    assert not is_open(b), "counted from zero again"


def test_the_cooldown_doubles_up_to_its_cap() -> None:
    clock = Clock(T0)
    b = breakers(clock, failures=1, cooldown=10.0)
    fail(b)
    openings = []
    for _ in range(5):
        _, until = b.state(URL)
        assert until is not None
        openings.append(until - clock.now)
        clock.now = until
        fail(b)  # the trial fails
    assert openings == [10, 20, 40, 60, 60]


def test_a_first_wave_failing_together_opens_the_circuit_once() -> None:
    """Fifty calls let through before it opened, all failing after (a hung server's
    deadline): one opening of the first cool-down, not fifty that grow it."""
    clock = Clock(T0)
    b = breakers(clock)
    calls = [b.call(URL) for _ in range(50)]
    for call in calls:
        with pytest.raises(NoResponseError), call:
            raise NoResponseError("ReadTimeout")
    assert b.state(URL) == (50, T0 + 10)


@pytest.mark.parametrize(
    ("outcome", "counts"),
    [
        (NoResponseError("ConnectError (connection refused)"), True),
        (DeadlineExceededError("no complete answer within the 30 s deadline"), True),
        (UnexpectedStatusError("HTTP 503", status_code=503), True),
        (UnexpectedStatusError("HTTP 500", status_code=500), True),
        (500, True),
        (502, True),
        (UnexpectedStatusError("HTTP 429", status_code=429), None),
        (429, None),
        (asyncio.CancelledError(), None),
        (RuntimeError("a bug"), None),
        (200, False),
        (400, False),
        (401, False),
    ],
)
def test_what_counts_as_a_failure(outcome: object, counts: bool | None) -> None:
    """A failure adds to the count; an answer (4xx included) resets it; a 429, a call its
    caller gave up on (cancelled) or a bug of ours says nothing either way."""
    clock = Clock(T0)
    b = breakers(clock)
    fail(b)
    if isinstance(outcome, BaseException):
        with pytest.raises(type(outcome)), b.call(URL):
            raise outcome
    else:
        assert isinstance(outcome, int)
        answer(b, outcome)
    failures, _ = b.state(URL)
    assert failures == {True: 2, None: 1, False: 0}[counts]


def test_a_trial_without_a_verdict_lets_the_next_call_try() -> None:
    clock = Clock(T0)
    b = opened(clock)
    clock.now = T0 + 10
    with pytest.raises(asyncio.CancelledError), b.call(URL):
        raise asyncio.CancelledError  # say, a revocation deadline ran out
    assert b.call(URL).trial, "the trial is free again, the circuit still half-open"


def test_each_endpoint_has_its_own_circuit() -> None:
    """A failing path on a shared host does not stop calls to that host's other endpoints;
    the query and an explicit default port name the same endpoint."""
    clock = Clock(T0)
    b = breakers(clock)
    for _ in range(3):
        fail(b, "https://shared.example/broken")
    assert is_open(b, "https://shared.example/broken?x=1")
    assert is_open(b, "https://shared.example:443/broken")
    assert not is_open(b, "https://shared.example/token")
    assert not is_open(b, "https://shared.example:8443/broken")
    assert not is_open(b, "http://shared.example/broken")
    assert server_key("https://[::1]/t") == "https://[::1]:443/t"
    assert server_key("http://h/t?q") == "http://h:80/t"


def test_zero_failures_never_opens_and_keeps_nothing() -> None:
    b = breakers(Clock(T0), failures=0)
    for _ in range(100):
        fail(b)
    assert not is_open(b)
    assert len(b) == 0


def test_only_so_many_failing_endpoints_are_kept() -> None:
    clock = Clock(T0)
    b = CircuitBreakers(BreakerPolicy(failures=1), clock=clock, max_entries=3)
    for i in range(5):
        fail(b, f"https://as{i}.example/token")
    assert len(b) == 3
    assert not is_open(b, "https://as0.example/token"), "the least recently failed went"
    assert is_open(b, "https://as4.example/token")


async def test_an_open_circuit_sends_nothing() -> None:
    """Through the protocol client: two calls answered 503 (each retried by the transport)
    open it; the third call fails at once, and the server sees no request of it."""
    client = ClientConfig(client_id="c", auth_method="client_secret_post", client_secret="s")
    async with fault_server(Respond(503)) as server:
        observed: list[tuple[str, str]] = []
        transport = OAuth2Transport(
            retry=RetryPolicy(attempts=2, base_delay=0.0),
            rng=random.Random(1),
            observer=lambda endpoint, outcome, _: observed.append((endpoint, outcome)),
        )
        issuer = IssuerConfig(
            server.url,
            allow_insecure_http=True,
            discovery=False,
            metadata_overrides={"token_endpoint": f"{server.url}/token"},
        )
        b = CircuitBreakers(BreakerPolicy(failures=2, cooldown=30.0))
        authorization_server = AuthorizationServer(
            issuer, client, transport=transport, metadata_cache=MetadataCache(transport),
            breakers=b,
        )  # fmt: skip
        assert authorization_server.endpoint_key() == server_key(f"{server.url}/token")
        for _ in range(2):
            with pytest.raises(UnexpectedStatusError):
                await authorization_server.client_credentials()
        sent = len(server.requests)
        assert sent == 4
        with pytest.raises(CircuitOpenError, match="its last 2 calls failed in a row"):
            await authorization_server.client_credentials()
        assert len(server.requests) == sent
        assert observed[-1] == ("token_endpoint", "circuit_open"), "the metric's outcome"
        await transport.aclose()


def test_a_call_given_up_on_after_its_deadline_counts_when_its_caller_says_so() -> None:
    """A revocation cut short by the operator's deadline: the call itself was cancelled
    (no verdict), its caller records the missing answer."""
    clock = Clock(T0)
    b = breakers(clock, failures=2)
    for _ in range(2):
        with pytest.raises(asyncio.CancelledError), b.call(URL):
            raise asyncio.CancelledError
        b.record_no_answer(server_key(URL))
    assert b.state(URL) == (2, T0 + 10)
    clock.now = T0 + 10
    trial = b.call(URL)
    assert trial.trial
    with pytest.raises(asyncio.CancelledError), trial:
        raise asyncio.CancelledError
    b.record_no_answer(URL)
    assert b.state(URL) == (3, T0 + 10 + 20), "the trial got no answer: open again, longer"


def test_the_token_manager_breaks_circuits_only_when_asked() -> None:
    from oauth2_token_operator.manager import InMemoryTokenStore, TokenManager, TokenManagerConfig

    assert TokenManager(InMemoryTokenStore()).breakers.policy.failures == 0
    config = TokenManagerConfig(circuit_failures=5, circuit_cooldown=2, circuit_max_cooldown=9)
    policy = TokenManager(InMemoryTokenStore(), config=config).breakers.policy
    assert policy == BreakerPolicy(failures=5, cooldown=2, max_cooldown=9)
