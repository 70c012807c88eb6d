"""The cluster as the operator reads it: one cache of the objects it watches, per kind
and typed.

Behind it are the operator's own informers (`kube.watches`, `kube.informer`), listed in
`on.startup` before kopf watches anything, and kept frozen (`kube.freezing`): those
stores are private to `kube`. Each read here decodes a dict of the caller's own, which
it may keep or change; kopf's copy of each event of the two kinds it watches is offered
first (`offer_request`, `offer_client`), so that a handler reads no older state than the
event it handles.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any, cast

from kubernetes import client as k8s

from oauth2_token_operator.kube import watches
from oauth2_token_operator.kube.api import JsonObject, ObjectKey
from oauth2_token_operator.kube.freezing import thaw
from oauth2_token_operator.kube.informer import Key
from oauth2_token_operator.kube.rest import Lister

SecretChange = Callable[[str, ObjectKey, JsonObject], None]
"""`(type, key, body)`: a token Secret ADDED or MODIFIED (as it is now) or DELETED (as it
last was), on the event loop, in order; never for the listing at `start`."""


class ClusterCache:
    """Requests, clients, token Secrets and namespaces, as the operator last saw them."""

    def __init__(self, kept: watches.Watches) -> None:
        self._watches = kept

    @classmethod
    def watching(cls, api_client: k8s.ApiClient, namespaces: tuple[str, ...] = ()) -> ClusterCache:
        """Informers for every namespace, or one per namespace in `namespaces` (the
        namespaces' labels always for all: they are cluster-scoped); `start` lists."""
        return cls(watches.build(api_client, namespaces))

    @classmethod
    def of(
        cls,
        *,
        requests: Iterable[JsonObject] = (),
        clients: Iterable[JsonObject] = (),
        token_secrets: Iterable[JsonObject] = (),
        namespaces: Iterable[JsonObject] = (),
    ) -> ClusterCache:
        """A cache holding these objects, kept as the informers keep them, which never
        lists or watches (tests): `offer_request` and `offer_client` change it."""
        cache = cls(watches.build_with(_unreachable))
        kept = cache._watches
        for store, bodies in (
            (kept.requests, requests),
            (kept.clients, clients),
            (kept.secrets, token_secrets),
            (kept.namespaces, namespaces),
        ):
            for body in bodies:
                store.offer(body)
        return cache

    # -- reads -------------------------------------------------------------------------

    def request(self, key: ObjectKey) -> JsonObject | None:
        """The AccessTokenRequest `(namespace, name)`."""
        return _thawed(self._watches.requests, key)

    def client(self, key: ObjectKey) -> JsonObject | None:
        """The OAuth2Client `(namespace, name)`."""
        return _thawed(self._watches.clients, key)

    def token_secret(self, key: ObjectKey) -> JsonObject | None:
        """The Secret `(namespace, name)`, if labelled as managed by the operator."""
        return _thawed(self._watches.secrets, key)

    def requests_using(self, client: ObjectKey) -> tuple[ObjectKey, ...]:
        """The requests that name the client, in the order they came (the listing's, then
        the watch's): the order in which a client's change pokes them."""
        return self._watches.users.get(client) or ()

    def namespace_labels(self, namespace: str) -> dict[str, str] | None:
        """The namespace's labels; `None` while the namespace is unknown."""
        facts = self._namespace(namespace)
        return None if facts is None else dict(facts.get("labels") or {})

    def terminating(self, namespace: str) -> bool:
        """Is the namespace being deleted? (It then takes no new objects, Events included.)"""
        facts = self._namespace(namespace)
        return facts is not None and bool(facts.get("terminating"))

    def _namespace(self, namespace: str) -> dict[str, Any] | None:
        values = self._watches.namespaces.get(namespace)
        return cast(dict[str, Any], values[0]) if values else None

    # -- kopf's events, and the Secrets' changes ---------------------------------------

    def offer_request(self, body: JsonObject, *, deleted: bool = False) -> None:
        """kopf's copy of a request (or its deletion), before its handler runs: taken if
        it is newer than what the cache holds (`Informer.offer`)."""
        self._watches.requests.offer(body, deleted=deleted)

    def offer_client(self, body: JsonObject, *, deleted: bool = False) -> None:
        """kopf's copy of a client (or its deletion), as `offer_request`: what its
        handler starts (a change or deletion pokes its requests, which read the client)
        sees no older state."""
        self._watches.clients.offer(body, deleted=deleted)

    def on_token_secret_change(self, handler: SecretChange) -> None:
        """Who hears of each change of a token Secret (not of the initial listing)."""

        def changed(kind: str, key: Key, kept: Any) -> None:
            handler(kind, cast(ObjectKey, key), thaw(kept))

        self._watches.on_secret_change(changed)

    # -- life cycle --------------------------------------------------------------------

    async def start(self) -> None:
        """Every kind listed (concurrently), then watched; returns once all is listed."""
        await self._watches.start()

    async def stop(self) -> None:
        await self._watches.stop()

    def watching_threads(self) -> int:
        """How many informers' watch threads are alive (none once `stop` returned)."""
        return sum(
            1
            for informer in self._watches.informers()
            if informer._thread is not None and informer._thread.is_alive()
        )

    # -- for the memory benchmark ------------------------------------------------------

    def parts(self) -> list[tuple[str, object]]:
        """What the cache holds, by name, for a census of the operator's memory."""
        kept = self._watches
        return [
            ("informer AccessTokenRequests", kept.requests),
            ("informer token Secrets", kept.secrets),
            ("requests by client", kept.users),
            ("informer OAuth2Clients", kept.clients),
            ("informer namespaces", kept.namespaces),
        ]

    def kept_sizes(self) -> dict[str, tuple[float, float]]:
        """Per kind kept frozen (requests, Secrets) that holds any: the average size of an
        object's compact JSON, and of what is kept of it (compressed)."""
        sizes = {}
        for name, store in (
            ("requests", self._watches.requests),
            ("Secrets", self._watches.secrets),
        ):
            values = [value for key in list(store) for value in store[key]]
            if values:
                plain = sum(len(_compact(thaw(value))) for value in values)
                sizes[name] = (plain / len(values), sum(map(len, values)) / len(values))
        return sizes


def _thawed(store: watches.Store, key: ObjectKey) -> JsonObject | None:
    values = store.get(key)
    return cast(JsonObject, thaw(values[0])) if values else None


def _compact(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def _unreachable(template: str, **path: str) -> Lister:
    def never(**_: Any) -> Any:
        raise RuntimeError("a cache built from objects lists and watches nothing")

    return never
