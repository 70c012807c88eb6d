"""Reconciles one AccessTokenRequest: resolve its client, adopt or obtain its token,
keep its Secret intact, and report status. Level-triggered: every call looks at the
whole current state (the request, its Secret, the token held) and does only what the
policy chains ask for, so it is safe to call on any event, timer or restart.

The steps live beside it: `request_types` (the values passed around), `resolution`,
`adoption`, `introspection`, `facts` (what the policy chains see) and `request_status`;
this module decides, issues, handles failures, writes the Secret and finalizes.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sys
from collections.abc import Callable
from typing import Any, cast

from oauth2_token_operator.api import ACCESS_TOKEN_REQUEST, AccessTokenRequestSpec
from oauth2_token_operator.api.annotations import RENEW_REQUESTED_AT
from oauth2_token_operator.api.token_secret import TokenRecord, is_owned_by
from oauth2_token_operator.client_config import (
    ClientConfigError,
    SecretKey,
    collect_values,
    referenced_keys,
)
from oauth2_token_operator.controller import exchange, grants
from oauth2_token_operator.controller.adoption import adopt, key_for_spec, key_of
from oauth2_token_operator.controller.awaited import REQUEST
from oauth2_token_operator.controller.context import Body, OperatorContext, stored
from oauth2_token_operator.controller.facts import (
    desired_token_secret,
    request_facts,
    revocation_requested,
)
from oauth2_token_operator.controller.freezing import thawed
from oauth2_token_operator.controller.freshness import Echoes, Freshness, changed_only_status
from oauth2_token_operator.controller.introspection import introspect_if_due, introspection_due
from oauth2_token_operator.controller.ledger import Held, RequestKey
from oauth2_token_operator.controller.log_refs import about_request
from oauth2_token_operator.controller.request_status import (
    GRANT_REFUSED,
    readiness,
    settled,
    waiting,
    write_status,
)
from oauth2_token_operator.controller.request_types import (
    CLIENT_NOT_ALLOWED,
    SECRET_CONFLICT,
    Blocked,
    Outcome,
    Request,
    Resolved,
    not_ready,
    secret_conflict,
    time_or_unknown,
)
from oauth2_token_operator.controller.resolution import resolve, spec_or_none
from oauth2_token_operator.controller.revocation import revoke_held
from oauth2_token_operator.controller.rollout_restarts import restart_if_due
from oauth2_token_operator.controller.secret_writer import SecretConflictError, write_token_secret
from oauth2_token_operator.controller.write_guard import WriteGuard
from oauth2_token_operator.kube.api import KubeApiError
from oauth2_token_operator.manager import AccessToken
from oauth2_token_operator.manager.keyed_locks import KeyedLocks
from oauth2_token_operator.oauth2.client_auth import ClientConfig
from oauth2_token_operator.oauth2.errors import InvalidGrantError
from oauth2_token_operator.oauth2.metadata import IssuerConfig
from oauth2_token_operator.policies import checks
from oauth2_token_operator.policies.conditions import ISSUING, READY, ConditionUpdate
from oauth2_token_operator.policies.failures import ApiBackoff, Failure, classify, retry_delay
from oauth2_token_operator.policies.on_demand import pending_at, requested_at
from oauth2_token_operator.policies.renewal import renewal_min_remaining
from oauth2_token_operator.util.rfc3339 import parse_rfc3339, rfc3339

log = logging.getLogger(__name__)

NOT_FOR_REGISTERED = frozenset(
    {"Renewing", "Expired", "RenewalRequested", "TokenInactive", "RevocationRequested"}
)
"""Triggers that cannot be acted on for a registered token (nobody can renew it)."""


class RequestReconciler:
    def __init__(self, ctx: OperatorContext, *, finalizer: str | None = None) -> None:
        self.ctx = ctx
        self.finalizer = finalizer
        """Requests are served only once this finalizer is on them (kopf adds it)."""
        self._locks: KeyedLocks[RequestKey] = KeyedLocks()
        """Each request's reconciles and its finalization one at a time."""
        self._background: set[asyncio.Future[Any]] = set()
        self._api_backoff: dict[RequestKey, ApiBackoff] = {}
        """Per request after a failed API write (see `_retry_after_api_error`)."""
        self._server_asked: dict[RequestKey, float] = {}
        """Per request whose last failed issuance carried the server's `Retry-After`: when
        it ends. It holds for a new spec too (see `_backoff_until`); in memory only."""
        self._servers: dict[RequestKey, str] = {}
        """Per request, the server its token requests last went to (`server_of`)."""
        self.client_authentication: Callable[[RequestKey, bool, str], None] | None = None
        """Told whether the server accepted a client's credentials (`ClientReconciler`)."""
        self.write_guard = WriteGuard(ctx.clock, on_trip=ctx.metrics.write_loops.inc)
        """Holds back a request that writes in a loop (a bug; see `write_guard`)."""
        views = ctx.views
        self.request_versions = Freshness(lambda key: stored(views.requests, key))
        """Our status writes, until the watch shows them (see `freshness`)."""
        self.secret_versions = Freshness(lambda key: stored(views.token_secrets, key))
        """Our Secret writes, until the watch shows them."""
        self.status_echoes = Echoes()
        """Our status patches, until their watch events come back."""
        self.secret_echoes = Echoes()
        """Our Secret writes, until their watch events come back."""

    # -- entry points ------------------------------------------------------------------

    async def reconcile_key(self, key: RequestKey) -> None:
        """Reconcile the request as the watch last saw it (scheduler, pokes)."""
        body = stored(self.ctx.views.requests, key)
        if body is not None:
            await self.reconcile(body)

    def server_of(self, key: RequestKey) -> str | None:
        """The server (its token endpoint) the request's token requests last went to: its
        group in the scheduler, which gives each server a bounded share of the slots."""
        return self._servers.get(key)

    def secret_event(self, kind: str, key: object, frozen: object) -> None:
        """A token Secret's change, as the Secrets' informer reports it (on the event
        loop, in order): each request that controls it checks it, in a task of its own,
        so that a request busy with its token endpoint holds up no other Secret's."""
        secret = cast(RequestKey, key)
        body: Body = thawed(frozen)
        self.secret_versions.observed(secret, body)
        for ref in body.get("metadata", {}).get("ownerReferences") or ():
            if ref.get("controller") and ref.get("kind") == "AccessTokenRequest":
                task = asyncio.create_task(
                    self.secret_changed((secret[0], ref["name"]), secret, body)
                )
                self._background.add(task)
                task.add_done_callback(self._background.discard)

    async def secret_changed(self, owner: RequestKey, secret: RequestKey, body: Body) -> None:
        """An owned Secret changed or went: its request checks it (self-healing), unless
        the event is our own write coming back (looked at once the owner's reconcile in
        progress, which may be that write's, has finished)."""
        async with self._locks(owner):
            if self.secret_echoes.came_back(secret, body):
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
            if watched and self.status_echoes.came_back(key, body):
                return
            held_back = self.write_guard.held_until(key)
            if held_back is not None:
                if self.ctx.request_scheduler is not None:
                    self.ctx.request_scheduler.schedule(key, held_back)
                return
            newest = self.request_versions.newest(key, body) or body
            if self._backing_off(key, newest.get("metadata", {}).get("generation")):
                return
            request = Request.of(newest)
            try:
                outcome = await self._reconcile(request)
                outcome = outcome.merge(await restart_if_due(self.ctx, request, outcome))
                self._observe(key, outcome)
                # A renew-now time still in the future: look again when it comes.
                pending = pending_at(request.annotations.get(RENEW_REQUESTED_AT), self.ctx.clock())
                outcome = outcome.merge(Outcome(wake_at=pending))
                patched = await write_status(self.ctx, self.request_versions, request, outcome)
                if patched is not None:
                    self.write_guard.wrote(key, "status")
                    if changed_only_status(request.body, patched):
                        self.status_echoes.wrote(key, patched)
            except KubeApiError as exc:
                self.ctx.metrics.reconcile_errors.labels(ACCESS_TOKEN_REQUEST.plural).inc()
                self._retry_after_api_error(request, exc)
                return
            except Exception:
                self.ctx.metrics.reconcile_errors.labels(ACCESS_TOKEN_REQUEST.plural).inc()
                raise
            self._api_backoff.pop(key, None)
            exchange.subject_held(self.ctx, key)  # exchanges waiting for its token go on
            scheduler = self.ctx.request_scheduler
            if scheduler is not None:
                if outcome.wake_at is None:
                    scheduler.cancel(request.key)
                else:
                    scheduler.schedule(request.key, outcome.wake_at)

    def _observe(self, key: RequestKey, outcome: Outcome) -> None:
        """The request's gauges follow the decision: the held token's expiry, the renewal
        schedule and the Ready condition, as the status will say them."""
        metrics = self.ctx.metrics
        held = self.ctx.ledger.current(key)
        if held is not None and held.token.expires_at is not None:
            metrics.token_expiry.set(*key, held.token.expires_at)
        if "renewalTime" in outcome.status:
            renewal = outcome.status["renewalTime"]
            if renewal is None:
                metrics.token_renewal.forget(*key)
            else:
                metrics.token_renewal.set(*key, parse_rfc3339(renewal))
        for update in outcome.conditions:
            if update.type == READY:
                metrics.request_ready.set(*key, update.status == "True", update.reason)

    def _retry_after_api_error(self, request: Request, exc: KubeApiError) -> None:
        """A write the API server failed (the status patch, a Secret repair: a 500, a 429)
        leaves no trace that would bring the request back, so plan the next attempt
        here: backing off per request, never sooner than the server's Retry-After."""
        previous = self._api_backoff.get(request.key)
        attempts = (previous.attempts if previous is not None else 0) + 1
        delay = self._retry_delay(request, attempts, exc.retry_after)
        now = self.ctx.clock()
        self._api_backoff[request.key] = ApiBackoff(
            attempts,
            retry_at=now + delay,
            not_before=now + (exc.retry_after or 0.0),
            generation=request.generation,
        )
        log.warning("%s; trying again in %.1fs", exc, delay, extra=about_request(request.key))
        self._backing_off(request.key, request.generation)

    def _retry_delay(self, request: Request, attempts: int, retry_after: float | None) -> float:
        """The operator's backoff for a request's `attempts`-th failure in a row."""
        return retry_delay(
            attempts,
            base=self.ctx.config.retry_base_delay,
            cap=self.ctx.config.retry_max_delay,
            seed=request.uid,
            retry_after=retry_after,
        )

    def _backing_off(self, key: RequestKey, generation: int | None) -> bool:
        """Whether a failed API write of this request waits for its retry: events until
        then (our own Secret's, say) write nothing, and the retry stays planned. A new
        spec (`generation`) waits only for the server's `Retry-After`."""
        pending = self._api_backoff.get(key)
        if pending is None:
            return False
        until = pending.until(generation)
        if self.ctx.clock() >= until:
            return False
        if self.ctx.request_scheduler is not None:
            self.ctx.request_scheduler.schedule(key, until)
        return True

    # -- the decision ------------------------------------------------------------------

    async def _reconcile(self, request: Request) -> Outcome:
        now = self.ctx.clock()
        # Poked because what blocked it came (see `awaited`): no backoff for that failure.
        retry_now = self.ctx.awaited is not None and self.ctx.awaited.take_retry(request.key)
        try:
            resolved = await resolve(self.ctx, request)
        except Blocked as blocked:
            if blocked.reason == SECRET_CONFLICT:
                return self._conflict(request, "", blocked.message)
            if blocked.reason == CLIENT_NOT_ALLOWED:
                await self._withdraw(request)
            # Poked when what it misses comes (`awaited`), and looked at again now and then.
            wake_at = now + self.ctx.config.retry_max_delay
            return Outcome(conditions=[not_ready(blocked.reason, blocked.message)], wake_at=wake_at)

        self._await_new_refresh_token(request, resolved)
        secret = self._secret(request.namespace, resolved.secret_name)
        if secret is not None and not is_owned_by(secret, request.uid):
            return self._conflict(request, resolved.secret_name)
        held = self.ctx.ledger.current(request.key) or await adopt(
            self.ctx, request, secret, key_of(resolved.identity)
        )

        await self._retry_refresh_token(resolved)
        if held is not None:
            held = await self._revoke_if_requested(request, resolved, held, now)
        introspection = Outcome()
        if held is not None:
            held, introspection = await introspect_if_due(self.ctx, request, resolved, held, now)
        facts = request_facts(self.ctx, request, resolved, held, secret, now)
        trigger = checks.evaluate(checks.ISSUANCE_CHAIN, facts)
        if (
            trigger is not None
            and held is not None
            and resolved.identity.grant not in grants.RENEWABLE
            and trigger.reason in NOT_FOR_REGISTERED
        ):
            trigger = None  # readiness reports it
        if trigger is not None:
            retry_at = self._backoff_until(request, now, retry_now=retry_now)
            if retry_at is not None and checks.waits_for_backoff(trigger):
                # Kept for the next look: a new spec's time can be sooner than the old one's.
                planned = Outcome(status={"nextAttemptTime": rfc3339(retry_at)})
                outcome = waiting(request, held, facts, trigger, retry_at).merge(planned)
                return outcome.merge(introspection)
            outcome = await self._issue(request, resolved, held, secret, trigger, now)
            return outcome.merge(introspection)

        assert held is not None  # no trigger means a token is held
        repair = checks.evaluate(checks.SECRET_CHAIN, facts)
        if repair is not None:
            try:
                await self._write_secret(request, resolved, held, secret)
            except SecretConflictError:
                return self._conflict(request, resolved.secret_name)
            self.ctx.post_event(
                request.body,
                type="Normal",
                reason="SecretRestored",
                message=f"Secret {resolved.secret_name} written again ({repair.reason})",
            )
            facts = request_facts(self.ctx, request, resolved, held, None, now, secret_intact=True)
        return settled(self.ctx, request, resolved, held, facts).merge(introspection)

    async def _revoke_if_requested(
        self, request: Request, resolved: Resolved, held: Held, now: float
    ) -> Held:
        """The client's revoke-all annotation names a time after this token's issue:
        revoke it now (for every request sharing it), then the issuance chain replaces
        it. Revocation comes first because that is what was asked (say, after a leak);
        a token already revoked, or inactive, is not revoked again."""
        if held.token.active is False or not revocation_requested(resolved, held, now):
            return held
        why = "revoke-all was requested on its OAuth2Client"
        await self._revoke_for_every_holder(request.body, held, why=why)
        # The tokens it superseded are still valid at the server and still in the store,
        # where the replacement would find them: revoke them too, never publish them.
        asked = requested_at(resolved.revoke_all_requested_at, now)
        assert asked is not None  # revocation_requested said so
        for older in await self.ctx.manager.store.find_access_tokens(held.token.key):
            if older.issued_at < asked and older.active is not False:
                superseded = Held(token=older, record=held.record)
                await self._revoke_for_every_holder(request.body, superseded, why=why)
        for key in self.ctx.ledger.holders_of(held):
            if key != request.key and self.ctx.request_scheduler is not None:
                self.ctx.request_scheduler.poke(key)
        return self.ctx.ledger.current(request.key) or held

    async def _retry_refresh_token(self, resolved: Resolved) -> None:
        writer = self.ctx.refresh_tokens
        subject = resolved.identity.subject
        if writer is not None and subject is not None and subject in writer.unpersisted:
            await writer.persist(writer.unpersisted[subject])

    def _backoff_until(
        self, request: Request, now: float, *, retry_now: bool = False
    ) -> float | None:
        """While failures back off, the next attempt's time (`status.nextAttemptTime`)."""
        if not request.failed_attempts:
            return None
        if retry_now or request.status.get("observedGeneration") != request.generation:
            # The spec changed, or what the failure missed came (`retry_now`): try at
            # once, or once the server's wait is over.
            asked = self._server_asked.get(request.key)
            return asked if asked is not None and asked > now else None
        planned = request.status.get("nextAttemptTime")
        try:
            retry_at = parse_rfc3339(planned) if planned else None
        except ValueError:
            retry_at = None
        return retry_at if retry_at is not None and retry_at > now else None

    # -- issuance ------------------------------------------------------------------------

    async def _issue(
        self,
        request: Request,
        resolved: Resolved,
        held: Held | None,
        secret: Body | None,
        trigger: checks.Verdict,
        now: float,
    ) -> Outcome:
        source_value = resolved.source_value
        try:
            if resolved.identity.grant == "refresh_token":
                source = grants.source_ref(resolved.spec)
                assert source is not None
                source_value = await grants.read_source(
                    self.ctx.credentials, request.namespace, source
                )
                rejected = request.status.get("rejectedRefreshToken")
                if rejected is not None and rejected == grants.digest(source_value):
                    return self._still_rejected(request, held, now)
            issuer, client = await self.ctx.credentials.configs(
                resolved.client_namespace, resolved.spec.client_ref.name, resolved.client_spec
            )
            server = self.ctx.manager.server(issuer, client).endpoint_key()
            self._servers[request.key] = sys.intern(server)
            token = await self._obtain(
                request, resolved, issuer, client, held, trigger, now, source_value
            )
        except Exception as exc:
            if self.ctx.awaited is not None:  # a missing Secret or ConfigMap: read it again soon
                self.ctx.awaited.issuance_failed(
                    request.key,
                    resolved.spec,
                    resolved.client_namespace,
                    resolved.client_spec,
                    exc,
                )
            failure = classify(exc)
            if failure.reason == "InvalidClient":
                self._client_authenticated(request, resolved, False, failure.message)
                await self._await_new_credentials(request, resolved)
            failed = self._failed(request, resolved, held, trigger, failure, now)
            refreshing = resolved.identity.grant == "refresh_token"
            if isinstance(exc, InvalidGrantError) and refreshing and source_value is not None:
                # Remembered in status: not sent again, after a restart either.
                rejected = grants.digest(source_value)
                failed.status["rejectedRefreshToken"] = rejected
                self._await_new_refresh_token(request, resolved, rejected)
            return failed
        self._server_asked.pop(request.key, None)
        self._client_authenticated(request, resolved, True, "")

        revision = int(request.status.get("revision") or 0) + 1
        record = TokenRecord(
            issuer=token.key.issuer,
            client_id=token.key.client_id,
            client=resolved.identity.client,
            subject=resolved.identity.subject,
            requested_scopes=resolved.identity.scopes,
            resources=resolved.identity.resources,
            audience=resolved.identity.audience,
            issued_at=token.obtained_at,
            expires_at=token.expires_at,
            issued_for=resolved.identity.fingerprint(),
            revision=revision,
        )
        new = Held(token=token, record=record)
        try:
            await self._write_secret(request, resolved, new, secret)
        except SecretConflictError:
            return self._conflict(request, resolved.secret_name)
        except KubeApiError as exc:  # the API server failed: retry like a token failure
            return self._failed(request, resolved, held, trigger, classify(exc), now)

        previous = self.ctx.ledger.hold(request.key, new)
        if (
            previous is not None
            and trigger.reason == "SpecChanged"
            and resolved.identity.grant in grants.RENEWABLE
        ):
            self._revoke_if_unheld(request, previous)
        first_issue = held is None and revision == 1
        kind = "issued" if first_issue else "renewed"
        self.ctx.metrics.issuances.labels(kind, "ok", client_label(resolved)).inc()
        if first_issue:
            created = request.body.get("metadata", {}).get("creationTimestamp")
            if created:
                self.ctx.metrics.time_to_ready.observe(max(0.0, now - parse_rfc3339(created)))
        if first_issue or checks.announces_renewal(
            trigger, failed_attempts=request.failed_attempts
        ):
            self.ctx.post_event(
                request.body,
                type="Normal",
                reason="Issued" if first_issue else "Renewed",
                message=f"{'issued' if first_issue else 'renewed'} ({trigger.reason}); "
                f"expires at {time_or_unknown(token.expires_at)}",
            )
        facts = request_facts(
            self.ctx, request, resolved, new, None, self.ctx.clock(), secret_intact=True
        )
        outcome = settled(self.ctx, request, resolved, new, facts)
        outcome.status.update(
            revision=revision,
            failedAttempts=0,
            lastFailureTime=None,
            nextAttemptTime=None,
            rejectedRefreshToken=None,
        )
        outcome.status.setdefault("subject", None)  # a new token: the old one's is stale
        # The new token's first introspection: no later event would plan it (this
        # reconcile's own writes come back as echoes).
        return outcome.merge(Outcome(wake_at=introspection_due(request, resolved, new)))

    async def _obtain(
        self,
        request: Request,
        resolved: Resolved,
        issuer: IssuerConfig,
        client: ClientConfig,
        held: Held | None,
        trigger: checks.Verdict,
        now: float,
        source_value: str | None,
    ) -> AccessToken:
        min_remaining = 0.0
        if held is not None and trigger.reason in ("Renewing", "RenewalRequested"):
            # A token that outlives the current one: a fresher shared one, or a new one.
            policy = self.ctx.manager.config.validity
            min_remaining = renewal_min_remaining(held.token, now, policy)
        if resolved.identity.grant == "token_exchange":
            return await exchange.exchange(
                self.ctx, request, resolved, issuer, client, min_remaining=min_remaining
            )
        return await grants.obtain(
            self.ctx.manager,
            resolved.identity,
            source_value=source_value,
            issuer=issuer,
            client=client,
            min_remaining=min_remaining,
        )

    def _failed(
        self,
        request: Request,
        resolved: Resolved,
        held: Held | None,
        trigger: checks.Verdict,
        failure: Failure,
        now: float,
    ) -> Outcome:
        attempts = request.failed_attempts + 1
        if failure.retry_after:
            self._server_asked[request.key] = math.ceil(now + failure.retry_after)
        else:
            self._server_asked.pop(request.key, None)
        kind = "renewed" if held is not None else "issued"
        self.ctx.metrics.issuances.labels(kind, failure.reason, client_label(resolved)).inc()
        if failure.retry:
            # Rounded up to the whole second `status.nextAttemptTime` keeps: the reconcile
            # that reads it back (`_backoff_until`) must not find it due early.
            retry_at = math.ceil(now + self._retry_delay(request, attempts, failure.retry_after))
            when = f"; retrying at {rfc3339(retry_at)}"
        else:
            # Trying again cannot help until something changes (a new refresh token, the
            # spec, the client): look again rarely, never in a loop.
            retry_at = math.ceil(now + self.ctx.config.retry_max_delay)
            when = (
                "; this needs a change (the spec, the client, or the Secret it reads);"
                f" checking again at {rfc3339(retry_at)}"
            )
        message = f"{trigger.message}: {failure.message}{when}"
        self.ctx.post_event(
            request.body,
            type="Warning",
            reason="RenewalFailed" if held is not None else "IssuanceFailed",
            message=message,
        )
        log.warning("%s (%s)", failure.reason, message, extra=about_request(request.key))
        if held is not None:
            facts = request_facts(self.ctx, request, resolved, held, None, now, secret_intact=True)
            ready = readiness(held, facts)
        else:
            ready = not_ready(failure.reason, message)
        if failure.reason in GRANT_REFUSED:
            ready = not_ready(failure.reason, message)
        expiry = self._expiry_wake(held)  # Ready must turn False on time meanwhile
        return Outcome(
            status={
                "failedAttempts": attempts,
                "lastFailureTime": rfc3339(now),
                "nextAttemptTime": rfc3339(retry_at),
                "observedGeneration": request.generation,
            },
            conditions=[
                ready,
                ConditionUpdate(ISSUING, "True", failure.reason, message),
            ],
            wake_at=retry_at if expiry is None else min(retry_at, expiry),
        )

    def _client_authenticated(
        self, request: Request, resolved: Resolved, accepted: bool, message: str
    ) -> None:
        if self.client_authentication is not None:
            client = (resolved.client_namespace, resolved.spec.client_ref.name)
            where = f"{message} (AccessTokenRequest {request.namespace}/{request.name})"
            self.client_authentication(client, accepted, where if message else "")

    async def _await_new_credentials(self, request: Request, resolved: Resolved) -> None:
        """The server refused the client's credentials: a change to any Secret key they
        come from is looked for every few seconds (`awaited`), so a fixed credential is
        used within seconds, not after the failure's backoff."""
        if self.ctx.awaited is None:
            return
        namespace = resolved.client_namespace
        keys = [key for key in referenced_keys(resolved.client_spec) if key.kind == "Secret"]
        try:
            values = collect_values(keys, await self.ctx.credentials.objects(namespace, keys))
        except (ClientConfigError, KubeApiError):
            return  # then it is missing, and waited for as such
        for key in keys:
            digest = grants.digest(values[key].strip())
            self.ctx.awaited.awaiting_change((REQUEST, request.key), namespace, key, digest)

    def _await_new_refresh_token(
        self, request: Request, resolved: Resolved, rejected: str | None = None
    ) -> None:
        """While the server's refusal of the refresh token in the Secret stands, a new
        one there is looked for every few seconds (`awaited`), not at the next backoff."""
        rejected = rejected or request.status.get("rejectedRefreshToken")
        source = grants.source_ref(resolved.spec)
        if rejected and self.ctx.awaited is not None and resolved.identity.grant == "refresh_token":
            assert source is not None
            key = SecretKey("Secret", source.name, source.key)
            self.ctx.awaited.awaiting_change(
                (REQUEST, request.key), request.namespace, key, rejected
            )

    def _still_rejected(self, request: Request, held: Held | None, now: float) -> Outcome:
        """The Secret still holds the refresh token the server refused (`status` says so,
        across restarts): it is not sent again, and is looked at rarely for a new one."""
        retry_at = math.ceil(now + self.ctx.config.retry_max_delay)
        message = (
            "the server refused the refresh token in the Secret, and it is not sent again;"
            " this needs a change: a new refresh token there (used within seconds)"
        )
        expiry = self._expiry_wake(held)
        return Outcome(
            status={
                "nextAttemptTime": rfc3339(retry_at),
                "observedGeneration": request.generation,
            },
            conditions=[
                not_ready("RefreshTokenRejected", message),
                ConditionUpdate(ISSUING, "True", "RefreshTokenRejected", message),
            ],
            wake_at=retry_at if expiry is None else min(retry_at, expiry),
        )

    @staticmethod
    def _expiry_wake(held: Held | None) -> float | None:
        """The held token's expiry, if known."""
        if held is None or held.record.expires_at is None:
            return None
        return held.record.expires_at

    def _revoke_if_unheld(self, request: Request, previous: Held) -> None:
        """A spec change replaced the token: revoke the old one once nobody holds it."""
        if not self.ctx.ledger.is_held(previous):
            task = asyncio.ensure_future(
                revoke_held(self.ctx, request.body, previous, why="replaced after a spec change")
            )
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    # -- deletion ------------------------------------------------------------------------

    async def finalize(self, body: Body) -> None:
        """The request is being deleted: revoke its token unless another request holds it
        or revocation is off, then delete its Secret. Never raises for the server."""
        request = Request.of(body)
        async with self._locks(request.key):
            if self.ctx.request_scheduler is not None:
                self.ctx.request_scheduler.cancel(request.key)
            spec, secret_name, secret, held = await self._leaving(request)
            self.ctx.ledger.release(request.key)
            if held is not None and not self.ctx.ledger.is_held(held):
                if self._revoke_on_delete(spec, held):
                    refresh_token = await self._grant_to_end(request, spec, held)
                    await revoke_held(
                        self.ctx, body, held, why="the request was deleted",
                        refresh_token=refresh_token,
                    )  # fmt: skip
                else:
                    await self.ctx.manager.store.delete_access_token(
                        held.token.key.issuer, held.token.value
                    )
            if secret is not None:
                await self.ctx.kube.delete_secret(
                    request.namespace, secret_name, uid=secret["metadata"]["uid"]
                )
        self._api_backoff.pop(request.key, None)
        self._server_asked.pop(request.key, None)
        self._servers.pop(request.key, None)
        self.write_guard.forget(request.key)
        self.ctx.metrics.forget_request(*request.key)
        self.request_versions.forget(request.key)
        self.secret_versions.forget((request.namespace, secret_name))
        self.status_echoes.forget(request.key)
        self.secret_echoes.forget((request.namespace, secret_name))

    async def revoke_all(self, client_key: RequestKey) -> None:
        """Revoke every token held by requests using the client (the seed's `delete_all`);
        the requests then hold an inactive token and get a new one when they can."""
        users = list(self.ctx.views.requests_by_client.get(client_key) or ())
        revoked: set[tuple[str, str]] = set()
        for key in users:
            held = self.ctx.ledger.current(key)
            body = stored(self.ctx.views.requests, key)
            if held is None or body is None:
                continue
            token_id = (held.token.key.issuer, held.token.value)
            if token_id not in revoked:
                revoked.add(token_id)
                await self._revoke_for_every_holder(
                    body, held, why="revoke-all on its OAuth2Client"
                )

    async def _revoke_for_every_holder(self, body: Body, held: Held, *, why: str) -> None:
        """Revoke `held` for every request holding it (they then want a new token). It is
        marked inactive for all of them and leaves the store before the first await, so
        that requests sharing it, reconciled meanwhile, neither revoke it again nor get
        it back from the store as their "new" token."""
        self.ctx.ledger.deactivate(held)
        await self.ctx.manager.store.delete_access_token(held.token.key.issuer, held.token.value)
        await revoke_held(self.ctx, body, held, why=why)

    async def _grant_to_end(
        self, request: Request, spec: AccessTokenRequestSpec | None, held: Held
    ) -> str | None:
        """A deleted refresh_token request ends the user's grant: the refresh token to
        revoke (the newest the operator holds, else the one in the user's Secret), unless
        another request still refreshes with it."""
        if spec is None or spec.grant != "refresh_token":
            return None
        if self.ctx.ledger.holds_subject(held.token.key):
            return None
        held_refresh = await self.ctx.manager.store.find_refresh_tokens(held.token.key)
        if held_refresh:
            return max(held_refresh, key=lambda rt: rt.obtained_at).value
        source = grants.source_ref(spec)
        assert source is not None
        try:
            return await grants.read_source(self.ctx.credentials, request.namespace, source)
        except (ClientConfigError, KubeApiError):
            return None  # the user's Secret is gone (or unreadable): the access token only

    def _revoke_on_delete(self, spec: AccessTokenRequestSpec | None, held: Held) -> bool:
        if spec is not None and spec.revoke_on_delete is not None:
            return spec.revoke_on_delete
        namespace, _, name = held.record.client.partition("/")
        client_body = stored(self.ctx.views.clients, (namespace, name))
        if client_body is None:
            return True
        revoke = (client_body.get("spec") or {}).get("revokeOnDelete", True)
        return bool(revoke)

    async def _leaving(
        self, request: Request
    ) -> tuple[AccessTokenRequestSpec | None, str, Body | None, Held | None]:
        """For a request that lets its token go (deleted, or no longer allowed its client):
        its spec (if valid), its Secret's name, that Secret if the request owns it, and
        the token it holds, adopted from that Secret when the operator has none yet."""
        spec = spec_or_none(request.body)
        secret_name = (spec.secret_name if spec else None) or request.name
        secret = self._secret(request.namespace, secret_name)
        if secret is not None and not is_owned_by(secret, request.uid):
            secret = None
        held = self.ctx.ledger.current(request.key) or await adopt(
            self.ctx, request, secret, key_for_spec(self.ctx, request, spec)
        )
        return spec, secret_name, secret, held

    async def _withdraw(self, request: Request) -> None:
        """The request's namespace may no longer use its client (its `allowedNamespaces`
        changed): the token is no longer served to it. Its Secret goes, and the token is
        revoked once no request that may still use it holds it."""
        _, secret_name, secret, held = await self._leaving(request)
        if held is None and secret is None:
            return
        self.ctx.ledger.release(request.key)
        why = "its namespace may no longer use the OAuth2Client"
        if held is not None and not self.ctx.ledger.is_held(held):
            await revoke_held(self.ctx, request.body, held, why=why)
        if secret is not None:
            await self.ctx.kube.delete_secret(
                request.namespace, secret_name, uid=secret["metadata"]["uid"]
            )
            self.ctx.post_event(
                request.body, type="Warning", reason="TokenWithdrawn",
                message=f"Secret {secret_name} deleted: {why}",
            )  # fmt: skip

    def _conflict(self, request: Request, secret_name: str, message: str | None = None) -> Outcome:
        """A SecretConflict: said once in an Event when it begins, and in the conditions."""
        outcome = secret_conflict(secret_name, message)
        ready = next(
            (c for c in request.status.get("conditions") or () if c.get("type") == "Ready"), None
        )
        if ready is None or ready.get("reason") != SECRET_CONFLICT:
            self.ctx.post_event(
                request.body, type="Warning", reason=SECRET_CONFLICT,
                message=outcome.conditions[0].message,
            )  # fmt: skip
        return outcome

    # -- the Secret ----------------------------------------------------------------------

    def _secret(self, namespace: str, name: str) -> Body | None:
        watched = stored(self.ctx.views.token_secrets, (namespace, name))
        return self.secret_versions.newest((namespace, name), watched)

    async def _write_secret(
        self, request: Request, resolved: Resolved, held: Held, secret: Body | None
    ) -> None:
        desired = desired_token_secret(self.ctx, request, resolved, held)
        written = await write_token_secret(self.ctx.kube, desired, secret, owner_uid=request.uid)
        self.write_guard.wrote(request.key, f"Secret {resolved.secret_name}")
        self.secret_versions.wrote((request.namespace, resolved.secret_name), written)
        # A create, or a replace guarded by the resourceVersion read: the reply is what
        # this reconcile wrote, nobody else's change.
        self.secret_echoes.wrote((request.namespace, resolved.secret_name), written)


def client_label(resolved: Resolved) -> str:
    """The OAuth2Client as a metric label, `namespace/name` (one per client object)."""
    return f"{resolved.client_namespace}/{resolved.spec.client_ref.name}"
