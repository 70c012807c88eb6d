"""Reconciles one OAuth2Client: its credentials can be read, its server's metadata is
discovered, and its status says so. Requests using it are poked when it changes or is
new (they may have named it before it existed), and told to try at once, whatever
their backoff, when it becomes Ready again (see `awaited`). A Secret or ConfigMap it
names that is missing is read again soon (`awaited`), and the client looked at again
once it is there."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import ValidationError

from oauth2_token_operator.api import OAuth2ClientSpec
from oauth2_token_operator.api.annotations import REVOKE_ALL_ON_DELETE, REVOKE_ALL_REQUESTED_AT
from oauth2_token_operator.api.crd import OAUTH2_CLIENT
from oauth2_token_operator.api.oauth2client import SERVICE_ACCOUNT_TOKEN
from oauth2_token_operator.controller.shared.awaited import CLIENT
from oauth2_token_operator.controller.shared.context import Body, OperatorContext
from oauth2_token_operator.controller.shared.ledger import RequestKey
from oauth2_token_operator.controller.shared.log_refs import about_client
from oauth2_token_operator.kube.api import KubeApiError
from oauth2_token_operator.kube.own_writes import Freshness
from oauth2_token_operator.policies.access import client_access
from oauth2_token_operator.policies.conditions import READY, ConditionUpdate, set_conditions
from oauth2_token_operator.policies.failures import classify
from oauth2_token_operator.policies.on_demand import pending_at, requested_at
from oauth2_token_operator.util.rfc3339 import rfc3339

log = logging.getLogger(__name__)

LEAVING_GRACE = 10.0
"""Seconds past the revocation deadline a deleted client waits for requests that are
being deleted too, before its finalizer fails (and is retried)."""
LEAVING_POLL = 0.2

AUTHENTICATED = "Authenticated"
"""The client condition that says whether its server accepted its credentials."""

METADATA_RECHECK = 3600.0
"""Discovery is checked again this often (the library's metadata cache refresh)."""


class ClientReconciler:
    def __init__(self, ctx: OperatorContext) -> None:
        self.ctx = ctx
        self.seen = Freshness(ctx.cache.client)
        self._generations: dict[RequestKey, int | None] = {}
        self._revoke_all_asked: dict[RequestKey, float | None] = {}
        """The revoke-all time last acted on, per client (see `_revoke_all_requested`)."""
        self._authenticated: dict[RequestKey, ConditionUpdate] = {}
        """Per client, what its requests' last token requests said of its credentials."""
        self.revoke_all: Callable[[RequestKey], Awaitable[None]] | None = None
        """Revokes the tokens of a client's requests (`RequestReconciler.revoke_all`)."""

    def authentication(self, key: RequestKey, accepted: bool, message: str) -> None:
        """A request's token request through client `key` succeeded (`accepted`) or the
        server refused the client's credentials: the client's `Authenticated` condition
        says so (Ready only means its server's metadata was discovered)."""
        condition = (
            ConditionUpdate(
                AUTHENTICATED, "True", "Accepted",
                "the server accepted the credentials at the last token request",
            )
            if accepted
            else ConditionUpdate(AUTHENTICATED, "False", "InvalidClient", message)
        )  # fmt: skip
        if self._authenticated.get(key) != condition:
            self._authenticated[key] = condition
            if self.ctx.client_scheduler is not None:
                self.ctx.client_scheduler.poke(key)

    async def reconcile_key(self, key: RequestKey) -> None:
        body = self.ctx.cache.client(key)
        if body is not None:
            await self.reconcile(body)

    async def reconcile(self, body: Body) -> None:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        if meta.get("deletionTimestamp"):
            return
        body = self.seen.newest(key, body) or body
        status: dict[str, Any] = dict(body.get("status") or {})
        generation = meta.get("generation")
        if self._generations.get(key, generation) != generation:
            # Changed (credentials, issuer, endpoints): read Secrets afresh and let every
            # request using it decide again.
            self.ctx.credentials.forget(key[0])
            self.poke_requests(key)
        self._generations[key] = generation
        pending = self._revoke_all_requested(key, meta.get("annotations") or {})

        updates: dict[str, Any] = {}
        wake_at: float | None = self.ctx.clock() + METADATA_RECHECK
        try:
            spec = OAuth2ClientSpec.model_validate(body.get("spec") or {})
            issuer, client = await self.ctx.credentials.configs(*key, spec)
            metadata = await self.ctx.manager.server(issuer, client).metadata()
        except Exception as exc:  # whatever it is, the client's Ready condition says it
            failure = classify(exc)
            if self.ctx.awaited is not None:  # a missing Secret or ConfigMap: read it again soon
                self.ctx.awaited.missing_reference((CLIENT, key), key[0], exc)
            ready = ConditionUpdate(READY, "False", failure.reason, failure.message)
            wake_at = self.ctx.clock() + self.ctx.config.client_retry_interval
        else:
            mtls = client.uses_mtls
            endpoints = {
                "token": metadata.endpoint("token_endpoint", mtls=mtls),
                "introspection": metadata.endpoint("introspection_endpoint", mtls=mtls),
                "revocation": metadata.endpoint("revocation_endpoint", mtls=mtls),
            }
            advertised = metadata.token_endpoint_auth_methods_supported
            # A ServiceAccount token is a JWT client assertion, which servers advertise
            # as private_key_jwt (RFC 7523 names no other method).
            method = spec.authentication.method
            wire = "private_key_jwt" if method == SERVICE_ACCOUNT_TOKEN else method
            note = ""
            if advertised is not None and wire not in advertised:
                note = (
                    f"; note: the server does not advertise {wire}"
                    f" (it lists {', '.join(advertised)})"
                )
            ready = ConditionUpdate(
                READY,
                "True",
                "Ready",
                f"metadata discovered from {spec.issuer}{note}; the credentials are checked at"
                " each token request (condition Authenticated)",
            )
            updates = {
                "endpoints": {k: v for k, v in endpoints.items() if v},
                "authMethodsSupported": advertised,
            }
            if updates["endpoints"] != status.get("endpoints") or not status.get(
                "metadataFetchedAt"
            ):
                updates["metadataFetchedAt"] = rfc3339(self.ctx.clock())

        self.ctx.metrics.client_ready.set(*key, ready.status == "True", ready.reason)
        authenticated = self._authenticated.get(key)
        conditions = set_conditions(
            status.get("conditions"),
            [ready] if authenticated is None else [ready, authenticated],
            now=self.ctx.clock(),
            generation=generation,
        )
        patch = {k: v for k, v in updates.items() if status.get(k) != v}
        if conditions != status.get("conditions"):
            patch["conditions"] = conditions
        if status.get("observedGeneration") != generation:
            patch["observedGeneration"] = generation
        if patch:
            before = _ready_status(status)
            if before is None:
                # New: requests may have named it before it existed (blocked, with no
                # backoff to skip); a restarted operator finds its Ready condition and
                # pokes nobody. A poke, not a retry: a request's own failure meanwhile
                # (its Secret write, say) keeps its backoff.
                self.poke_requests(key)
            elif ready.status == "True" and before != "True":
                # Usable again: the requests using it try at once, not after a backoff
                # their failures through it caused.
                self.poke_requests(key, retry=True)
            elif ready.status != before:
                self.poke_requests(key)  # no longer usable
            try:
                patched = await self.ctx.kube.patch_status(OAUTH2_CLIENT.plural, *key, patch)
            except KubeApiError as exc:
                # Nothing else would bring the client back: again soon, as the server asks.
                delay = max(self.ctx.config.retry_base_delay, exc.retry_after or 0.0)
                log.warning("%s; trying again in %.1fs", exc, delay, extra=about_client(key))
                wake_at = self.ctx.clock() + delay
            else:
                self.seen.wrote(key, patched)
        if pending is not None:
            wake_at = pending if wake_at is None else min(wake_at, pending)
        if self.ctx.client_scheduler is not None and wake_at is not None:
            self.ctx.client_scheduler.schedule(key, wake_at)

    def _revoke_all_requested(self, key: RequestKey, annotations: dict[str, str]) -> float | None:
        """A new revoke-all time has come: the requests using the client decide (each
        revokes a token issued before it, see `RequestReconciler`). Returns the time to
        wake up at when it is still in the future."""
        value = annotations.get(REVOKE_ALL_REQUESTED_AT)
        now = self.ctx.clock()
        asked = requested_at(value, now)
        if asked != self._revoke_all_asked.get(key):
            self._revoke_all_asked[key] = asked
            if asked is not None:
                self.poke_requests(key)
        return pending_at(value, now)

    async def finalize(self, key: RequestKey, body: Body) -> None:
        """A client in use is not deleted until its requests are, unless asked to revoke
        their tokens first (`revoke-all-on-delete`); raises `ClientInUse` meanwhile.

        When every user is being deleted (a namespace going, say), they need this client
        to revoke their tokens and will be gone within the revocation deadline: wait here
        rather than fail, as kopf logs each temporary failure at ERROR."""
        users = sorted(f"{ns}/{name}" for ns, name in self.users(key, body))
        if not users:
            return
        annotations = (body.get("metadata") or {}).get("annotations") or {}
        if annotations.get(REVOKE_ALL_ON_DELETE) == "true":
            if self.revoke_all is not None:
                await self.revoke_all(key)
            return

        def going(user: RequestKey) -> bool:
            """Is the user being deleted, or in a namespace being deleted?"""
            meta = (self.ctx.cache.request(user) or {}).get("metadata") or {}
            return bool(meta.get("deletionTimestamp")) or self.ctx.cache.terminating(user[0])

        def all_leaving() -> bool:
            return all(going(user) for user in self.users(key, body))

        deadline = self.ctx.clock() + self.ctx.config.revocation_deadline + LEAVING_GRACE
        while all_leaving() and self.users(key, body):
            if self.ctx.clock() >= deadline:
                break
            await asyncio.sleep(LEAVING_POLL)
        if not self.users(key, body):
            return
        raise ClientInUse(
            f"still used by AccessTokenRequest {', '.join(users[:10])}"
            + (f" and {len(users) - 10} more" if len(users) > 10 else "")
            + f"; delete them first, or annotate {REVOKE_ALL_ON_DELETE}=true",
            delay=1 if all_leaving() else 15,  # all being deleted: soon free
        )

    def users(self, key: RequestKey, body: Body) -> list[RequestKey]:
        """The requests a deletion of client `key` must wait for: those naming it that
        may use it, and any that still holds a token through it (its revocation needs the
        client). A request refused the client (`ClientNotAllowed`) that holds nothing
        does not keep it."""
        try:
            allowed = OAuth2ClientSpec.model_validate(body.get("spec") or {}).allowed_namespaces
        except ValidationError:
            allowed = None
        users = []
        for request in self.ctx.cache.requests_using(key):
            decision = client_access(
                client_namespace=key[0],
                client_name=key[1],
                allowed=allowed,
                request_namespace=request[0],
                request_namespace_labels=self.ctx.cache.namespace_labels(request[0]),
            )
            if decision.allowed or self.ctx.ledger.current(request) is not None:
                users.append(request)
        return users

    def poke_requests(self, client_key: RequestKey, *, retry: bool = False) -> None:
        """Every request naming the client, in any namespace, looks again; with `retry`,
        one in a failure's backoff tries at once (`Awaited.retry_now`)."""
        scheduler = self.ctx.request_scheduler
        awaited = self.ctx.awaited
        for request_key in self.ctx.cache.requests_using(client_key):
            if retry and awaited is not None:
                awaited.retry_now(request_key)
            elif scheduler is not None:
                scheduler.poke(request_key)

    def forget(self, key: RequestKey) -> None:
        self._generations.pop(key, None)
        self._revoke_all_asked.pop(key, None)
        self._authenticated.pop(key, None)
        self.seen.forget(key)
        self.ctx.metrics.client_ready.forget(*key)
        if self.ctx.client_scheduler is not None:
            self.ctx.client_scheduler.cancel(key)
        self.poke_requests(key)


class ClientInUse(Exception):
    """A client's deletion waits for the requests that use it; try again in `delay`."""

    def __init__(self, message: str, *, delay: float) -> None:
        super().__init__(message)
        self.delay = delay


def _ready_status(status: dict[str, Any]) -> str | None:
    for entry in status.get("conditions") or ():
        if entry.get("type") == READY:
            return str(entry.get("status"))
    return None
