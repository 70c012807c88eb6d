"""`policies.rollout_restarts`: once per new token, never sooner than the minimum
interval, and only a workload that opted in."""

from __future__ import annotations

from typing import Any

import pytest

from oauth2_token_operator.policies.rollout_restarts import (
    RestartPlan,
    restart_plan,
    restart_refusal,
)


@pytest.mark.parametrize(
    ("revision", "restarted", "last", "now", "plan"),
    [
        (None, None, None, 100.0, RestartPlan(due=False)),  # no token yet
        (1, None, None, 100.0, RestartPlan(due=True)),  # the first token
        (1, 1, 50.0, 100.0, RestartPlan(due=False)),  # done for this token
        (2, 1, 50.0, 100.0, RestartPlan(due=False, wake_at=110.0)),  # held back
        (2, 1, 40.0, 100.0, RestartPlan(due=True)),  # the interval is over
        (3, 1, 95.0, 100.0, RestartPlan(due=False, wake_at=155.0)),  # one restart, newest
    ],
)
def test_when(
    revision: int | None, restarted: int | None, last: float | None, now: float, plan: RestartPlan
) -> None:
    found = restart_plan(
        revision=revision, restarted_revision=restarted, last_restart=last, now=now,
        min_interval=60.0,
    )  # fmt: skip
    assert found == plan


@pytest.mark.parametrize(
    ("workload", "refused"),
    [
        (None, "not found"),
        ({"metadata": {"labels": {}}}, "lacks the label"),
        ({"metadata": {"labels": {"oauth2.token-operator.io/usable-by-operator": "yes"}}}, "lacks"),
        ({"metadata": {"labels": {"oauth2.token-operator.io/usable-by-operator": "true"}}}, None),
    ],
)
def test_whom(workload: dict[str, Any] | None, refused: str | None) -> None:
    problem = restart_refusal("Deployment", "reader", workload)
    assert (problem is None) if refused is None else (problem is not None and refused in problem)
