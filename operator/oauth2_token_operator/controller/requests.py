"""Reconciles one AccessTokenRequest: resolve its client, adopt or obtain its token,
keep its Secret intact, and report status. Level-triggered: every call looks at the
whole current state (the request, its Secret, the token held) and does only what the
policy chains ask for, so it is safe to call on any event, timer or restart.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from oauth2_token_operator.api import AccessTokenRequestSpec, OAuth2ClientSpec
from oauth2_token_operator.api.crd import ACCESS_TOKEN_REQUEST, GROUP
from oauth2_token_operator.client_config import ClientConfigError
from oauth2_token_operator.controller import grants
from oauth2_token_operator.controller.context import Body, OperatorContext, first
from oauth2_token_operator.controller.freshness import Freshness
from oauth2_token_operator.controller.ledger import Held, RequestKey
from oauth2_token_operator.controller.revocation import revoke_held
from oauth2_token_operator.controller.secret_writer import SecretConflictError, write_token_secret
from oauth2_token_operator.kube.api import KubeApiError
from oauth2_token_operator.manager import (
    CLIENT_CREDENTIALS,
    AccessToken,
    TokenKey,
    TokenState,
    assess_validity,
)
from oauth2_token_operator.oauth2.client_auth import ClientConfig
from oauth2_token_operator.oauth2.metadata import IssuerConfig
from oauth2_token_operator.policies import checks
from oauth2_token_operator.policies.access import client_access
from oauth2_token_operator.policies.conditions import (
    ISSUING,
    READY,
    ConditionUpdate,
    set_conditions,
)
from oauth2_token_operator.policies.failures import Failure, classify, retry_delay
from oauth2_token_operator.policies.identity import TokenIdentity
from oauth2_token_operator.policies.renewal import (
    RenewalPolicy,
    RenewalSchedule,
    renewal_time,
)
from oauth2_token_operator.token_secret import (
    TOKEN_ANNOTATION,
    Owner,
    Template,
    TokenRecord,
    decode_data,
    desired_secret,
    inspect_secret,
    is_owned_by,
    parse_rfc3339,
    render_data,
    rfc3339,
)

log = logging.getLogger(__name__)

REGISTERED_RECHECK = 300.0
"""How often a registered token's source Secret is read again for a new token."""
REFRESH_TOKEN_RETRY = 30.0
"""How soon a refresh token that could not be written back is tried again."""
NOT_FOR_REGISTERED = frozenset({"Renewing", "Expired", "RenewalRequested", "TokenInactive"})
"""Triggers that cannot be acted on for a registered token (nobody can renew it)."""

RENEW_ANNOTATION = f"{GROUP}/renew-requested-at"
"""Set to an RFC 3339 time to ask for a token issued after it (`renew now`)."""


class Blocked(Exception):
    """The request cannot be served until something else changes (reason, message)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Request:
    """An AccessTokenRequest as read from its body."""

    namespace: str
    name: str
    uid: str
    generation: int | None
    body: Body
    status: dict[str, Any]
    annotations: dict[str, str]

    @property
    def key(self) -> RequestKey:
        return (self.namespace, self.name)

    @classmethod
    def of(cls, body: Body) -> Request:
        meta = body.get("metadata", {})
        return cls(
            namespace=meta["namespace"],
            name=meta["name"],
            uid=meta["uid"],
            generation=meta.get("generation"),
            body=body,
            status=dict(body.get("status") or {}),
            annotations=dict(meta.get("annotations") or {}),
        )


@dataclass(frozen=True)
class Resolved:
    """The request's client and the token it wants."""

    spec: AccessTokenRequestSpec
    client_namespace: str
    client_spec: OAuth2ClientSpec
    identity: TokenIdentity
    secret_name: str
    source_value: str | None = None
    """For `register`: the token read from the user's Secret."""


@dataclass
class Outcome:
    """What one reconciliation decided: status fields, conditions, the next wake-up."""

    status: dict[str, Any] = field(default_factory=dict)
    conditions: list[ConditionUpdate] = field(default_factory=list)
    wake_at: float | None = None

    def merge(self, other: Outcome) -> Outcome:
        """This outcome plus `other`'s status fields, and the sooner wake-up."""
        wakes = [w for w in (self.wake_at, other.wake_at) if w is not None]
        return Outcome(
            status={**other.status, **self.status},
            conditions=self.conditions or other.conditions,
            wake_at=min(wakes) if wakes else None,
        )


class RequestReconciler:
    def __init__(self, ctx: OperatorContext, *, finalizer: str | None = None) -> None:
        self.ctx = ctx
        self.finalizer = finalizer
        """Requests are served only once this finalizer is on them (kopf adds it)."""
        self._locks: defaultdict[RequestKey, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._background: set[asyncio.Future[bool]] = set()
        self.requests_seen = Freshness()
        """Our status writes, until the watch shows them (see `freshness`)."""
        self.secrets_seen = Freshness()
        """Our Secret writes, until the watch shows them."""

    # -- entry points ------------------------------------------------------------------

    async def reconcile_key(self, key: RequestKey) -> None:
        """Reconcile the request as the watch last saw it (scheduler, pokes)."""
        body = first(self.ctx.views.requests, key)
        if body is not None:
            await self.reconcile(body)

    async def reconcile(self, body: Body) -> None:
        meta = body.get("metadata", {})
        if meta.get("deletionTimestamp"):
            return
        if self.finalizer is not None and self.finalizer not in (meta.get("finalizers") or ()):
            # Nothing is issued before the finalizer is on the object: a token can then
            # never outlive a request deleted in a hurry (and the two writes do not race).
            return
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        async with self._locks[key]:
            request = Request.of(self.requests_seen.newest(key, body) or body)
            try:
                outcome = await self._reconcile(request)
                await self._write_status(request, outcome)
            except Exception:
                self.ctx.metrics.reconcile_errors.labels("accesstokenrequests").inc()
                raise
            scheduler = self.ctx.request_scheduler
            if scheduler is not None:
                if outcome.wake_at is None:
                    scheduler.cancel(request.key)
                else:
                    scheduler.schedule(request.key, outcome.wake_at)

    # -- the decision ------------------------------------------------------------------

    async def _reconcile(self, request: Request) -> Outcome:
        now = self.ctx.clock()
        try:
            resolved = await self._resolve(request)
        except Blocked as blocked:
            return Outcome(conditions=[_not_ready(blocked.reason, blocked.message)])

        secret = self._secret(request.namespace, resolved.secret_name)
        if secret is not None and not is_owned_by(secret, request.uid):
            return _secret_conflict(resolved.secret_name)
        held = self.ctx.ledger.current(request.key) or await self._adopt(request, secret)

        await self._retry_refresh_token(resolved)
        introspection = Outcome()
        if held is not None:
            held, introspection = await self._introspect_if_due(request, resolved, held, now)
        facts = self._facts(request, resolved, held, secret, now)
        trigger = checks.evaluate(checks.ISSUANCE_CHAIN, facts)
        if (
            trigger is not None
            and held is not None
            and resolved.identity.grant not in grants.RENEWABLE
            and trigger.reason in NOT_FOR_REGISTERED
        ):
            trigger = None  # readiness reports it
        if trigger is not None:
            retry_at = self._backoff_until(request, now)
            if retry_at is not None and trigger.reason not in ("SpecChanged", "RenewalRequested"):
                return self._waiting(request, held, facts, trigger, retry_at).merge(introspection)
            outcome = await self._issue(request, resolved, held, secret, trigger, now)
            return outcome.merge(introspection)

        assert held is not None  # no trigger means a token is held
        repair = checks.evaluate(checks.SECRET_CHAIN, facts)
        if repair is not None:
            try:
                await self._write_secret(request, resolved, held, secret)
            except SecretConflictError:
                return _secret_conflict(resolved.secret_name)
            self.ctx.post_event(
                request.body,
                type="Normal",
                reason="SecretRestored",
                message=f"Secret {resolved.secret_name} written again ({repair.reason})",
            )
            facts = self._facts(request, resolved, held, None, now, secret_intact=True)
        return self._settled(request, resolved, held, facts).merge(introspection)

    async def _introspect_if_due(
        self, request: Request, resolved: Resolved, held: Held, now: float
    ) -> tuple[Held, Outcome]:
        """RFC 7662 every `spec.introspection.interval` (never more often than the
        client's `introspection.minInterval`); the answer may replace the token."""
        settings = resolved.spec.introspection
        if settings is None or settings.interval is None:
            return held, Outcome()
        interval = max(
            settings.interval.total_seconds(),
            resolved.client_spec.introspection.min_interval.total_seconds(),
        )
        last = (request.status.get("lastIntrospection") or {}).get("time")
        try:
            last_at = parse_rfc3339(last) if last else held.record.issued_at
        except ValueError:
            last_at = held.record.issued_at
        last_at = max(last_at, held.record.issued_at)  # a new token starts a new period
        due = last_at + interval
        if now < due:
            return held, Outcome(wake_at=due)
        try:
            issuer, client = await self.ctx.credentials.configs(
                resolved.client_namespace, resolved.spec.client_ref.name, resolved.client_spec
            )
            info = await self.ctx.manager.introspect(held.token.value, issuer, client)
        except Exception as exc:
            log.info("%s/%s: introspection failed: %s", request.namespace, request.name, exc)
            return held, Outcome(wake_at=now + interval)
        previous = (request.status.get("lastIntrospection") or {}).get("active")
        if (previous is not None and previous != info.active) or not info.active:
            self.ctx.post_event(
                request.body,
                type="Normal" if info.active else "Warning",
                reason="Introspected",
                message="the authorization server says the token is "
                + ("active" if info.active else "not active"),
            )
        if not info.active:
            held = Held(token=dataclasses.replace(held.token, active=False), record=held.record)
            self.ctx.ledger.hold(request.key, held)
        return held, Outcome(
            status={"lastIntrospection": {"active": info.active, "time": rfc3339(now)}},
            wake_at=now + interval,
        )

    async def _retry_refresh_token(self, resolved: Resolved) -> None:
        writer = self.ctx.refresh_tokens
        subject = resolved.identity.subject
        if writer is not None and subject is not None and subject in writer.unpersisted:
            await writer.persist(writer.unpersisted[subject])

    async def _resolve(self, request: Request) -> Resolved:
        try:
            spec = AccessTokenRequestSpec.model_validate(request.body.get("spec") or {})
        except ValidationError as exc:
            raise Blocked("InvalidSpec", _validation_message(exc)) from None
        client_ns = spec.client_ref.namespace or request.namespace
        client_body = first(self.ctx.views.clients, (client_ns, spec.client_ref.name))
        if client_body is None:
            raise Blocked(
                "ClientNotFound", f"OAuth2Client {client_ns}/{spec.client_ref.name} not found"
            )
        try:
            client_spec = OAuth2ClientSpec.model_validate(client_body.get("spec") or {})
        except ValidationError as exc:
            raise Blocked("ClientInvalid", _validation_message(exc)) from None
        decision = client_access(
            client_namespace=client_ns,
            client_name=spec.client_ref.name,
            allowed=client_spec.allowed_namespaces,
            request_namespace=request.namespace,
            request_namespace_labels=first(self.ctx.views.namespace_labels, request.namespace),
        )
        if not decision.allowed:
            raise Blocked(decision.reason, decision.message)
        subject = grants.subject_of(spec, request.namespace)
        source_digest = None
        source_value = None
        if spec.grant == "register":
            source = grants.source_ref(spec)
            assert source is not None
            try:
                source_value = await grants.read_source(
                    self.ctx.credentials, request.namespace, source
                )
            except ClientConfigError as exc:
                raise Blocked(exc.reason, exc.message) from None
            source_digest = grants.digest(source_value)
        scopes = spec.scopes if spec.scopes is not None else client_spec.default_scopes
        if spec.grant == "register" and spec.scopes is None:
            scopes = None  # the seed's "any scopes"
        identity = TokenIdentity(
            issuer=client_spec.issuer,
            client_id=client_spec.client_id,
            client=f"{client_ns}/{spec.client_ref.name}",
            grant=spec.grant,
            subject=subject,
            scopes=None if scopes is None else tuple(sorted(set(scopes))),
            resources=tuple(sorted(set(spec.resources or ()))),
            audience=spec.audience,
            source_digest=source_digest,
        )
        return Resolved(
            spec,
            client_ns,
            client_spec,
            identity,
            spec.secret_name or request.name,
            source_value,
        )

    def _facts(
        self,
        request: Request,
        resolved: Resolved,
        held: Held | None,
        secret: Body | None,
        now: float,
        *,
        secret_intact: bool = False,
    ) -> checks.Facts:
        token_facts = None
        renew_at = None
        if held is not None:
            policy = self.ctx.manager.config.validity
            validity = assess_validity(held.token, now, policy)
            until = validity.usable_until if validity.usable_until is not None else now
            token_facts = checks.TokenFacts(
                issued_at=held.record.issued_at,
                usable_until=until,
                issued_for=held.record.issued_for,
                active=False if validity.state is TokenState.INACTIVE else held.token.active,
            )
            renew_at = self._schedule(request, resolved, held, until).renew_at
        if secret_intact:
            secret_facts = checks.SecretFacts(exists=True, data_intact=True, metadata_intact=True)
        else:
            desired = None if held is None else self._desired_secret(request, resolved, held)
            secret_facts = inspect_secret(secret, desired)
        return checks.Facts(
            now=now,
            spec_fingerprint=resolved.identity.fingerprint(),
            token=token_facts,
            secret=secret_facts,
            renew_at=renew_at,
            renewal_requested=self._renewal_requested(request, held),
        )

    def _schedule(
        self, request: Request, resolved: Resolved, held: Held, usable_until: float
    ) -> RenewalSchedule:
        spec = resolved.spec
        policy = RenewalPolicy(
            renew_before=None if spec.renew_before is None else spec.renew_before.total_seconds(),
            renew_before_percentage=spec.renew_before_percentage,
            min_lead=self.ctx.config.min_renewal_lead,
        )
        expires_at = held.record.expires_at if held.record.expires_at is not None else usable_until
        return renewal_time(
            held.record.issued_at,
            expires_at,
            policy,
            seed=f"{request.uid}/{held.record.revision}",
        )

    @staticmethod
    def _renewal_requested(request: Request, held: Held | None) -> bool:
        value = request.annotations.get(RENEW_ANNOTATION)
        if not value or held is None:
            return False
        try:
            return parse_rfc3339(value) > held.record.issued_at
        except ValueError:
            return False

    def _backoff_until(self, request: Request, now: float) -> float | None:
        """While failures back off, the next attempt's time (in `status.renewalTime`)."""
        if not request.status.get("failedAttempts"):
            return None
        if request.status.get("observedGeneration") != request.generation:
            return None  # the spec changed: try the new one at once
        planned = request.status.get("renewalTime")
        try:
            retry_at = parse_rfc3339(planned) if planned else None
        except ValueError:
            retry_at = None
        return retry_at if retry_at is not None and retry_at > now else None

    # -- adoption (restart without re-issuing) -------------------------------------------

    async def _adopt(self, request: Request, secret: Body | None) -> Held | None:
        """Take over the token already in the request's Secret, if it is ours and sound,
        and put it in the manager's store so identical requests share it."""
        held = held_from_secret(secret) if secret is not None else None
        if held is not None:
            self.ctx.ledger.hold(request.key, held)
            await self.ctx.manager.store.put_access_token(held.token)
        return held

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
        try:
            issuer, client = await self.ctx.credentials.configs(
                resolved.client_namespace, resolved.spec.client_ref.name, resolved.client_spec
            )
            token = await self._obtain(resolved, issuer, client, held, trigger, now, request)
        except Exception as exc:
            return self._failed(request, resolved, held, trigger, classify(exc), now)

        revision = int(request.status.get("revision") or 0) + 1
        record = TokenRecord(
            issuer=token.key.issuer,
            client_id=token.key.client_id,
            client=resolved.identity.client,
            subject=resolved.identity.subject,
            requested_scopes=None
            if resolved.identity.scopes is None
            else list(resolved.identity.scopes),
            resources=list(resolved.identity.resources),
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
            return _secret_conflict(resolved.secret_name)
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
        self.ctx.metrics.issuances.labels("issued" if first_issue else "renewed", "ok").inc()
        if first_issue:
            created = request.body.get("metadata", {}).get("creationTimestamp")
            if created:
                self.ctx.metrics.time_to_ready.observe(max(0.0, now - parse_rfc3339(created)))
        self.ctx.post_event(
            request.body,
            type="Normal",
            reason="Issued" if first_issue else "Renewed",
            message=f"{'issued' if first_issue else 'renewed'} ({trigger.reason}); "
            f"expires at {_time_or_unknown(token.expires_at)}",
        )
        facts = self._facts(request, resolved, new, None, self.ctx.clock(), secret_intact=True)
        outcome = self._settled(request, resolved, new, facts)
        outcome.status.update(revision=revision, failedAttempts=0, lastFailureTime=None)
        return outcome

    async def _obtain(
        self,
        resolved: Resolved,
        issuer: IssuerConfig,
        client: ClientConfig,
        held: Held | None,
        trigger: checks.Verdict,
        now: float,
        request: Request,
    ) -> AccessToken:
        min_remaining = 0.0
        if held is not None and trigger.reason in ("Renewing", "RenewalRequested"):
            # A token that outlives the current one: a fresher shared one, or a new one.
            current_until = held.record.expires_at or now
            min_remaining = max(0.0, current_until - now) + 1.0
        identity = resolved.identity
        source_value = resolved.source_value
        if identity.grant == "refresh_token":
            source = grants.source_ref(resolved.spec)
            assert source is not None
            source_value = await grants.read_source(self.ctx.credentials, request.namespace, source)
        return await grants.obtain(
            self.ctx.manager,
            grant=identity.grant,
            subject=identity.subject,
            source_value=source_value,
            issuer=issuer,
            client=client,
            scopes=identity.scopes,
            resources=identity.resources,
            audience=identity.audience,
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
        attempts = int(request.status.get("failedAttempts") or 0) + 1
        kind = "renewed" if held is not None else "issued"
        self.ctx.metrics.issuances.labels(kind, failure.reason).inc()
        if failure.retry:
            retry_at = now + retry_delay(
                attempts,
                base=self.ctx.config.retry_base_delay,
                cap=self.ctx.config.retry_max_delay,
                seed=request.uid,
                retry_after=failure.retry_after,
            )
            when = f"; retrying at {rfc3339(retry_at)}"
        else:
            # Trying again cannot help until something changes (a new refresh token, the
            # spec, the client): look again rarely, never in a loop.
            retry_at = now + self.ctx.config.retry_max_delay
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
        log.warning("%s/%s: %s (%s)", request.namespace, request.name, failure.reason, message)
        if held is not None:
            facts = self._facts(request, resolved, held, None, now, secret_intact=True)
            ready = self._readiness(held, facts)
        else:
            ready = _not_ready(failure.reason, message)
        if ready.status == "True" and failure.reason == "RefreshTokenRejected":
            ready = _not_ready(failure.reason, message)
        expiry = self._expiry_wake(held)  # Ready must turn False on time meanwhile
        return Outcome(
            status={
                "failedAttempts": attempts,
                "lastFailureTime": rfc3339(now),
                "renewalTime": rfc3339(retry_at),
                "observedGeneration": request.generation,
            },
            conditions=[
                ready,
                ConditionUpdate(ISSUING, "True", failure.reason, message),
            ],
            wake_at=retry_at if expiry is None else min(retry_at, expiry),
        )

    @staticmethod
    def _expiry_wake(held: Held | None) -> float | None:
        """The held token's expiry, if known."""
        if held is None or held.record.expires_at is None:
            return None
        return held.record.expires_at

    def _waiting(
        self,
        request: Request,
        held: Held | None,
        facts: checks.Facts,
        trigger: checks.Verdict,
        retry_at: float,
    ) -> Outcome:
        last = next(
            (c for c in request.status.get("conditions") or () if c.get("type") == ISSUING), None
        )
        if held is not None:
            ready = self._readiness(held, facts)
        elif last is not None:  # no token yet: the last failure is why
            ready = _not_ready(last["reason"], last.get("message", ""))
        else:
            ready = _not_ready(trigger.reason, trigger.message)
        return Outcome(
            conditions=[ready]
            + (
                [ConditionUpdate(ISSUING, "True", last["reason"], last.get("message", ""))]
                if last is not None
                else []
            ),
            wake_at=retry_at,
        )

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
        async with self._locks[request.key]:
            if self.ctx.request_scheduler is not None:
                self.ctx.request_scheduler.cancel(request.key)
            spec = _spec_or_none(body)
            secret_name = (spec.secret_name if spec else None) or request.name
            secret = self._secret(request.namespace, secret_name)
            owned = secret is not None and is_owned_by(secret, request.uid)
            held = self.ctx.ledger.current(request.key) or (
                await self._adopt(request, secret) if owned else None
            )
            self.ctx.ledger.release(request.key)
            if held is not None and not self.ctx.ledger.is_held(held):
                if self._revoke_on_delete(spec, held):
                    await revoke_held(self.ctx, body, held, why="the request was deleted")
                else:
                    await self.ctx.manager.store.delete_access_token(
                        held.token.key.issuer, held.token.value
                    )
            if owned and secret is not None:
                await self.ctx.kube.delete_secret(
                    request.namespace, secret_name, uid=secret["metadata"]["uid"]
                )
        self._locks.pop(request.key, None)
        self.ctx.metrics.forget_request(*request.key)
        self.requests_seen.forget(request.key)
        self.secrets_seen.forget((request.namespace, secret_name))

    async def revoke_all(self, client_key: RequestKey) -> None:
        """Revoke every token held by requests using the client (the seed's `delete_all`);
        the requests then hold an inactive token and get a new one when they can."""
        users = list(self.ctx.views.requests_by_client.get(client_key) or ())
        revoked: set[tuple[str, str]] = set()
        for key in users:
            held = self.ctx.ledger.current(key)
            body = first(self.ctx.views.requests, key)
            if held is None or body is None:
                continue
            token_id = (held.token.key.issuer, held.token.value)
            if token_id not in revoked:
                revoked.add(token_id)
                await revoke_held(self.ctx, body, held, why="revoke-all on its OAuth2Client")
            self.ctx.ledger.hold(
                key, Held(token=dataclasses.replace(held.token, active=False), record=held.record)
            )

    def _revoke_on_delete(self, spec: AccessTokenRequestSpec | None, held: Held) -> bool:
        if spec is not None and spec.revoke_on_delete is not None:
            return spec.revoke_on_delete
        namespace, _, name = held.record.client.partition("/")
        client_body = first(self.ctx.views.clients, (namespace, name))
        if client_body is None:
            return True
        revoke = (client_body.get("spec") or {}).get("revokeOnDelete", True)
        return bool(revoke)

    # -- the Secret ----------------------------------------------------------------------

    def _desired_secret(self, request: Request, resolved: Resolved, held: Held) -> dict[str, Any]:
        token = held.token
        template = resolved.spec.secret_template
        return desired_secret(
            name=resolved.secret_name,
            namespace=request.namespace,
            owner=Owner(kind=ACCESS_TOKEN_REQUEST.kind, name=request.name, uid=request.uid),
            template=Template(
                type=template.type, labels=template.labels, annotations=template.annotations
            ),
            data=render_data(
                access_token=token.value,
                token_type=token.token_type,
                expires_at=token.expires_at,
                scopes=token.scopes,
            ),
            record=held.record,
        )

    def _secret(self, namespace: str, name: str) -> Body | None:
        watched = first(self.ctx.views.token_secrets, (namespace, name))
        return self.secrets_seen.newest((namespace, name), watched)

    async def _write_secret(
        self, request: Request, resolved: Resolved, held: Held, secret: Body | None
    ) -> None:
        desired = self._desired_secret(request, resolved, held)
        written = await write_token_secret(self.ctx.kube, desired, secret, owner_uid=request.uid)
        self.secrets_seen.wrote((request.namespace, resolved.secret_name), written)

    # -- status --------------------------------------------------------------------------

    def _settled(
        self, request: Request, resolved: Resolved, held: Held, facts: checks.Facts
    ) -> Outcome:
        ready = self._readiness(held, facts)
        token = held.token
        requested = resolved.identity.scopes
        if ready.status == "True" and requested is not None and not set(requested) <= token.scopes:
            missing = " ".join(sorted(set(requested) - token.scopes))
            ready = ConditionUpdate(
                READY, "True", ready.reason, f"{ready.message}; the server did not grant: {missing}"
            )
        now = self.ctx.clock()
        until = facts.token.usable_until if facts.token else now
        if token.expires_at is not None:
            self.ctx.metrics.token_expiry.labels(request.namespace, request.name).set(
                token.expires_at
            )
        renewal_time: float | None
        if resolved.identity.grant in grants.RENEWABLE:
            schedule = self._schedule(request, resolved, held, until)
            renewal_time = wake_at = schedule.renew_at
            issuing = ConditionUpdate(
                ISSUING,
                "False",
                "UpToDate",
                f"next renewal at {rfc3339(schedule.renew_at)}"
                + (f"; {schedule.message}" if schedule.short_lived else ""),
            )
        else:
            # Nobody renews a registered token: wake at its expiry (Ready turns False),
            # and now and then to see whether the source Secret holds a new one.
            renewal_time = None
            wake_at = (
                min(until, now + REGISTERED_RECHECK) if until > now else now + REGISTERED_RECHECK
            )
            issuing = ConditionUpdate(
                ISSUING, "False", "Registered", "a registered token is renewed by nobody"
            )
        unpersisted = self._unpersisted(resolved)
        if unpersisted:
            issuing = ConditionUpdate(
                ISSUING,
                "True",
                "RefreshTokenNotPersisted",
                "the rotated refresh token could not be written back to Secret "
                f"{unpersisted}; it is kept in memory only and retried: a restart now would"
                " lose it",
            )
            wake_at = min(wake_at, now + REFRESH_TOKEN_RETRY)
        return Outcome(
            status={
                "observedGeneration": request.generation,
                "secretName": resolved.secret_name,
                "tokenType": token.token_type,
                "grantedScopes": sorted(token.scopes),
                "subject": token.claims.sub if token.claims is not None else None,
                "issuedAt": rfc3339(held.record.issued_at),
                "expiresAt": None if token.expires_at is None else rfc3339(token.expires_at),
                "renewalTime": None if renewal_time is None else rfc3339(renewal_time),
            },
            conditions=[ready, issuing],
            wake_at=wake_at,
        )

    def _unpersisted(self, resolved: Resolved) -> str | None:
        """The Secret a rotated refresh token of this request still has to go to."""
        writer = self.ctx.refresh_tokens
        subject = resolved.identity.subject
        if writer is None or subject is None or subject not in writer.unpersisted:
            return None
        location = grants.parse_refresh_subject(subject)
        return None if location is None else f"{location[0]}/{location[1]}"

    @staticmethod
    def _readiness(held: Held, facts: checks.Facts) -> ConditionUpdate:
        verdict = checks.evaluate(checks.READINESS_CHAIN, facts)
        if verdict is not None:
            return _not_ready(verdict.reason, verdict.message)
        return ConditionUpdate(
            READY,
            "True",
            "TokenValid",
            "the Secret holds a valid token, expiring at "
            + _time_or_unknown(held.record.expires_at),
        )

    async def _write_status(self, request: Request, outcome: Outcome) -> None:
        conditions = set_conditions(
            request.status.get("conditions"),
            outcome.conditions,
            now=self.ctx.clock(),
            generation=request.generation,
        )
        patch = {k: v for k, v in outcome.status.items() if request.status.get(k) != v}
        if conditions != request.status.get("conditions"):
            patch["conditions"] = conditions
        if request.status.get("observedGeneration") != request.generation:
            patch["observedGeneration"] = request.generation
        if not patch:
            return
        patched = await self.ctx.kube.patch_status(
            ACCESS_TOKEN_REQUEST.plural, request.namespace, request.name, patch
        )
        self.requests_seen.wrote(request.key, patched)


def _not_ready(reason: str, message: str) -> ConditionUpdate:
    return ConditionUpdate(READY, "False", reason, message)


def _secret_conflict(name: str) -> Outcome:
    return Outcome(
        conditions=[
            _not_ready(
                "SecretConflict",
                f"Secret {name} exists and is not owned by this request; it is left untouched"
                " (delete it, or choose another spec.secretName)",
            )
        ]
    )


def _time_or_unknown(epoch: float | None) -> str:
    return "an unknown time" if epoch is None else rfc3339(epoch)


def _validation_message(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
        for error in exc.errors(include_input=False)
    )


def _spec_or_none(body: Body) -> AccessTokenRequestSpec | None:
    try:
        return AccessTokenRequestSpec.model_validate(body.get("spec") or {})
    except ValidationError:
        return None


def held_from_secret(secret: Body) -> Held | None:
    """The token in one of our Secrets, with its recorded facts; `None` if unusable."""
    annotations = secret.get("metadata", {}).get("annotations") or {}
    record = TokenRecord.from_annotation(annotations.get(TOKEN_ANNOTATION, ""))
    data = decode_data(secret.get("data"))
    if record is None or not data or not data.get("access_token"):
        return None
    token = AccessToken(
        value=data["access_token"],
        token_type=data.get("token_type") or "Bearer",
        key=TokenKey(
            record.issuer,
            CLIENT_CREDENTIALS if record.subject is None else record.subject,
            record.client_id,
            record.client,  # the token partition: its OAuth2Client
        ),
        scopes=frozenset((data.get("scope") or "").split()),
        obtained_at=record.issued_at,
        expires_at=record.expires_at,
        requested_scopes=None
        if record.requested_scopes is None
        else frozenset(record.requested_scopes),
        resources=frozenset(record.resources),
        audience=record.audience,
        confirmed_at=record.issued_at,
    )
    return Held(token=token, record=record)
