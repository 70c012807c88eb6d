"""Periodic RFC 7662 introspection of a request's held token."""

from __future__ import annotations

import dataclasses
import logging

from oauth2_token_operator.controller.context import OperatorContext
from oauth2_token_operator.controller.ledger import Held
from oauth2_token_operator.controller.request_types import Outcome, Request, Resolved
from oauth2_token_operator.oauth2.responses import MAX_SUBJECT
from oauth2_token_operator.token_secret import parse_rfc3339, rfc3339

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


def _due(request: Request, held: Held, interval: float) -> float:
    last = (request.status.get("lastIntrospection") or {}).get("time")
    try:
        last_at = parse_rfc3339(last) if last else held.record.issued_at
    except ValueError:
        last_at = held.record.issued_at
    last_at = max(last_at, held.record.issued_at)  # a new token starts a new period
    return last_at + interval


async def introspect_if_due(
    ctx: OperatorContext, request: Request, resolved: Resolved, held: Held, now: float
) -> tuple[Held, Outcome]:
    """RFC 7662 every `spec.introspection.interval` (never more often than the
    client's `introspection.minInterval`); the answer may replace the token."""
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
    except Exception as exc:
        log.info("%s/%s: introspection failed: %s", request.namespace, request.name, exc)
        return held, Outcome(wake_at=now + interval)
    previous = (request.status.get("lastIntrospection") or {}).get("active")
    if (previous is not None and previous != info.active) or not info.active:
        ctx.post_event(
            request.body,
            type="Normal" if info.active else "Warning",
            reason="Introspected",
            message="the authorization server says the token is "
            + ("active" if info.active else "not active"),
        )
    if not info.active:
        held = Held(token=dataclasses.replace(held.token, active=False), record=held.record)
        ctx.ledger.hold(request.key, held)
    status: dict[str, object] = {"lastIntrospection": {"active": info.active, "time": rfc3339(now)}}
    if info.active and info.sub and len(info.sub) <= MAX_SUBJECT:
        status["subject"] = info.sub
    return held, Outcome(status=status, wake_at=now + interval)
