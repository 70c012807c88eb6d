"""Restarts a request's `rolloutRestartTargets` after a new token (as `kubectl rollout
restart` does): for workloads that read the token from an environment variable once.
When is decided by `policies.rollout_restarts`; a target that is missing, not opted in,
or refused by the API server gets a Warning Event, and is tried again with the next token
(never in a loop)."""

from __future__ import annotations

import logging
from typing import Any

from oauth2_token_operator.controller.request.values import Outcome, Request
from oauth2_token_operator.controller.shared.context import OperatorContext
from oauth2_token_operator.controller.shared.log_refs import about_request
from oauth2_token_operator.kube.api import KubeApiError
from oauth2_token_operator.policies.rollout_restarts import (
    RESTARTED_AT,
    restart_plan,
    restart_refusal,
)
from oauth2_token_operator.util.rfc3339 import parse_rfc3339, rfc3339

log = logging.getLogger(__name__)


async def restart_if_due(ctx: OperatorContext, request: Request, outcome: Outcome) -> Outcome:
    """The targets restarted if a new token came since their last restart; the outcome
    records it (or when to look again)."""
    targets: list[dict[str, Any]] = (request.body.get("spec") or {}).get(
        "rolloutRestartTargets"
    ) or []
    if not targets:
        return Outcome()
    now = ctx.clock()
    last = request.status.get("lastRolloutRestartTime")
    try:
        last_restart = parse_rfc3339(last) if last else None
    except ValueError:
        last_restart = None
    plan = restart_plan(
        revision=outcome.status.get("revision", request.status.get("revision")),
        restarted_revision=request.status.get("rolloutRestartRevision"),
        last_restart=last_restart,
        now=now,
        min_interval=ctx.config.rollout_restart_min_interval,
    )
    if not plan.due:
        return Outcome(wake_at=plan.wake_at)
    revision = outcome.status.get("revision", request.status.get("revision"))
    restarted, refused = [], []
    for target in targets:
        kind, name = str(target.get("kind")), str(target.get("name"))
        try:
            workload = await ctx.kube.read_workload(kind, request.namespace, name)
            problem = restart_refusal(kind, name, workload)
            if problem is None:
                await ctx.kube.annotate_pod_template(
                    kind, request.namespace, name, {RESTARTED_AT: rfc3339(now)}
                )
                restarted.append(f"{kind} {name}")
                continue
        except KubeApiError as exc:
            problem = str(exc)
        refused.append(problem)
    if restarted:
        ctx.post_event(
            request.body,
            type="Normal",
            reason="RolloutRestarted",
            message=f"restarted {', '.join(restarted)} for token revision {revision}",
        )
    for problem in refused:
        log.warning("not restarted: %s", problem, extra=about_request(request.key))
        ctx.post_event(
            request.body,
            type="Warning",
            reason="RolloutRestartFailed",
            message=f"not restarted: {problem}; tried again with the next token",
        )
    return Outcome(
        status={"rolloutRestartRevision": revision, "lastRolloutRestartTime": rfc3339(now)}
    )
