"""The informers behind the cluster cache (`kube.cache`): the operator's own watches
(`kube.informer`) of its token Secrets, the clients, the requests and the namespaces'
labels, and the requests grouped by the client they use. Private to `kube`: the rest of
the operator reads the cache's typed calls, never these stores.

Not kopf's indexes: kopf runs no handler before every index holds its initial listing,
and meanwhile keeps every listed object's worker waiting with its event. At a restart
with 10 000 tokens that was some 27 KB per token at once, most of a 507 MiB peak
(BENCHMARKS.md, "Fifth round"), and it rules out kopf's `worker_limit` (the waiting
workers would hold every slot: nolar/kopf#1243). The informers list everything in
`on.startup`, which kopf finishes before it watches anything, so a restarting operator
still sees every token Secret before deciding anything; kopf then watches only the two
kinds it has handlers for, and offers each of their events to the informer of its kind
before the handler runs (`ClusterCache.offer_request`, `offer_client`): two watches of
one kind, each sometimes ahead.

Why the requests' and clients' informers keep a watch of their own rather than list once
and then take only kopf's events: kopf (1.45, `continuous_watch`) reports a listing as
events of the objects it finds and nothing for those it does not, so an object deleted
between the informer's listing and kopf's, or while kopf's watch is down before it lists
again (after a 410 Gone or a dropped connection), would stay in the cache for good: a
request reconciled from the scheduler against a 404, a client whose deletion waits on a
user that is gone. And kopf's event reaches `offer` only when that object's worker runs
its handler, after the previous one (a token request may take seconds): what other
objects' reconciles read of it would lag as long.
"""

from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

from kubernetes import client as k8s

from oauth2_token_operator.api.crd import ACCESS_TOKEN_REQUEST, GROUP, OAUTH2_CLIENT, VERSION
from oauth2_token_operator.api.token_secret import MANAGED_BY, MANAGED_BY_LABEL
from oauth2_token_operator.kube.api import SECRETS, JsonObject, ObjectKey
from oauth2_token_operator.kube.freezing import freeze, thaw
from oauth2_token_operator.kube.informer import ByNamespace, Change, Informer, Key
from oauth2_token_operator.kube.rest import Lister, PathApi

Store = Informer | ByNamespace
"""One kind's informer, or one per watched namespace read as one: key → (value kept,)."""

ListerOf = Callable[..., Lister]
"""`PathApi.lister`: the collection at a path template, its path parameters bound."""

REQUESTS = ACCESS_TOKEN_REQUEST.plural
CLIENTS = OAUTH2_CLIENT.plural
OWNED_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY}"

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
"""kubectl's copy of the object as last applied: the spec once more, never read here."""


def stored_form(body: JsonObject, *, keep_last_applied: bool = False) -> bytes:
    """An object as the informers keep it (`freeze`): without `metadata.managedFields`,
    which nothing here reads (client-go's informers strip them too), and unless asked
    without kubectl's last-applied annotation (a Secret's annotations are written back
    by `write_token_secret`: they keep it). An AccessTokenRequest's three writers'
    entries are 7 of its 11 KB as Python objects."""
    metadata = dict(body.get("metadata") or {})
    metadata.pop("managedFields", None)
    annotations = metadata.get("annotations") or {}
    if not keep_last_applied and LAST_APPLIED in annotations:
        metadata["annotations"] = {k: v for k, v in annotations.items() if k != LAST_APPLIED}
    return freeze({**body, "metadata": metadata})


def object_key(body: JsonObject) -> ObjectKey:
    """(namespace, name), interned: the same names key the informers, the requests by
    client, the ledger, the scheduler and the metrics (`Request.of` interns them too),
    each decoded anew from every event; one copy of each serves them all."""
    metadata = body.get("metadata") or {}
    return (sys.intern(metadata.get("namespace") or ""), sys.intern(metadata.get("name") or ""))


def client_of(request: JsonObject) -> ObjectKey:
    """The (namespace, name) of the OAuth2Client a request names (its own namespace if
    the reference gives none), interned as `object_key`."""
    ref = (request.get("spec") or {}).get("clientRef") or {}
    namespace, _ = object_key(request)
    return (sys.intern(ref.get("namespace") or namespace), sys.intern(ref.get("name") or ""))


class ClientUsers(Mapping[ObjectKey, tuple[ObjectKey, ...]]):
    """(client namespace, name) → the requests that use it, in the order they came (the
    listing's, then the watch's), kept current from the requests' informer. The order
    is the one in which a client's change pokes them."""

    def __init__(self) -> None:
        self._client_of: dict[ObjectKey, ObjectKey] = {}
        self._users: dict[ObjectKey, dict[ObjectKey, None]] = {}

    def __getitem__(self, client: ObjectKey) -> tuple[ObjectKey, ...]:
        return tuple(self._users[client])

    def __iter__(self) -> Iterator[ObjectKey]:
        return iter(self._users)

    def __len__(self) -> int:
        return len(self._users)

    def fill(self, requests: Mapping[Key, tuple[Any, ...]]) -> None:
        """From the requests' initial listing."""
        for key, (value,) in requests.items():
            self.changed("ADDED", key, value)

    def changed(self, kind: str, key: Key, value: Any) -> None:
        """A request's change, as its informer reports it."""
        request = cast(ObjectKey, key)
        client = client_of(thaw(value)) if kind != "DELETED" else None
        before = self._client_of.get(request)
        if before == client:
            return
        if before is not None:
            del self._client_of[request]
            users = self._users[before]
            del users[request]
            if not users:
                del self._users[before]
        if client is not None:
            self._client_of[request] = client
            self._users.setdefault(client, {})[request] = None


def informers_of(view: Store) -> list[Informer]:
    return list(view.informers.values()) if isinstance(view, ByNamespace) else [view]


@dataclass
class Watches:
    """The informers behind `ClusterCache`, started and stopped together."""

    secrets: Store
    clients: Store
    requests: Store
    namespaces: Informer
    users: ClientUsers

    def informers(self) -> list[Informer]:
        return [
            self.namespaces,
            *informers_of(self.secrets),
            *informers_of(self.clients),
            *informers_of(self.requests),
        ]

    def on_secret_change(self, handler: Change) -> None:
        """Who hears of each change of a token Secret (not of the initial listing)."""
        for informer in informers_of(self.secrets):
            informer.on_change = handler

    async def start(self) -> None:
        """Every listing complete (concurrently), then the requests grouped by client."""
        await asyncio.gather(*(informer.start() for informer in self.informers()))
        self.users.fill(self.requests)

    async def stop(self) -> None:
        await asyncio.gather(*(informer.stop() for informer in self.informers()))


def namespace_facts(body: Mapping[str, Any]) -> dict[str, Any]:
    """What the operator needs of a namespace: its labels (who may use a client) and
    whether it is being deleted (it then takes no Events)."""
    meta = body.get("metadata") or {}
    return {"labels": dict(meta.get("labels") or {}), "terminating": bool(
        meta.get("deletionTimestamp") or (body.get("status") or {}).get("phase") == "Terminating"
    )}  # fmt: skip


def build(api_client: k8s.ApiClient, namespaces: tuple[str, ...] = ()) -> Watches:
    """Informers for every namespace, or one per namespace in `namespaces` (the
    namespaces' labels always for all: they are cluster-scoped)."""
    return build_with(PathApi(api_client).lister, namespaces)


def build_with(lister: ListerOf, namespaces: tuple[str, ...] = ()) -> Watches:
    """`build`, listing and watching through `lister` (tests: one that never answers)."""

    def informer(
        what: str,
        everywhere: Callable[..., Any],
        in_namespace: Callable[[str], Callable[..., Any]],
        **options: Any,
    ) -> Store:
        if not namespaces:
            return Informer(what, everywhere, key=object_key, **options)
        return ByNamespace(
            {
                namespace: Informer(
                    f"{what} in {namespace}", in_namespace(namespace), key=object_key, **options
                )
                for namespace in namespaces
            }
        )

    def listers(everywhere: str, in_namespace: str) -> tuple[Lister, Callable[[str], Lister]]:
        return lister(everywhere), lambda namespace: lister(in_namespace, namespace=namespace)

    def custom_objects(plural: str) -> tuple[Lister, Callable[[str], Lister]]:
        return listers(
            f"/apis/{GROUP}/{VERSION}/{plural}",
            f"/apis/{GROUP}/{VERSION}/namespaces/{{namespace}}/{plural}",
        )

    users = ClientUsers()
    return Watches(
        secrets=informer(
            "token Secrets",
            *listers("/api/v1/secrets", SECRETS),
            keep=functools.partial(stored_form, keep_last_applied=True),
            label_selector=OWNED_SELECTOR,
        ),
        clients=informer("OAuth2Clients", *custom_objects(CLIENTS), keep=stored_form),
        requests=informer(
            "AccessTokenRequests",
            *custom_objects(REQUESTS),
            keep=stored_form,
            on_change=users.changed,
        ),
        namespaces=Informer(
            "namespaces",
            lister("/api/v1/namespaces"),
            key=lambda body: (body.get("metadata") or {}).get("name") or "",
            keep=namespace_facts,
        ),
        users=users,
    )
