"""What the policy chains and the plan look at for one request (`situation`, gathered
once per reconcile): the held token's facts, its Secret's state against the desired
one, the renewal schedule, whether a renewal or a revocation was asked for, and the
failures so far."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from oauth2_token_operator.api.annotations import RENEW_REQUESTED_AT
from oauth2_token_operator.api.crd import ACCESS_TOKEN_REQUEST
from oauth2_token_operator.api.secret_data import render_data, render_templates
from oauth2_token_operator.api.token_secret import Owner, Template, desired_secret
from oauth2_token_operator.controller.request.values import Request, Resolved
from oauth2_token_operator.controller.shared import grants
from oauth2_token_operator.controller.shared.context import Body, OperatorContext
from oauth2_token_operator.controller.shared.ledger import Held
from oauth2_token_operator.manager import TokenState, assess_validity
from oauth2_token_operator.policies import checks
from oauth2_token_operator.policies.backoff import History
from oauth2_token_operator.policies.on_demand import asks_for_newer
from oauth2_token_operator.policies.plan import Situation
from oauth2_token_operator.policies.renewal import RenewalPolicy, RenewalSchedule, renewal_time
from oauth2_token_operator.util.rfc3339 import parse_rfc3339


def request_facts(
    ctx: OperatorContext,
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
        policy = dataclasses.replace(
            ctx.manager.config.validity, unknown_expiry_lifetime=assumed_lifetime(ctx, resolved)
        )
        validity = assess_validity(held.token, now, policy)
        until = validity.usable_until if validity.usable_until is not None else now
        token_facts = checks.TokenFacts(
            issued_at=held.record.issued_at,
            usable_until=until,
            issued_for=held.record.issued_for,
            active=False if validity.state is TokenState.INACTIVE else held.token.active,
        )
        renew_at = renewal_schedule(ctx, request, resolved, held).renew_at
    if secret_intact:
        secret_facts = checks.INTACT_SECRET
    else:
        desired = None if held is None else desired_token_secret(ctx, request, resolved, held)
        secret_facts = inspect_secret(secret, desired)
    return checks.Facts(
        now=now,
        spec_fingerprint=resolved.identity.fingerprint(),
        token=token_facts,
        secret=secret_facts,
        renew_at=renew_at,
        renewal_requested=held is not None
        and asks_for_newer(request.annotations.get(RENEW_REQUESTED_AT), held.record.issued_at, now),
        revocation_requested=held is not None and revocation_requested(resolved, held, now),
    )


def situation(
    ctx: OperatorContext,
    request: Request,
    resolved: Resolved,
    held: Held | None,
    secret: Body | None,
    now: float,
    *,
    retry_now: bool,
    server_asked_until: float | None,
) -> Situation:
    """What the plan looks at for one reconcile (`policies.plan`), gathered once."""
    return Situation(
        facts=request_facts(ctx, request, resolved, held, secret, now),
        renewable=resolved.identity.grant in grants.RENEWABLE,
        history=History(
            failed_attempts=request.failed_attempts,
            new_spec=request.status.get("observedGeneration") != request.generation,
            next_attempt_at=_time_or_none(request.status.get("nextAttemptTime")),
            server_asked_until=server_asked_until,
            retry_now=retry_now,
        ),
    )


def _time_or_none(value: str | None) -> float | None:
    try:
        return parse_rfc3339(value) if value else None
    except ValueError:
        return None


def assumed_lifetime(ctx: OperatorContext, resolved: Resolved) -> float:
    """Seconds a token whose server stated no lifetime is assumed to live."""
    override = resolved.spec.assumed_lifetime
    return ctx.config.assumed_token_lifetime if override is None else override.total_seconds()


def renewal_schedule(
    ctx: OperatorContext, request: Request, resolved: Resolved, held: Held
) -> RenewalSchedule:
    """When to renew the held token. One whose server stated no lifetime is renewed as if
    it lived `assumed_lifetime` from its issue (an introspection that finds it active does
    not push that back: nothing says how long it lives)."""
    spec = resolved.spec
    policy = RenewalPolicy(
        renew_before=None if spec.renew_before is None else spec.renew_before.total_seconds(),
        renew_before_percentage=spec.renew_before_percentage,
        min_lead=ctx.config.min_renewal_lead,
    )
    expires_at = held.record.expires_at
    if expires_at is None:
        expires_at = held.record.issued_at + assumed_lifetime(ctx, resolved)
    return renewal_time(
        held.record.issued_at,
        expires_at,
        policy,
        seed=f"{request.uid}/{held.record.revision}",
    )


def revocation_requested(resolved: Resolved, held: Held, now: float) -> bool:
    """Does the client's revoke-all annotation ask to revoke the held token?"""
    return asks_for_newer(resolved.revoke_all_requested_at, held.record.issued_at, now)


def desired_token_secret(
    ctx: OperatorContext, request: Request, resolved: Resolved, held: Held
) -> dict[str, Any]:
    token = held.token
    template = resolved.spec.secret_template
    data = render_data(
        access_token=token.value,
        token_type=token.token_type,
        expires_at=token.expires_at,
        scopes=token.scopes,
    )
    return desired_secret(
        name=resolved.secret_name,
        namespace=request.namespace,
        owner=Owner(kind=ACCESS_TOKEN_REQUEST.kind, name=request.name, uid=request.uid),
        template=Template(
            type=template.type, labels=template.labels, annotations=template.annotations
        ),
        data=data | render_templates(template.data or {}, data),
        record=held.record,
        seal_key=ctx.seal_key,
    )


def inspect_secret(
    secret: Mapping[str, Any] | None, desired: Mapping[str, Any] | None
) -> checks.SecretFacts:
    """How an existing Secret (as the API returns it, data base64) compares to `desired`.

    Without a current token (`desired` is `None`) only existence is known.
    Ownership is checked separately (`is_owned_by`): a Secret that is not ours is
    never compared, let alone written.
    """
    if secret is None:
        return checks.SecretFacts(exists=False)
    if desired is None:
        return checks.SecretFacts(exists=True)
    data_intact = (secret.get("data") or {}) == desired["data"]
    have = secret.get("metadata", {})
    want = desired["metadata"]
    metadata_intact = (
        secret.get("type", "Opaque") == desired["type"]
        and _contains(have.get("labels"), want["labels"])
        and _contains(have.get("annotations"), want["annotations"])
    )
    return checks.SecretFacts(exists=True, data_intact=data_intact, metadata_intact=metadata_intact)


def _contains(have: Mapping[str, str] | None, want: Mapping[str, str]) -> bool:
    """Others (users, tools) may add labels and annotations; ours must be there as written."""
    have = have or {}
    return all(have.get(key) == value for key, value in want.items())
