"""One kind's objects as the API server has them: listed, then kept current by a watch.

What client-go's reflector does for an informer's store, for the kinds the operator
reads on every reconcile (its token Secrets, the clients, the requests, the namespaces'
labels):

- one LIST, a page at a time, at `start`, which returns once the store holds it all
  (as controller-runtime waits for its caches to sync before any reconciler runs);
- then a WATCH from the list's resourceVersion, with bookmarks, in a thread of its
  own; a watch the server ends (its timeout) is resumed from the last version seen;
- a watch answered 410 Gone (the server's history no longer reaches back to that
  version) is replaced by a new LIST, whose differences from the store come out as
  changes, deletions included, as a watch would have shown them;
- any other failure is retried with capped, jittered backoff (or after the server's
  `Retry-After`, if longer), from where it stopped.

The store holds what `keep` makes of each object (the operator keeps them frozen,
`kube.freezing.freeze`), and reads like a kopf index: key → the values under it.

Another watch of the same kind (kopf's, which triggers the handlers) may be ahead of
this one: `offer` takes its copy, so that whatever a handler starts reads no older state
than the event it handles. The store never goes back: an object older than the one it
holds, or than its deletion (remembered for `TOMBSTONE_SECONDS`), is ignored, whichever
watch brings it. resourceVersion is opaque by API convention, but every etcd-backed API
server uses the etcd revision, an integer; where one is not, the last copy wins.

The kubernetes client is synchronous: the thread reads and decodes the stream and hands
each change to the event loop, which alone touches the store and runs `on_change`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Hashable, Iterator, Mapping
from typing import Any

import urllib3
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from oauth2_token_operator.kube.api import JsonObject, KubeApiError, api_error, version_of

log = logging.getLogger(__name__)
_jitter = random.Random()  # noqa: S311 - spreading retries, not cryptography

Key = Hashable
Change = Callable[[str, Key, Any], None]
"""`on_change(type, key, kept)`: ADDED or MODIFIED with the value now kept, DELETED with
the object's last state; run on the event loop, never for the listing at `start`."""

LIST_CHUNK = 500
"""Objects per page of a listing, as client-go's reflectors page theirs."""
WATCH_SECONDS = (300, 600)
"""How long the server keeps one watch open, drawn anew each time (client-go: 5 minutes
times 1 and a random fraction), so that many watchers do not all come back at once."""
READ_TIMEOUT = WATCH_SECONDS[1] + 60
"""Seconds of silence after which a watch's connection counts as dead. The API server
ends the watch first, and sends bookmarks meanwhile (about once a minute)."""
CONNECT_TIMEOUT = 10
TOMBSTONE_SECONDS = 300.0
"""How long a deletion's version is kept, so that a late copy from the other watch does
not bring the object back (the watches lag each other by far less)."""
RETRY_DELAYS = (0.5, 30.0)
"""First and longest delay before a failed list or watch is tried again."""


class Expired(Exception):
    """410 Gone: the version to go on from is older than the server's history."""


def backoff(first: float = RETRY_DELAYS[0], cap: float = RETRY_DELAYS[1]) -> Iterator[float]:
    """Delays that double up to `cap`, each drawn between half and all of its value."""
    delay = first
    while True:
        yield _jitter.uniform(delay / 2, delay)
        delay = min(cap, delay * 2)


def delay_after(exc: BaseException, delays: Iterator[float]) -> float:
    """The next delay, or longer if the server asked for it (`Retry-After` of a 429 that
    reaches us: the kubernetes client's urllib3 already waits it out for a GET itself, up
    to three times)."""
    asked = exc.retry_after if isinstance(exc, KubeApiError) else None
    return max(next(delays), asked or 0.0)


def describe(exc: BaseException) -> str:
    """What a failure says in the log: our API errors carry only a status and reason;
    anything else only its type (its text might echo what was read)."""
    return str(exc) if isinstance(exc, KubeApiError) else type(exc).__name__


class Informer(Mapping[Key, tuple[Any, ...]]):
    """`call` lists or watches the kind, taking the typed client's list keywords: the
    operator's is a `kube.rest.PathApi.lister`, e.g.
    `paths.lister("/api/v1/namespaces/{namespace}/secrets", namespace="apps")`; a typed
    list method with its path arguments bound works the same."""

    def __init__(
        self,
        what: str,
        call: Callable[..., Any],
        *,
        key: Callable[[JsonObject], Key],
        keep: Callable[[JsonObject], Any],
        label_selector: str | None = None,
        on_change: Change | None = None,
        chunk: int = LIST_CHUNK,
    ) -> None:
        self.what = what
        self.on_change = on_change
        self._call = call
        self._key = key
        self._keep = keep
        self._selector = label_selector
        self._chunk = chunk
        self._store: dict[Key, Any] = {}
        self._versions: dict[Key, int] = {}
        self._deleted: dict[Key, tuple[int, float]] = {}
        """Recent deletions: their version and when they were seen (oldest first)."""
        self._version: str | None = None
        """The last resourceVersion the watch has reached (None: list again)."""
        self.clock: Callable[[], float] = time.monotonic
        """For the age of deletions (`TOMBSTONE_SECONDS`)."""
        self._stopping = threading.Event()
        self._response: Any = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- the store, as a kopf index reads ----------------------------------------------

    def __getitem__(self, key: Key) -> tuple[Any, ...]:
        return (self._store[key],)

    def __iter__(self) -> Iterator[Key]:
        return iter(self._store)

    def __len__(self) -> int:
        return len(self._store)

    # -- life cycle --------------------------------------------------------------------

    async def start(self) -> None:
        """List everything (again and again until the API server answers), then watch."""
        self._loop = asyncio.get_running_loop()
        delays = backoff()
        while True:
            try:
                listing = await asyncio.to_thread(self._list)
                break
            except Exception as exc:
                delay = delay_after(exc, delays)
                log.warning(
                    "Listing %s failed (%s); again in %.1f s", self.what, describe(exc), delay
                )
                await asyncio.sleep(delay)
        self._store, self._versions, self._version = listing
        self._thread = threading.Thread(target=self._run, name=f"watch {self.what}", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """End the watch: its connection is shut, so the thread wakes at once."""
        self._stopping.set()
        response = self._response
        if response is not None:
            with contextlib.suppress(Exception):
                response.shutdown()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, CONNECT_TIMEOUT)

    # -- in the watch's thread ---------------------------------------------------------

    def _run(self) -> None:
        delays: Iterator[float] | None = None
        while not self._stopping.is_set():
            try:
                if self._version is None:
                    store, versions, self._version = self._list()
                    self._hand_over(self._replace, store, versions, self._version)
                self._watch()
                delays = None
            except Expired:
                log.info("Listing %s again: its watch expired (410 Gone)", self.what)
                self._version = None
            except Exception as exc:
                if self._stopping.is_set():
                    return
                delays = delays or backoff()
                delay = delay_after(exc, delays)
                log.warning(
                    "Watching %s failed (%s); again in %.1f s", self.what, describe(exc), delay
                )
                self._stopping.wait(delay)

    def _request(self, **params: Any) -> Any:
        if self._selector:
            params["label_selector"] = self._selector
        try:
            return self._call(_preload_content=False, **params)
        except ApiException as exc:
            if exc.status == 410:
                raise Expired() from None
            raise api_error(
                exc, f"{'watching' if params.get('watch') else 'listing'} {self.what}"
            ) from None
        except urllib3.exceptions.HTTPError as exc:
            raise KubeApiError(f"{self.what}: no answer ({type(exc).__name__})") from None

    def _list(self) -> tuple[dict[Key, Any], dict[Key, int], str]:
        """Every object as kept and its version, a page at a time, and the version the
        listing is consistent at."""
        store: dict[Key, Any] = {}
        versions: dict[Key, int] = {}
        token: str | None = None
        while True:
            page: JsonObject = json.loads(self._request(limit=self._chunk, _continue=token).data)
            kind = str(page.get("kind") or "").removesuffix("List")
            for item in page.get("items") or ():
                # As kopf does: a list's items carry no kind or apiVersion of their own.
                item.setdefault("kind", kind)
                item.setdefault("apiVersion", page.get("apiVersion"))
                key = self._key(item)
                store[key] = self._keep(item)
                version = version_of(item)
                if version is not None:
                    versions[key] = version
            metadata = page.get("metadata") or {}
            token = metadata.get("continue")
            if not token:
                return store, versions, str(metadata.get("resourceVersion") or "")

    def _watch(self) -> None:
        """One watch, until the server ends it (or `stop`)."""
        response = self._request(
            watch=True,
            resource_version=self._version,
            allow_watch_bookmarks=True,
            timeout_seconds=_jitter.randint(*WATCH_SECONDS),
            _request_timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
        )
        self._response = response
        try:
            for line in iter_resp_lines(response):  # type: ignore[no-untyped-call]
                if self._stopping.is_set():
                    return
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise Expired()
                    raise KubeApiError(
                        f"watching {self.what}: HTTP {obj.get('code')} {obj.get('reason', '')}",
                        status=obj.get("code"),
                    )
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    self._hand_over(
                        self._apply, kind, self._key(obj), self._keep(obj), version_of(obj)
                    )
                version = (obj.get("metadata") or {}).get("resourceVersion")
                if version:
                    self._version = version
        finally:
            self._response = None
            # Closed, not returned as it is: a stream read halfway would leave its rest
            # for the next request on that connection.
            response.close()
            response.release_conn()

    def _hand_over(self, apply: Callable[..., None], *args: Any) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is closed: the operator is gone
            self._loop.call_soon_threadsafe(apply, *args)

    # -- on the event loop -------------------------------------------------------------

    def offer(self, obj: JsonObject, *, deleted: bool = False) -> None:
        """A copy of an object from another watch of this kind (kopf's), or its
        deletion: taken, and reported, if newer than what the store has."""
        key, version = self._key(obj), version_of(obj)
        if self._outdated(key, version):
            return  # usually: this watch brought it first (and kept it: no `keep` again)
        kind = "DELETED" if deleted else "MODIFIED" if key in self._store else "ADDED"
        self._apply(kind, key, self._keep(obj), version)

    def _apply(self, kind: str, key: Key, kept: Any, version: int | None) -> None:
        if self._stopping.is_set() or self._outdated(key, version):
            return
        if kind == "DELETED":
            self._store.pop(key, None)
            self._versions.pop(key, None)
            if version is not None:
                self._bury(key, version)
        else:
            self._store[key] = kept
            self._deleted.pop(key, None)
            if version is not None:
                self._versions[key] = version
        self._changed(kind, key, kept)

    def _outdated(self, key: Key, version: int | None) -> bool:
        """Whether the store holds this version of the object already, or a later one,
        or has seen it deleted later."""
        if version is None:
            return False
        held = self._versions.get(key)
        if held is None:
            held, _ = self._deleted.get(key, (None, 0.0))
        return held is not None and version <= held

    def _bury(self, key: Key, version: int) -> None:
        now = self.clock()
        self._deleted.pop(key, None)
        self._deleted[key] = (version, now)
        while self._deleted:
            oldest = next(iter(self._deleted))
            if self._deleted[oldest][1] > now - TOMBSTONE_SECONDS:
                break
            del self._deleted[oldest]

    def _replace(self, store: dict[Key, Any], versions: dict[Key, int], at: str) -> None:
        """A new listing, consistent at version `at`: what it no longer has was deleted,
        what differs changed; a copy offered meanwhile that is newer than the listing
        stays (the watch from `at` will bring its later changes)."""
        if self._stopping.is_set():
            return
        listed_at = int(at) if at.isdigit() else None
        before, self._store = self._store, store
        held, self._versions = self._versions, versions
        for key, kept in before.items():
            version = held.get(key)
            if version is not None and listed_at is not None and version > listed_at:
                store[key], versions[key] = kept, version
            elif key not in store:
                if listed_at is not None:
                    self._bury(key, listed_at)
                self._changed("DELETED", key, kept)
        for key, kept in store.items():
            old = before.get(key)
            if old != kept:
                self._changed("ADDED" if old is None else "MODIFIED", key, kept)

    def _changed(self, kind: str, key: Key, kept: Any) -> None:
        if self.on_change is None:
            return
        try:
            self.on_change(kind, key, kept)
        except Exception:
            log.exception("Handling a change of %s failed", self.what)


class ByNamespace(Mapping[Key, tuple[Any, ...]]):
    """Informers of one kind, one per watched namespace, read as one store keyed by
    (namespace, name)."""

    def __init__(self, informers: Mapping[str, Informer]) -> None:
        self.informers = dict(informers)

    def __getitem__(self, key: Key) -> tuple[Any, ...]:
        informer = self.informers.get(key[0]) if isinstance(key, tuple) and key else None
        if informer is None:
            raise KeyError(key)
        return informer[key]

    def offer(self, obj: JsonObject, *, deleted: bool = False) -> None:
        informer = self.informers.get((obj.get("metadata") or {}).get("namespace") or "")
        if informer is not None:
            informer.offer(obj, deleted=deleted)

    def __iter__(self) -> Iterator[Key]:
        for informer in self.informers.values():
            yield from informer

    def __len__(self) -> int:
        return sum(len(informer) for informer in self.informers.values())
