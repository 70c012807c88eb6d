"""Cross-namespace use of a client: denied unless the client admits the namespace."""

from __future__ import annotations

import pytest

from oauth2_token_operator.api.oauth2client import AllowedNamespaces, LabelSelector
from oauth2_token_operator.policies.access import client_access, selector_matches


def decide(allowed: AllowedNamespaces | None, namespace: str, labels: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return client_access(
        client_namespace="idp",
        client_name="billing",
        allowed=allowed,
        request_namespace=namespace,
        request_namespace_labels=labels,
    )


def test_own_namespace_is_always_allowed() -> None:
    assert decide(None, "idp").allowed


def test_other_namespaces_are_denied_by_default() -> None:
    decision = decide(None, "team-a", {})
    assert not decision.allowed
    assert decision.reason == "ClientNotAllowed"
    assert "idp/billing" in decision.message
    assert "team-a" in decision.message


def test_listed_namespace_is_allowed() -> None:
    allowed = AllowedNamespaces(names=["team-a"])
    assert decide(allowed, "team-a").allowed
    assert not decide(allowed, "team-b", {}).allowed


def test_selected_namespace_is_allowed() -> None:
    allowed = AllowedNamespaces.model_validate({"selector": {"matchLabels": {"tokens": "yes"}}})
    assert decide(allowed, "team-a", {"tokens": "yes"}).allowed
    assert not decide(allowed, "team-b", {"tokens": "no"}).allowed


def test_unknown_labels_cannot_be_selected() -> None:
    allowed = AllowedNamespaces.model_validate({"selector": {}})
    decision = decide(allowed, "team-a", None)
    assert not decision.allowed
    assert "not known" in decision.message


def test_an_empty_selector_admits_every_namespace() -> None:
    allowed = AllowedNamespaces.model_validate({"selector": {}})
    assert decide(allowed, "anything", {}).allowed


@pytest.mark.parametrize(
    ("expression", "labels", "matches"),
    [
        ({"key": "env", "operator": "In", "values": ["prod", "stage"]}, {"env": "prod"}, True),
        ({"key": "env", "operator": "In", "values": ["prod"]}, {}, False),
        ({"key": "env", "operator": "NotIn", "values": ["prod"]}, {"env": "dev"}, True),
        ({"key": "env", "operator": "NotIn", "values": ["prod"]}, {}, True),
        ({"key": "env", "operator": "NotIn", "values": ["prod"]}, {"env": "prod"}, False),
        ({"key": "env", "operator": "Exists"}, {"env": ""}, True),
        ({"key": "env", "operator": "Exists"}, {}, False),
        ({"key": "env", "operator": "DoesNotExist"}, {}, True),
        ({"key": "env", "operator": "DoesNotExist"}, {"env": "x"}, False),
    ],
)
def test_match_expressions(
    expression: dict[str, object], labels: dict[str, str], matches: bool
) -> None:
    selector = LabelSelector.model_validate({"matchExpressions": [expression]})
    assert selector_matches(selector, labels) is matches


def test_match_labels_and_expressions_are_anded() -> None:
    selector = LabelSelector.model_validate(
        {
            "matchLabels": {"team": "a"},
            "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod"]}],
        }
    )
    assert selector_matches(selector, {"team": "a", "env": "prod"})
    assert not selector_matches(selector, {"team": "a", "env": "dev"})
    assert not selector_matches(selector, {"team": "b", "env": "prod"})
