"""Reconciles one AccessTokenRequest: resolve its client, adopt or obtain its token,
keep its Secret intact, and report status. Level-triggered: every call looks at the
whole current state (the request, its Secret, the token held) and does only what the
policy chains ask for, so it is safe to call on any event, timer or restart.

The steps live beside it: `request_types` (the values passed around), `resolution`,
`adoption`, `introspection`, `facts` (what the policy chains see) and `request_status`;
`policies.plan` decides, `executor` carries the plan out; this module gathers what the
plan looks at (once per reconcile), keeps each request's in-memory record
(`request_record`), and finalizes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from oauth2_token_operator.api import ACCESS_TOKEN_REQUEST
from oauth2_token_operator.api.annotations import RENEW_REQUESTED_AT
from oauth2_token_operator.api.token_secret import is_owned_by
from oauth2_token_operator.controller.request import exchange, revocation
from oauth2_token_operator.controller.request.adoption import adopt, key_of
from oauth2_token_operator.controller.request.executor import RequestExecutor
from oauth2_token_operator.controller.request.facts import situation as gather
from oauth2_token_operator.controller.request.introspection import introspect_if_due
from oauth2_token_operator.controller.request.record import RequestRecord, RequestRecords
from oauth2_token_operator.controller.request.resolution import resolve
from oauth2_token_operator.controller.request.rollout_restarts import restart_if_due
from oauth2_token_operator.controller.request.status import write_status
from oauth2_token_operator.controller.request.values import Blocked, Outcome, Request, Resolved
from oauth2_token_operator.controller.request.write_guard import WriteGuard
from oauth2_token_operator.controller.shared.context import Body, OperatorContext
from oauth2_token_operator.controller.shared.ledger import RequestKey
from oauth2_token_operator.controller.shared.log_refs import about_request
from oauth2_token_operator.kube.api import KubeApiError
from oauth2_token_operator.manager.keyed_locks import KeyedLocks
from oauth2_token_operator.policies import plan
from oauth2_token_operator.policies.backoff import api_retry, api_wait
from oauth2_token_operator.policies.on_demand import pending_at
from oauth2_token_operator.policies.reasons import Reason

log = logging.getLogger(__name__)


class RequestReconciler:
    def __init__(self, ctx: OperatorContext, *, finalizer: str | None = None) -> None:
        self.ctx = ctx
        self.finalizer = finalizer
        """Requests are served only once this finalizer is on them (kopf adds it)."""
        self._locks: KeyedLocks[RequestKey] = KeyedLocks()
        """Each request's reconciles and its finalization one at a time."""
        self._background: set[asyncio.Future[Any]] = set()
        self.client_authentication: Callable[[RequestKey, bool, str], None] | None = None
        """Told whether the server accepted a client's credentials (`ClientReconciler`)."""
        self.records = RequestRecords(WriteGuard(ctx.clock, on_trip=ctx.metrics.write_loops.inc))
        """What is remembered in memory of each request, until it is finalized."""
        self.executor = RequestExecutor(
            ctx,
            background=self._background,
            client_authentication=lambda: self.client_authentication,
        )
        """Carries out each reconcile's plan (`executor`)."""

    # -- entry points ------------------------------------------------------------------

    async def reconcile_key(self, key: RequestKey) -> None:
        """Reconcile the request as the watch last saw it (scheduler, pokes)."""
        body = self.ctx.cache.request(key)
        if body is not None:
            await self.reconcile(body)

    def server_of(self, key: RequestKey) -> str | None:
        """The server (its token endpoint) the request's token requests last went to: its
        group in the scheduler, which gives each server a bounded share of the slots."""
        record = self.records.get(key)
        return None if record is None else record.server

    def secret_event(self, kind: str, secret: RequestKey, body: Body) -> None:
        """A token Secret's change, as the Secrets' informer reports it (on the event
        loop, in order): each request that controls it checks it, in a task of its own,
        so that a request busy with its token endpoint holds up no other Secret's."""
        owners = [
            (secret[0], ref["name"])
            for ref in body.get("metadata", {}).get("ownerReferences") or ()
            if ref.get("controller") and ref.get("kind") == "AccessTokenRequest"
        ]
        self.records.secret_observed(secret, body, owners)
        for owner in owners:
            task = asyncio.create_task(self.secret_changed(owner, secret, body))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def secret_changed(self, owner: RequestKey, secret: RequestKey, body: Body) -> None:
        """An owned Secret changed or went: its request checks it (self-healing), unless
        the event is our own write coming back (looked at once the owner's reconcile in
        progress, which may be that write's, has finished)."""
        async with self._locks(owner):
            record = self.records.get(owner)
            if record is not None and record.secret_came_back(secret[1], body):
                return
        if self.ctx.request_scheduler is not None:
            self.ctx.request_scheduler.poke(owner)

    async def reconcile(self, body: Body, *, watched: bool = False) -> None:
        """`watched`: `body` comes from the request's watch event; if it is our own
        status write coming back, there is nothing to do."""
        meta = body.get("metadata", {})
        if meta.get("deletionTimestamp"):
            return
        if self.finalizer is not None and self.finalizer not in (meta.get("finalizers") or ()):
            # Nothing is issued before the finalizer is on the object: a token can then
            # never outlive a request deleted in a hurry (and the two writes do not race).
            return
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        async with self._locks(key):
            # After the lock: the event may have overtaken the reply of the write it
            # echoes, and that write's reconcile holds the lock until it is recorded.
            record = self.records.of(key)
            if watched and record.status.came_back(body):
                return
            held_back = record.writes.held_until()
            if held_back is not None:
                if self.ctx.request_scheduler is not None:
                    self.ctx.request_scheduler.schedule(key, held_back)
                return
            current = self.ctx.cache.request(key)
            newest = record.status.newest(body, current) or body
            if self._backing_off(record, newest.get("metadata", {}).get("generation")):
                return
            request = Request.of(newest)
            try:
                outcome = await self._reconcile(request, record)
                outcome = outcome.merge(await restart_if_due(self.ctx, request, outcome))
                self.executor.observe(key, outcome)
                # A renew-now time still in the future: look again when it comes.
                pending = pending_at(request.annotations.get(RENEW_REQUESTED_AT), self.ctx.clock())
                outcome = outcome.merge(Outcome(wake_at=pending))
                patched = await write_status(self.ctx, record.status, request, outcome)
                if patched is not None:
                    record.writes.wrote("status")
            except KubeApiError as exc:
                self.ctx.metrics.reconcile_errors.labels(ACCESS_TOKEN_REQUEST.plural).inc()
                self._retry_after_api_error(request, record, exc)
                return
            except Exception:
                self.ctx.metrics.reconcile_errors.labels(ACCESS_TOKEN_REQUEST.plural).inc()
                raise
            finally:
                self.records.track_secret(record)
            record.api_backoff = None
            exchange.subject_held(self.ctx, key)  # exchanges waiting for its token go on
            scheduler = self.ctx.request_scheduler
            if scheduler is not None:
                if outcome.wake_at is None:
                    scheduler.cancel(request.key)
                else:
                    scheduler.schedule(request.key, outcome.wake_at)

    def _retry_after_api_error(
        self, request: Request, record: RequestRecord, exc: KubeApiError
    ) -> None:
        """A write the API server failed (the status patch, a Secret repair: a 500, a 429)
        leaves no trace that would bring the request back: plan the next attempt here."""
        record.api_backoff, delay = api_retry(
            record.api_backoff,
            exc.retry_after,
            now=self.ctx.clock(),
            generation=request.generation,
            backoff=self.executor.backoff(request),
        )
        log.warning("%s; trying again in %.1fs", exc, delay, extra=about_request(request.key))
        self._backing_off(record, request.generation)

    def _backing_off(self, record: RequestRecord, generation: int | None) -> bool:
        """Whether a failed API write of this request waits for its retry: events until
        then (our own Secret's, say) write nothing, and the retry stays planned."""
        until = api_wait(record.api_backoff, generation, self.ctx.clock())
        if until is not None and self.ctx.request_scheduler is not None:
            self.ctx.request_scheduler.schedule(record.key, until)
        return until is not None

    # -- the decision ------------------------------------------------------------------

    async def _reconcile(self, request: Request, record: RequestRecord) -> Outcome:
        """Gather what is known of the request once, ask the plan, carry it out."""
        now = self.ctx.clock()
        # Poked because what blocked it came (see `awaited`): no backoff for that failure.
        retry_now = self.ctx.awaited is not None and self.ctx.awaited.take_retry(request.key)
        try:
            resolved = await resolve(self.ctx, request)
        except Blocked as blocked:
            if blocked.reason == Reason.SECRET_CONFLICT:
                return self.executor.conflict(request, "", blocked.message)
            if blocked.reason == Reason.CLIENT_NOT_ALLOWED:
                await self._withdraw(request)
            backoff = self.executor.backoff(request)
            return plan.blocked(blocked.reason, blocked.message, now=now, backoff=backoff)

        self.executor.await_new_refresh_token(request, resolved)
        secret = self._secret(record, resolved.secret_name)
        if secret is not None and not is_owned_by(secret, request.uid):
            return self.executor.conflict(request, resolved.secret_name)
        held = self.ctx.ledger.current(request.key) or await adopt(
            self.ctx, request, secret, key_of(resolved.identity)
        )

        await self._retry_refresh_token(resolved)
        if held is not None:
            held = await revocation.revoke_if_requested(self.ctx, request, resolved, held, now)
        introspection = Outcome()
        if held is not None:
            held, introspection = await introspect_if_due(self.ctx, request, resolved, held, now)
        situation = gather(
            self.ctx, request, resolved, held, secret, now,
            retry_now=retry_now, server_asked_until=record.server_asked_until,
        )  # fmt: skip
        decided = plan.plan(situation)
        outcome = await self.executor.carry_out(
            request, record, resolved, situation, decided, held, secret
        )
        return outcome.merge(introspection)

    async def _retry_refresh_token(self, resolved: Resolved) -> None:
        writer = self.ctx.refresh_tokens
        subject = resolved.identity.subject
        if writer is not None and subject is not None and subject in writer.unpersisted:
            await writer.persist(writer.unpersisted[subject])

    # -- deletion ------------------------------------------------------------------------

    async def finalize(self, body: Body) -> None:
        """The request is being deleted: its token and Secret go (`revocation.finalize`),
        then everything kept about it here."""
        request = Request.of(body)
        async with self._locks(request.key):
            if self.ctx.request_scheduler is not None:
                self.ctx.request_scheduler.cancel(request.key)
            await revocation.finalize(self.ctx, request, self._secret_of(request.key))
        self.records.forget(request.key)
        self.ctx.metrics.forget_request(*request.key)

    async def revoke_all(self, client_key: RequestKey) -> None:
        """Revoke every token of the client's requests (`revocation.revoke_all`)."""
        await revocation.revoke_all(self.ctx, client_key)

    async def _withdraw(self, request: Request) -> None:
        """Its namespace may no longer use its client (`revocation.withdraw`)."""
        await revocation.withdraw(self.ctx, request, self._secret_of(request.key))

    # -- the Secret ----------------------------------------------------------------------

    def _secret(self, record: RequestRecord, name: str) -> Body | None:
        """The newest known version of the request's Secret `name`."""
        watched = self.ctx.cache.token_secret((record.key[0], name))
        return record.newest_secret(name, watched)

    def _secret_of(self, key: RequestKey) -> revocation.SecretOf:
        """`_secret` as `revocation` asks for it, for the request `key`."""

        def secret_of(namespace: str, name: str) -> Body | None:
            watched = self.ctx.cache.token_secret((namespace, name))
            record = self.records.get(key)
            return watched if record is None else record.newest_secret(name, watched)

        return secret_of
