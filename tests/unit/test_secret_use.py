"""Which referenced Secrets the operator may use, and write a rotated refresh token into
(`policies.secret_use`, issue 22 item 5)."""

from __future__ import annotations

from typing import Any

import pytest

from oauth2_token_operator.api.labels import USABLE_BY_OPERATOR
from oauth2_token_operator.policies.secret_use import usable, write_back_refusal


def secret(labels: dict[str, str] | None = None, type_: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"metadata": {"name": "grant", "labels": labels}}
    if type_ is not None:
        body["type"] = type_
    return body


@pytest.mark.parametrize(
    ("labels", "granted"),
    [
        ({USABLE_BY_OPERATOR: "true"}, True),
        (None, False),
        ({}, False),
        ({USABLE_BY_OPERATOR: "True"}, False),
        ({USABLE_BY_OPERATOR: "yes"}, False),
        ({USABLE_BY_OPERATOR: ""}, False),
        ({"app.kubernetes.io/managed-by": "oauth2-token-operator"}, False),
    ],
)
def test_only_the_label_set_to_true_grants_use(
    labels: dict[str, str] | None, granted: bool
) -> None:
    assert usable(secret(labels)) is granted


def test_write_back_needs_the_label_and_a_type_that_is_not_kubernetes_own() -> None:
    grant = {USABLE_BY_OPERATOR: "true"}
    assert write_back_refusal(secret(grant), "apps", "grant") is None
    assert write_back_refusal(secret(grant, "Opaque"), "apps", "grant") is None
    assert write_back_refusal(secret(grant, "example.com/grant"), "apps", "grant") is None
    unlabelled = write_back_refusal(secret(None, "Opaque"), "apps", "grant")
    assert unlabelled is not None
    assert f"kubectl label secret grant -n apps {USABLE_BY_OPERATOR}=true" in unlabelled
    for kind in (
        "kubernetes.io/service-account-token",
        "kubernetes.io/dockerconfigjson",
        "kubernetes.io/tls",
        "kubernetes.io/basic-auth",
    ):
        refusal = write_back_refusal(secret(grant, kind), "apps", "grant")
        assert refusal is not None
        assert kind in refusal
