"""What blocked clients and requests wait for, and telling them when it comes.

An object is often created before what it names (`kubectl apply -f deploy/examples/`
applies a request before its client, alphabetically): a request whose OAuth2Client
does not exist yet, a client whose credentials Secret or CA ConfigMap does not, a
request whose refresh-token or registered-token Secret does not. Each must go on
within seconds of the missing object's creation, not at its next failure backoff
(up to `retry_max_delay`, 5 minutes) nor never (a blocked request had no timer).

- **An OAuth2Client** is watched: the client reconciler pokes the requests that name
  it when it is new (its status has no Ready condition yet, so a restarted operator,
  which sees every client again, pokes nobody), and tells them to try at once when it
  becomes Ready again (`ClientReconciler.reconcile`), in its namespace or any other
  (`clientRef.namespace`).
- **A referenced Secret or ConfigMap** is not watched. The operator watches only its
  own token Secrets: a watch of every Secret in the cluster would hold all of them in
  memory, and a watch per referenced object would hold a connection and a thread each
  (`kube.informer`). Instead, each key that a client or request found missing
  (`ClientConfigError.missing`) is read again here, through the credentials' cache,
  on a schedule that backs off from 1 s to `POLL_DELAYS[1]` (10 s): one GET per
  missing object however many wait for it, and no status write or Event. A Secret
  created later is seen within about 15 s (the longest delay, plus the credentials
  cache's 5 s), and whoever waits for it is poked. A Secret that exists without the
  opt-in label (`SecretNotUsable`) is waited for the same way: the label added later is
  seen as soon. Registrations lapse after `ttl`
  unless renewed: a waiter still blocked renews its own at each look (a failed
  issuance backs off at most `retry_max_delay`, a blocked request is looked at again
  that often, a client that is not Ready every `client_retry_interval`), so nothing
  is read forever for a waiter that was deleted or no longer needs it.

- **Another request's token** (the subject token of a `token_exchange`) is the
  operator's own: an exchange that found none valid (or had one refused) registers here,
  and is poked when that request is next reconciled holding a valid token other than
  the one it could not use (`exchange.subject_held`). Same `ttl` as above.

Requests poked because what they waited for came (`retry_now`) try at once, not after
the backoff of the failure it caused (`policies.backoff.backoff_until`), as they do
after a new spec: the change is the fix. A server's `Retry-After` still holds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from oauth2_token_operator.api import AccessTokenRequestSpec, OAuth2ClientSpec
from oauth2_token_operator.client_config import (
    ClientConfigError,
    Found,
    SecretKey,
    collect_values,
    referenced_keys,
)
from oauth2_token_operator.controller.shared import grants
from oauth2_token_operator.controller.shared.ledger import RequestKey
from oauth2_token_operator.controller.shared.scheduler import Scheduler

log = logging.getLogger(__name__)

CLIENT = "OAuth2Client"
REQUEST = "AccessTokenRequest"

Waiter = tuple[str, RequestKey]
"""Who waits: (`CLIENT` or `REQUEST`, (namespace, name))."""
ObjectRef = tuple[str, str, str]
"""A referenced object: (kind, namespace, name)."""
Read = Callable[[str, list[SecretKey]], Awaitable[dict[tuple[str, str], Found]]]
"""`CredentialReader.objects`: the decoded data of each object named (None if missing,
`NotUsable` for a Secret without the opt-in label)."""

POLL_DELAYS = (1.0, 10.0)
"""First and longest delay between two reads of a missing object."""
POLL_CONCURRENCY = 4


class Awaited:
    """The missing Secrets and ConfigMaps, who waits for which of their keys, and the
    requests told to try at once. Everything runs on the event loop."""

    def __init__(
        self,
        read: Read,
        *,
        requests: Scheduler[RequestKey],
        clients: Scheduler[RequestKey],
        ttl: float,
        clock: Callable[[], float] = time.time,
        delays: tuple[float, float] = POLL_DELAYS,
    ) -> None:
        self._read = read
        self._requests = requests
        self._clients = clients
        self._ttl = ttl
        self._clock = clock
        self._first, self._longest = delays
        self._waiting: dict[ObjectRef, dict[tuple[Waiter, str], float]] = {}
        """Per missing object, who waits for which key of it, until when."""
        self._delays: dict[ObjectRef, float] = {}
        """Per missing object, the delay before its next read."""
        self._unwanted: dict[tuple[ObjectRef, Waiter, str], str] = {}
        """A value some waiters wait to see replaced (its digest; see `awaiting_change`)."""
        self._subjects: dict[RequestKey, dict[RequestKey, tuple[float, str | None]]] = {}
        """Per subject request, the exchanges waiting for its next valid token: until
        when, and the digest of the token they could not use (`None`: any)."""
        self._next_subject_sweep = float("-inf")
        self._retry: set[RequestKey] = set()
        """Requests poked to try at once (`retry_now`), until their next look."""
        self.poller: Scheduler[ObjectRef] = Scheduler(
            self._poll, concurrency=POLL_CONCURRENCY, clock=clock
        )
        """Reads each missing object when due (started and stopped with the others)."""

    # -- who waits -------------------------------------------------------------------

    def missing(self, waiter: Waiter, namespace: str, key: SecretKey) -> None:
        """`waiter` found `key` of an object in `namespace` missing (or empty)."""
        ref = (key.kind, namespace, key.name)
        self._waiting.setdefault(ref, {})[(waiter, key.key)] = self._clock() + self._ttl
        if self.poller.when(ref) is None:
            self._delays[ref] = self._first
            self.poller.schedule(ref, self._clock() + self._first)

    def awaiting_change(self, waiter: Waiter, namespace: str, key: SecretKey, digest: str) -> None:
        """`waiter` cannot use the value `key` holds (digest `digest`: a refresh token the
        server refused): wake it when another value is there."""
        self._unwanted[((key.kind, namespace, key.name), waiter, key.key)] = digest
        self.missing(waiter, namespace, key)

    def missing_reference(self, waiter: Waiter, namespace: str, exc: BaseException) -> bool:
        """`exc` (a `ClientConfigError` naming what is missing) came from reading keys
        in `namespace`: wait for that one. Whether it did."""
        if not isinstance(exc, ClientConfigError) or exc.missing is None:
            return False
        self.missing(waiter, namespace, exc.missing)
        return True

    def issuance_failed(
        self,
        request: RequestKey,
        spec: AccessTokenRequestSpec,
        client_namespace: str,
        client_spec: OAuth2ClientSpec,
        exc: BaseException,
    ) -> bool:
        """A request's issuance failed with `exc`: if on a missing key, wait for it. It
        read its client's keys (in the client's namespace) and its grant's Secret or
        ServiceAccount (in its own); a key named the same in both namespaces is left to
        the backoff, as it cannot tell which one is missing."""
        if not isinstance(exc, ClientConfigError) or exc.missing is None:
            return False
        places = [client_namespace for key in referenced_keys(client_spec) if key == exc.missing]
        source = grants.source_ref(spec)
        if source is not None and SecretKey("Secret", source.name, source.key) == exc.missing:
            places.append(request[0])
        if grants.subject_account(spec) == exc.missing:  # a token_exchange's ServiceAccount
            places.append(request[0])
        if len(set(places)) != 1:
            return False
        self.missing((REQUEST, request), places[0], exc.missing)
        return True

    def awaiting_subject(
        self, waiter: RequestKey, subject: RequestKey, unwanted: str | None
    ) -> None:
        """Request `waiter` exchanges `subject`'s token and found none it could use (the
        one digested `unwanted`, or none): poke it when `subject` holds another."""
        now = self._clock()
        if now >= self._next_subject_sweep:  # waits on requests that never came, lapsed
            self._next_subject_sweep = now + self._ttl
            for key, waiters in list(self._subjects.items()):
                for lapsed in [w for w, (until, _) in waiters.items() if until <= now]:
                    del waiters[lapsed]
                if not waiters:
                    del self._subjects[key]
        self._subjects.setdefault(subject, {})[waiter] = (now + self._ttl, unwanted)

    def awaits_subject(self, subject: RequestKey) -> bool:
        return subject in self._subjects

    def subject_held(self, subject: RequestKey, digest: str) -> None:
        """`subject` holds a valid token (digested `digest`): poke whoever waits for it."""
        waiters = self._subjects.get(subject, {})
        now = self._clock()
        for waiter, (until, unwanted) in list(waiters.items()):
            if until <= now or unwanted != digest:
                del waiters[waiter]
                if until > now:
                    log.info("AccessTokenRequest %s/%s holds a new token: poking %s/%s",
                             *subject, *waiter)  # fmt: skip
                    self.retry_now(waiter)
        if not waiters:
            self._subjects.pop(subject, None)

    # -- telling them ----------------------------------------------------------------

    def retry_now(self, request: RequestKey) -> None:
        """Poke a request, which then tries at once, whatever failure backoff it is in."""
        self._retry.add(request)
        self._requests.poke(request)

    def take_retry(self, request: RequestKey) -> bool:
        """Whether the request was poked to try at once since its last look (once)."""
        if request in self._retry:
            self._retry.discard(request)
            return True
        return False

    def _wake(self, waiter: Waiter) -> None:
        kind, key = waiter
        if kind == CLIENT:
            self._clients.poke(key)
        else:
            self.retry_now(key)

    async def _poll(self, ref: ObjectRef) -> None:
        """Read a missing object again: wake those whose key it now has, and plan the
        next read for the others (the delay doubles, up to the longest)."""
        now = self._clock()
        waiting = self._waiting.get(ref, {})
        for entry in [entry for entry, until in waiting.items() if until <= now]:
            del waiting[entry]
        if not waiting:
            self._forget(ref)
            return
        kind, namespace, name = ref
        keys = [SecretKey(kind, name, key) for key in sorted({key for _, key in waiting})]
        try:
            found = await self._read(namespace, keys)
        except Exception as exc:  # the API server failed: as missing, read again later
            log.debug("reading %s %s/%s failed: %s", kind, namespace, name, exc)
            found = {}
        waiting = self._waiting.get(ref, {})
        for waiter, key in list(waiting):
            unwanted = self._unwanted.get((ref, waiter, key))
            if _present(SecretKey(kind, name, key), found, unwanted):
                del waiting[(waiter, key)]
                self._unwanted.pop((ref, waiter, key), None)
                log.info("%s %s/%s is there: poking %s %s/%s", kind, namespace, name,
                         waiter[0], *waiter[1])  # fmt: skip
                self._wake(waiter)
        if not waiting:
            self._forget(ref)
            return
        delay = min(self._longest, self._delays.get(ref, self._first) * 2)
        self._delays[ref] = delay
        self.poller.schedule(ref, self._clock() + delay)

    def _forget(self, ref: ObjectRef) -> None:
        for entry in [entry for entry in self._unwanted if entry[0] == ref]:
            del self._unwanted[entry]
        self._waiting.pop(ref, None)
        self._delays.pop(ref, None)
        self.poller.cancel(ref)

    def __len__(self) -> int:
        """Missing objects being read."""
        return len(self._waiting)


def _present(
    key: SecretKey, found: dict[tuple[str, str], Found], unwanted: str | None = None
) -> bool:
    """Whether `key` now holds a value (other than the `unwanted` one), exactly as the
    waiter's own read will judge."""
    try:
        values = collect_values([key], found)
    except ClientConfigError:
        return False
    return unwanted is None or grants.digest(values[key].strip()) != unwanted
