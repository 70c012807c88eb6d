"""A request's status: the Ready and Issuing conditions and status fields for a held
token (or one still being waited for), and writing only what changed."""

from __future__ import annotations

from oauth2_token_operator.api.crd import ACCESS_TOKEN_REQUEST
from oauth2_token_operator.client_config import SECRET_NOT_USABLE
from oauth2_token_operator.controller.request.facts import renewal_schedule
from oauth2_token_operator.controller.request.values import (
    Outcome,
    Request,
    Resolved,
    not_ready,
    time_or_unknown,
)
from oauth2_token_operator.controller.shared import grants
from oauth2_token_operator.controller.shared.context import Body, OperatorContext
from oauth2_token_operator.controller.shared.ledger import Held
from oauth2_token_operator.kube.own_writes import OwnWrites, changed_only_status
from oauth2_token_operator.manager import AccessToken
from oauth2_token_operator.oauth2.responses import unverified_subject
from oauth2_token_operator.policies import checks
from oauth2_token_operator.policies.conditions import (
    ISSUING,
    READY,
    ConditionUpdate,
    set_conditions,
)
from oauth2_token_operator.policies.plan import while_waiting
from oauth2_token_operator.util.rfc3339 import rfc3339

REGISTERED_RECHECK = 300.0
"""How often a registered token's source Secret is read again for a new token."""
REFRESH_TOKEN_RETRY = 30.0
"""How soon a refresh token that could not be written back is tried again."""


def settled(
    ctx: OperatorContext, request: Request, resolved: Resolved, held: Held, facts: checks.Facts
) -> Outcome:
    ready = readiness(held, facts)
    token = held.token
    requested = resolved.identity.scopes
    if ready.status == "True" and requested is not None and not set(requested) <= token.scopes:
        missing = " ".join(sorted(set(requested) - token.scopes))
        ready = ConditionUpdate(
            READY, "True", ready.reason, f"{ready.message}; the server did not grant: {missing}"
        )
    now = ctx.clock()
    until = facts.token.usable_until if facts.token else now
    renewal_time: float | None
    if resolved.identity.grant in grants.RENEWABLE:
        schedule = renewal_schedule(ctx, request, resolved, held)
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
        wake_at = min(until, now + REGISTERED_RECHECK) if until > now else now + REGISTERED_RECHECK
        issuing = ConditionUpdate(
            ISSUING, "False", "Registered", "a registered token is renewed by nobody"
        )
    unpersisted = unpersisted_refresh_token(ctx, resolved)
    if unpersisted:
        where, refusal = unpersisted
        if refusal is None:
            issuing = ConditionUpdate(
                ISSUING,
                "True",
                "RefreshTokenNotPersisted",
                "the rotated refresh token could not be written back to Secret "
                f"{where}; it is kept in memory only and retried: a restart now would"
                " lose it",
            )
        else:
            issuing = ConditionUpdate(
                ISSUING,
                "True",
                SECRET_NOT_USABLE,
                f"the rotated refresh token is not written back: {refusal}. It is kept in"
                " memory and used for the next renewal, but a restart now would lose it",
            )
        wake_at = min(wake_at, now + REFRESH_TOKEN_RETRY)
    status = {
        "observedGeneration": request.generation,
        "secretName": resolved.secret_name,
        "tokenType": token.token_type,
        "grantedScopes": sorted(token.scopes),
        "issuedAt": rfc3339(held.record.issued_at),
        "expiresAt": None if token.expires_at is None else rfc3339(token.expires_at),
        "renewalTime": None if renewal_time is None else rfc3339(renewal_time),
    }
    subject = subject_of(token)
    if subject is not None:  # else what introspection last said stands
        status["subject"] = subject
    return Outcome(status=status, conditions=[ready, issuing], wake_at=wake_at)


def waiting(
    request: Request,
    held: Held | None,
    facts: checks.Facts,
    trigger: checks.Verdict,
    retry_at: float,
) -> Outcome:
    """While failures back off: Ready as the held token (or the last failure) says
    (`plan.while_waiting` decides)."""
    last = next(
        (c for c in request.status.get("conditions") or () if c.get("type") == ISSUING), None
    )
    failure = None if last is None else (last["reason"], last.get("message", ""))
    token_ready = None if held is None else readiness(held, facts)
    return while_waiting(trigger, retry_at, last_failure=failure, token_ready=token_ready)


def unpersisted_refresh_token(
    ctx: OperatorContext, resolved: Resolved
) -> tuple[str, str | None] | None:
    """The Secret a rotated refresh token of this request still has to go to, and why it
    may not be written (`None`: a write failed)."""
    writer = ctx.refresh_tokens
    subject = resolved.identity.subject
    if writer is None or subject is None or subject not in writer.unpersisted:
        return None
    location = grants.parse_refresh_subject(subject)
    if location is None:
        return None
    return f"{location[0]}/{location[1]}", writer.refused.get(subject)


def subject_of(token: AccessToken) -> str | None:
    """Whose token: the `sub` the server stated (introspection, registration), else that of
    a JWT access token; `None` when unknown (the status then keeps what introspection
    last said)."""
    if token.claims is not None and token.claims.sub:
        return token.claims.sub
    return unverified_subject(token.value)


def readiness(held: Held, facts: checks.Facts) -> ConditionUpdate:
    verdict = checks.evaluate(checks.READINESS_CHAIN, facts)
    if verdict is not None:
        return not_ready(verdict.reason, verdict.message)
    if held.record.expires_at is None and facts.token is not None:
        # Valid as far as anyone knows: say that nobody knows for how long.
        renewal = "" if facts.renew_at is None else f", renewed at {rfc3339(facts.renew_at)}"
        return ConditionUpdate(
            READY,
            "True",
            "LifetimeUnknown",
            "the Secret holds a token whose lifetime the server did not state; it is"
            f" assumed valid until {rfc3339(facts.token.usable_until)}{renewal}",
        )
    return ConditionUpdate(
        READY,
        "True",
        "TokenValid",
        "the Secret holds a valid token, expiring at " + time_or_unknown(held.record.expires_at),
    )


async def write_status(
    ctx: OperatorContext, own_writes: OwnWrites, request: Request, outcome: Outcome
) -> Body | None:
    """Patch only the status fields and conditions that changed; remember the write
    until the watch shows it, and as an echo if it changed nothing else. The reply, if
    anything was written."""
    conditions = set_conditions(
        request.status.get("conditions"),
        outcome.conditions,
        now=ctx.clock(),
        generation=request.generation,
    )
    patch = {k: v for k, v in outcome.status.items() if request.status.get(k) != v}
    if conditions != request.status.get("conditions"):
        patch["conditions"] = conditions
    if request.status.get("observedGeneration") != request.generation:
        patch["observedGeneration"] = request.generation
    if not patch:
        return None
    patched = await ctx.kube.patch_status(
        ACCESS_TOKEN_REQUEST.plural, request.namespace, request.name, patch
    )
    current = ctx.cache.request(request.key)
    own_writes.wrote(patched, current, echo=changed_only_status(request.body, patched))
    return patched
