"""Carries out a request's plan (`policies.plan`): obtains the token over HTTP (through
the manager), writes the Secret, and says what the plan names in Events, metrics and
the outcome the status is written from. It decides nothing the plan decides: what a
failure means, when to try again, whether a renewal is news, all come from the plan.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sys
from collections.abc import Callable
from typing import Any

from oauth2_token_operator.api.token_secret import TokenRecord
from oauth2_token_operator.client_config import (
    ClientConfigError,
    SecretKey,
    collect_values,
    referenced_keys,
)
from oauth2_token_operator.controller.request import exchange, revocation
from oauth2_token_operator.controller.request.facts import desired_token_secret, request_facts
from oauth2_token_operator.controller.request.introspection import introspection_due
from oauth2_token_operator.controller.request.record import RequestRecord
from oauth2_token_operator.controller.request.secret_writer import (
    SecretConflictError,
    write_token_secret,
)
from oauth2_token_operator.controller.request.status import readiness, settled, waiting
from oauth2_token_operator.controller.request.values import (
    Outcome,
    Request,
    Resolved,
    secret_conflict,
    time_or_unknown,
)
from oauth2_token_operator.controller.shared import grants
from oauth2_token_operator.controller.shared.awaited import REQUEST
from oauth2_token_operator.controller.shared.context import Body, OperatorContext
from oauth2_token_operator.controller.shared.ledger import Held, RequestKey
from oauth2_token_operator.controller.shared.log_refs import about_request
from oauth2_token_operator.kube.api import KubeApiError
from oauth2_token_operator.manager import AccessToken
from oauth2_token_operator.oauth2.client_auth import ClientConfig
from oauth2_token_operator.oauth2.errors import InvalidGrantError
from oauth2_token_operator.oauth2.metadata import IssuerConfig
from oauth2_token_operator.policies import checks, plan
from oauth2_token_operator.policies.backoff import Backoff
from oauth2_token_operator.policies.conditions import READY
from oauth2_token_operator.policies.failures import Failure, classify
from oauth2_token_operator.policies.reasons import Reason
from oauth2_token_operator.policies.renewal import renewal_min_remaining
from oauth2_token_operator.util.rfc3339 import parse_rfc3339, rfc3339

log = logging.getLogger(__name__)

ClientAuthenticated = Callable[[RequestKey, bool, str], None]
"""Told whether the server accepted a client's credentials (`ClientReconciler`)."""


class RequestExecutor:
    """The hands of `RequestReconciler`; what it remembers of the request is in the
    `RequestRecord` each call is given."""

    def __init__(
        self,
        ctx: OperatorContext,
        *,
        background: set[asyncio.Future[Any]],
        client_authentication: Callable[[], ClientAuthenticated | None],
    ) -> None:
        self.ctx = ctx
        self.background = background
        self.client_authentication = client_authentication

    def backoff(self, request: Request) -> Backoff:
        config = self.ctx.config
        return Backoff(config.retry_base_delay, config.retry_max_delay, request.uid)

    async def carry_out(
        self,
        request: Request,
        record: RequestRecord,
        resolved: Resolved,
        situation: plan.Situation,
        decided: plan.Plan,
        held: Held | None,
        secret: Body | None,
    ) -> Outcome:
        facts = situation.facts
        if decided.action is plan.Action.WAIT:
            assert decided.why is not None
            assert decided.retry_at is not None
            # Kept for the next look: a new spec's time can be sooner than the old one's.
            planned = Outcome(status={"nextAttemptTime": rfc3339(decided.retry_at)})
            return waiting(request, held, facts, decided.why, decided.retry_at).merge(planned)
        if decided.action is plan.Action.ISSUE:
            return await self.issue(request, record, resolved, held, secret, decided, facts)
        assert held is not None  # no trigger means a token is held
        if decided.action is plan.Action.REPAIR_SECRET:
            assert decided.why is not None
            try:
                await self.write_secret(request, record, resolved, held, secret)
            except SecretConflictError:
                return self.conflict(request, resolved.secret_name)
            self.ctx.post_event(
                request.body,
                type="Normal",
                reason="SecretRestored",
                message=f"Secret {resolved.secret_name} written again ({decided.why.reason})",
            )
            facts = dataclasses.replace(facts, secret=checks.INTACT_SECRET)
        return settled(self.ctx, request, resolved, held, facts)

    # -- issuance ------------------------------------------------------------------------

    async def issue(
        self,
        request: Request,
        record: RequestRecord,
        resolved: Resolved,
        held: Held | None,
        secret: Body | None,
        decided: plan.Plan,
        facts: checks.Facts,
    ) -> Outcome:
        trigger = decided.why
        assert trigger is not None
        now = facts.now
        source_value = resolved.source_value
        try:
            if resolved.identity.grant == "refresh_token":
                source = resolved.source
                assert source is not None
                source_value = await grants.read_source(
                    self.ctx.credentials, request.namespace, source
                )
                rejected = request.status.get("rejectedRefreshToken")
                if rejected is not None and rejected == grants.digest(source_value):
                    return plan.still_rejected(
                        now=now,
                        backoff=self.backoff(request),
                        held_expires_at=_expiry(held),
                        generation=request.generation,
                    )
            issuer, client = await self.ctx.credentials.configs(
                resolved.client_namespace, resolved.spec.client_ref.name, resolved.client_spec
            )
            server = self.ctx.manager.server(issuer, client).endpoint_key()
            record.server = sys.intern(server)
            token = await self.obtain(
                request, resolved, issuer, client, held, decided, now, source_value
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
            if failure.reason == Reason.INVALID_CLIENT:
                self.client_authenticated(request, resolved, False, failure.message)
                await self.await_new_credentials(request, resolved)
            failed = self.failed(request, record, resolved, held, trigger, failure, facts)
            refreshing = resolved.identity.grant == "refresh_token"
            if isinstance(exc, InvalidGrantError) and refreshing and source_value is not None:
                # Remembered in status: not sent again, after a restart either.
                rejected = grants.digest(source_value)
                failed.status["rejectedRefreshToken"] = rejected
                self.await_new_refresh_token(request, resolved, rejected)
            return failed
        record.server_asked_until = None
        self.client_authenticated(request, resolved, True, "")

        revision = int(request.status.get("revision") or 0) + 1
        token_record = TokenRecord(
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
        new = Held(token=token, record=token_record)
        try:
            await self.write_secret(request, record, resolved, new, secret)
        except SecretConflictError:
            return self.conflict(request, resolved.secret_name)
        except KubeApiError as exc:  # the API server failed: retry like a token failure
            return self.failed(request, record, resolved, held, trigger, classify(exc), facts)

        previous = self.ctx.ledger.hold(request.key, new)
        renewable = resolved.identity.grant in grants.RENEWABLE
        if previous is not None and decided.replaces and renewable:
            self.revoke_if_unheld(request, previous)
        first_issue = held is None and revision == 1
        kind = "issued" if first_issue else "renewed"
        self.ctx.metrics.issuances.labels(kind, "ok", client_label(resolved)).inc()
        if first_issue:
            created = request.body.get("metadata", {}).get("creationTimestamp")
            if created:
                self.ctx.metrics.time_to_ready.observe(max(0.0, now - parse_rfc3339(created)))
        if plan.announces(
            decided, first_issue=first_issue, failed_attempts=request.failed_attempts
        ):
            self.ctx.post_event(
                request.body,
                type="Normal",
                reason="Issued" if first_issue else "Renewed",
                message=f"{'issued' if first_issue else 'renewed'} ({trigger.reason}); "
                f"expires at {time_or_unknown(token.expires_at)}",
            )
        # The new token's facts (not the gathered ones: those were the old token's).
        new_facts = request_facts(
            self.ctx, request, resolved, new, None, self.ctx.clock(), secret_intact=True
        )
        outcome = settled(self.ctx, request, resolved, new, new_facts)
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

    async def obtain(
        self,
        request: Request,
        resolved: Resolved,
        issuer: IssuerConfig,
        client: ClientConfig,
        held: Held | None,
        decided: plan.Plan,
        now: float,
        source_value: str | None,
    ) -> AccessToken:
        min_remaining = 0.0
        if held is not None and decided.wants_longer:
            # A token that outlives the current one: a fresher shared one, or a new one.
            policy = self.ctx.manager.config.validity
            min_remaining = renewal_min_remaining(held.token, now, policy)
        if resolved.identity.grant == "token_exchange":
            return await exchange.exchange(
                self.ctx, request, resolved, issuer, client, min_remaining=min_remaining
            )
        identity = resolved.identity
        return await grants.obtain(
            self.ctx.manager,
            identity,
            source_value=source_value,
            issuer=issuer,
            client=client,
            min_remaining=min_remaining,
        )

    def failed(
        self,
        request: Request,
        record: RequestRecord,
        resolved: Resolved,
        held: Held | None,
        trigger: checks.Verdict,
        failure: Failure,
        facts: checks.Facts,
    ) -> Outcome:
        """The plan after a failure, carried out: its metric, Event and log line."""
        now = facts.now
        decided = plan.after_failure(
            trigger,
            failure,
            failed_attempts=request.failed_attempts,
            held_expires_at=_expiry(held),
            held=held is not None,
            now=now,
            backoff=self.backoff(request),
        )
        record.server_asked_until = decided.server_asked_until
        labels = (decided.metric_kind, failure.reason, client_label(resolved))
        self.ctx.metrics.issuances.labels(*labels).inc()
        self.ctx.post_event(
            request.body, type="Warning", reason=decided.event_reason, message=decided.message
        )
        log.warning("%s (%s)", failure.reason, decided.message, extra=about_request(request.key))
        ready = None
        if held is not None:  # Ready as the held token says, its Secret just written or not
            ready = readiness(held, dataclasses.replace(facts, secret=checks.INTACT_SECRET))
        return plan.failed_outcome(failure, decided, ready, now=now, generation=request.generation)

    # -- what the server said of the client's credentials and refresh tokens -------------

    def client_authenticated(
        self, request: Request, resolved: Resolved, accepted: bool, message: str
    ) -> None:
        told = self.client_authentication()
        if told is not None:
            client = (resolved.client_namespace, resolved.spec.client_ref.name)
            where = f"{message} (AccessTokenRequest {request.namespace}/{request.name})"
            told(client, accepted, where if message else "")

    async def await_new_credentials(self, request: Request, resolved: Resolved) -> None:
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

    def await_new_refresh_token(
        self, request: Request, resolved: Resolved, rejected: str | None = None
    ) -> None:
        """While the server's refusal of the refresh token in the Secret stands, a new
        one there is looked for every few seconds (`awaited`), not at the next backoff."""
        rejected = rejected or request.status.get("rejectedRefreshToken")
        source = resolved.source
        if rejected and self.ctx.awaited is not None and resolved.identity.grant == "refresh_token":
            assert source is not None
            key = SecretKey("Secret", source.name, source.key)
            self.ctx.awaited.awaiting_change(
                (REQUEST, request.key), request.namespace, key, rejected
            )

    # -- the Secret, the replaced token, conflicts, gauges -------------------------------

    async def write_secret(
        self,
        request: Request,
        record: RequestRecord,
        resolved: Resolved,
        held: Held,
        secret: Body | None,
    ) -> None:
        desired = desired_token_secret(self.ctx, request, resolved, held)
        written = await write_token_secret(self.ctx.kube, desired, secret, owner_uid=request.uid)
        name = resolved.secret_name
        record.writes.wrote(f"Secret {name}")
        current = self.ctx.cache.token_secret((request.namespace, name))
        record.wrote_secret(name, written, current)

    def revoke_if_unheld(self, request: Request, previous: Held) -> None:
        """A spec change replaced the token: revoke the old one once nobody holds it."""
        if not self.ctx.ledger.is_held(previous):
            task = asyncio.ensure_future(
                revocation.revoke_held(
                    self.ctx, request.body, previous, why="replaced after a spec change"
                )
            )
            self.background.add(task)
            task.add_done_callback(self.background.discard)

    def conflict(self, request: Request, secret_name: str, message: str | None = None) -> Outcome:
        """A SecretConflict: said once in an Event when it begins, and in the conditions."""
        outcome = secret_conflict(secret_name, message)
        if plan.conflict_is_news(request.status):
            self.ctx.post_event(
                request.body, type="Warning", reason=Reason.SECRET_CONFLICT,
                message=outcome.conditions[0].message,
            )  # fmt: skip
        return outcome

    def observe(self, key: RequestKey, outcome: Outcome) -> None:
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


def _expiry(held: Held | None) -> float | None:
    """The held token's expiry, if known."""
    return None if held is None else held.record.expires_at


def client_label(resolved: Resolved) -> str:
    """The OAuth2Client as a metric label, `namespace/name` (one per client object)."""
    return f"{resolved.client_namespace}/{resolved.spec.client_ref.name}"
