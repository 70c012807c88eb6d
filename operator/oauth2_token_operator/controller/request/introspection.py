"""Periodic RFC 7662 introspection of a request's held token."""

from __future__ import annotations

import dataclasses
import logging

from oauth2_token_operator.controller.request.values import Outcome, Request, Resolved
from oauth2_token_operator.controller.shared.context import OperatorContext
from oauth2_token_operator.controller.shared.ledger import Held
from oauth2_token_operator.controller.shared.log_refs import about_request
from oauth2_token_operator.oauth2.errors import EndpointNotAdvertisedError
from oauth2_token_operator.oauth2.responses import MAX_SUBJECT
from oauth2_token_operator.policies.introspection import Judgement, first_look, judge, unsupported
from oauth2_token_operator.util.rfc3339 import parse_rfc3339, rfc3339

log = logging.getLogger(__name__)


def introspection_interval(resolved: Resolved) -> float | None:
    """Seconds between introspections, if the request asks for them."""
    settings = resolved.spec.introspection
    if settings is None or settings.interval is None:
        return None
    return max(
        settings.interval.total_seconds(),
        resolved.client_spec.introspection.min_interval.total_seconds(),
    )


def introspection_due(request: Request, resolved: Resolved, held: Held) -> float | None:
    """When `held` is next introspected (a new token's first time: one interval after
    its issue), if the request asks for introspection."""
    interval = introspection_interval(resolved)
    return None if interval is None else _due(request, held, interval)


def _last_time(request: Request) -> float | None:
    """When the last introspection was (`status.lastIntrospection.time`), if readable."""
    last = (request.status.get("lastIntrospection") or {}).get("time")
    try:
        return parse_rfc3339(last) if last else None
    except ValueError:
        return None


def _due(request: Request, held: Held, interval: float) -> float:
    last_at = _last_time(request) or held.record.issued_at
    last_at = max(last_at, held.record.issued_at)  # a new token starts a new period
    return last_at + interval


async def introspect_if_due(
    ctx: OperatorContext, request: Request, resolved: Resolved, held: Held, now: float
) -> tuple[Held, Outcome]:
    """RFC 7662 every `spec.introspection.interval` (never more often than the
    client's `introspection.minInterval`); the answer may replace the token, as
    `policies.introspection` judges."""
    interval = introspection_interval(resolved)
    if interval is None:
        return held, Outcome()
    due = _due(request, held, interval)
    if now < due:
        return held, Outcome(wake_at=due)
    try:
        issuer, client = await ctx.credentials.configs(
            resolved.client_namespace, resolved.spec.client_ref.name, resolved.client_spec
        )
        info = await ctx.manager.introspect(held.token.value, issuer, client)
    except EndpointNotAdvertisedError:
        return held, _carried_out(ctx, request, unsupported(request.status), now + interval)
    except Exception as exc:
        log.info("introspection failed: %s", exc, extra=about_request(request.key))
        return held, Outcome(wake_at=now + interval)
    last = request.status.get("lastIntrospection") or None
    first = first_look(last, _last_time(request), held.record.issued_at)
    judgement = judge(active=info.active, first=first, last=last, status=request.status)
    if judgement.retire:
        held = Held(token=dataclasses.replace(held.token, active=False), record=held.record)
        ctx.ledger.hold(request.key, held)
    record = {"active": info.active, "time": rfc3339(now), "firstLook": first}
    outcome = _carried_out(ctx, request, judgement, now + interval)
    outcome.status["lastIntrospection"] = record
    if info.active and info.sub and len(info.sub) <= MAX_SUBJECT:
        outcome.status["subject"] = info.sub
    return held, outcome


def _carried_out(
    ctx: OperatorContext, request: Request, judgement: Judgement, wake_at: float
) -> Outcome:
    """The judgement's Event posted, its condition in the outcome."""
    if judgement.event is not None:
        event = judgement.event
        ctx.post_event(request.body, type=event.type, reason=event.reason, message=event.message)
    conditions = [judgement.condition] if judgement.condition is not None else []
    return Outcome(conditions=conditions, wake_at=wake_at)
