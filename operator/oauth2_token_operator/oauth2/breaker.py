"""Circuit breaking per authorization-server endpoint: a server that keeps failing gets
fewer calls, not a wall of timeouts.

After `BreakerPolicy.failures` calls in a row to one endpoint failed for the server's
sake (no answer: a timeout, a refused or dropped connection; or an HTTP 5xx), calls to
it fail at once with `CircuitOpenError`, sending nothing, for a cool-down: `cooldown`
the first time, twice as long each time it opens again, at most `max_cooldown`. Then one
call goes through (half-open) and decides: an answer closes the circuit, a failure opens
it again for longer. Other calls meanwhile fail at once.

What counts is only what says the server is unwell. An OAuth2 error (a 4xx such as
invalid_grant or invalid_client) is an answer like a token is. A 429 has its own
`Retry-After` handling and counts neither way, nor does a call its caller gave up on
(cancelled): neither says anything of the server, unless the caller says the call
waited as long as it would for an answer (`record_no_answer`: a revocation deadline).

The key is the endpoint's URL without its query (scheme, host, port and path), neither
the issuer nor the host. A client may send its token requests to another host than its
issuer's (`endpoints.token`); and an endpoint is the narrowest thing a tenant cannot share
with another without calling that very endpoint: failures at a path of a shared host that
one tenant chose (one that answers 500, say) never open the circuit of the endpoint the
other tenants use. A down server opens the circuit of each of its endpoints separately,
after `failures` failed calls to each.

Decisions use `clock` only (epoch seconds, as the times in messages and status): tests
drive it by hand.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

import httpx

from oauth2_token_operator.oauth2.errors import (
    CircuitOpenError,
    NoResponseError,
    UnexpectedStatusError,
)
from oauth2_token_operator.util.rfc3339 import rfc3339

__all__ = ["BreakerPolicy", "CircuitBreakers", "CircuitOpenError", "server_key"]


@dataclass(frozen=True)
class BreakerPolicy:
    failures: int = 5
    """Failed calls in a row to an endpoint that open its circuit; 0: never opened."""
    cooldown: float = 10.0
    """How long calls wait the first time it opens; doubled at each reopening."""
    max_cooldown: float = 300.0

    def __post_init__(self) -> None:
        if self.failures < 0 or self.cooldown <= 0 or self.max_cooldown <= 0:
            raise ValueError("failures must be >= 0 and the cool-downs positive")

    def cooldown_after(self, openings: int) -> float:
        """The cool-down of the `openings`-th opening since the last answer (1-based)."""
        return min(self.max_cooldown, self.cooldown * 2.0 ** min(openings - 1, 64))


def server_key(url: str) -> str:
    """An endpoint's circuit: its URL without query or fragment (``https://as:443/token``)."""
    parsed = httpx.URL(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
    return f"{parsed.scheme}://{host}:{port}{parsed.path}"


@dataclass
class _Circuit:
    failures: int = 0
    """Failed calls in a row."""
    openings: int = 0
    """Times opened since the last answer (the next cool-down grows with it)."""
    open_until: float | None = None
    """While set, the circuit is open: no call before then, one call after (half-open)."""
    trial: bool = False
    """The one call of a half-open circuit is under way."""


class CircuitBreakers:
    """The circuits of every endpoint called; only failing endpoints are kept (at most
    `max_entries`, the least recently failed forgotten first: endpoints are tenants'
    choice)."""

    def __init__(
        self,
        policy: BreakerPolicy | None = None,
        *,
        clock: Callable[[], float] = time.time,
        max_entries: int = 1024,
    ) -> None:
        self.policy = policy or BreakerPolicy()
        self._clock = clock
        self._max_entries = max_entries
        self._circuits: OrderedDict[str, _Circuit] = OrderedDict()

    def call(self, url: str, *, endpoint: str | None = None) -> Call:
        """Admit a call to `url`, to be made inside ``with``; `CircuitOpenError` (nothing
        sent) while its circuit is open, or half-open with its one call under way."""
        key = server_key(url)
        circuit = self._circuits.get(key)
        if circuit is None or circuit.open_until is None:
            return Call(self, key, trial=False)
        now = self._clock()
        if now < circuit.open_until:
            raise _open(key, circuit, circuit.open_until, now, endpoint)
        if circuit.trial:
            raise _open(key, circuit, now + self.policy.cooldown, now, endpoint, trial=True)
        circuit.trial = True
        return Call(self, key, trial=True)

    def record_no_answer(self, url: str) -> None:
        """A call to `url` that its caller gave up on, after waiting as long as it would
        for an answer (a revocation deadline): a failure, as the transport's own deadline
        would have been. (Leaving its ``with`` cancelled, the call itself said nothing.)
        Half-open, it was the trial: the circuit opens again, for longer."""
        key = server_key(url)
        circuit = self._circuits.get(key)
        until = None if circuit is None else circuit.open_until
        self._failed(key, trial=until is not None and self._clock() >= until)

    def state(self, url: str) -> tuple[int, float | None]:
        """`url`'s failed calls in a row, and until when its circuit is open (None: closed)."""
        circuit = self._circuits.get(server_key(url))
        return (0, None) if circuit is None else (circuit.failures, circuit.open_until)

    def __len__(self) -> int:
        return len(self._circuits)

    def _answered(self, key: str) -> None:
        self._circuits.pop(key, None)  # closed, and nothing to remember

    def _failed(self, key: str, *, trial: bool) -> None:
        if self.policy.failures == 0:
            return  # never opened: nothing to count
        circuit = self._circuits.pop(key, None) or _Circuit()
        self._circuits[key] = circuit  # the most recently failed last
        circuit.failures += 1
        opens = trial or (
            circuit.open_until is None
            and self.policy.failures > 0
            and circuit.failures >= self.policy.failures
        )
        if opens:
            circuit.openings += 1
            circuit.open_until = self._clock() + self.policy.cooldown_after(circuit.openings)
            circuit.trial = False
        # A call let through before the circuit opened and failing after adds a failure,
        # not an opening: the first wave against a hung server opens it once.
        while len(self._circuits) > self._max_entries:
            self._circuits.popitem(last=False)

    def _no_verdict(self, key: str, *, trial: bool) -> None:
        circuit = self._circuits.get(key)
        if trial and circuit is not None:
            circuit.trial = False  # the next call tries


class Call:
    """One admitted call. Leaving the ``with`` records what it said of the server: an
    exception by its kind, else the status given to `answered` (none: no verdict)."""

    def __init__(self, breakers: CircuitBreakers, key: str, *, trial: bool) -> None:
        self._breakers = breakers
        self.key = key
        self.trial = trial
        self._status: int | None = None

    def answered(self, status: int) -> None:
        """The server answered with this HTTP status."""
        self._status = status

    def __enter__(self) -> Call:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        status = exc.status_code if isinstance(exc, UnexpectedStatusError) else self._status
        if exc is not None and not isinstance(exc, NoResponseError | UnexpectedStatusError):
            status = None  # not the server's doing (a cancellation, a bug): no verdict
        if isinstance(exc, NoResponseError) or (status is not None and status >= 500):
            self._breakers._failed(self.key, trial=self.trial)
        elif status is None or status == 429:
            self._breakers._no_verdict(self.key, trial=self.trial)
        else:
            self._breakers._answered(self.key)


def _open(
    key: str,
    circuit: _Circuit,
    until: float,
    now: float,
    endpoint: str | None,
    *,
    trial: bool = False,
) -> CircuitOpenError:
    until = math.ceil(until)  # a whole second, as status keeps times: never too early
    when = rfc3339(until)
    # Our words only: the endpoint's URL may come from the server's metadata document.
    trying = "; a trial call is under way" if trial else ""
    return CircuitOpenError(
        f"not called: its last {circuit.failures} calls failed in a row (no answer, or"
        f" HTTP 5xx){trying}; the next call goes at {when}",
        endpoint=endpoint,
        server=key,
        failures=circuit.failures,
        retry_at=until,
        retry_after=max(0.0, until - now),
    )
