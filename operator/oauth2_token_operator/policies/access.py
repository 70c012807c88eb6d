"""May a request in one namespace use an OAuth2Client in another? Denied unless the
client's `allowedNamespaces` admits the request's namespace (by name or by label)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from oauth2_token_operator.api.oauth2client import (
    AllowedNamespaces,
    LabelSelector,
    LabelSelectorRequirement,
)
from oauth2_token_operator.policies.reasons import Reason

CLIENT_NOT_ALLOWED = Reason.CLIENT_NOT_ALLOWED
"""The reason a request may not use the client it names."""


@dataclass(frozen=True)
class AccessDecision:
    allowed: bool
    reason: str
    message: str


def client_access(
    *,
    client_namespace: str,
    client_name: str,
    allowed: AllowedNamespaces | None,
    request_namespace: str,
    request_namespace_labels: Mapping[str, str] | None,
) -> AccessDecision:
    """Whether a request in `request_namespace` may use the client.

    `request_namespace_labels` is `None` when the namespace's labels are unknown
    (not yet seen): a selector then cannot admit it, and the decision says so.
    """
    if request_namespace == client_namespace:
        return AccessDecision(True, "SameNamespace", "the client is in the request's namespace")
    if allowed is not None and allowed.names and request_namespace in allowed.names:
        return AccessDecision(True, "NamespaceListed", "the client lists this namespace")
    if allowed is not None and allowed.selector is not None:
        if request_namespace_labels is None:
            return AccessDecision(
                False,
                CLIENT_NOT_ALLOWED,
                f"the labels of namespace {request_namespace} are not known yet",
            )
        if selector_matches(allowed.selector, request_namespace_labels):
            return AccessDecision(True, "NamespaceSelected", "the client's selector admits it")
    return AccessDecision(
        False,
        CLIENT_NOT_ALLOWED,
        f"OAuth2Client {client_namespace}/{client_name} does not allow requests from namespace"
        f" {request_namespace} (see its spec.allowedNamespaces)",
    )


def selector_matches(selector: LabelSelector, labels: Mapping[str, str]) -> bool:
    """Kubernetes label-selector semantics; an empty selector matches everything."""
    for key, value in (selector.match_labels or {}).items():
        if labels.get(key) != value:
            return False
    return all(_requirement_holds(r, labels) for r in selector.match_expressions or ())


def _requirement_holds(requirement: LabelSelectorRequirement, labels: Mapping[str, str]) -> bool:
    values = requirement.values or []
    present = requirement.key in labels
    match requirement.operator:
        case "In":
            return present and labels[requirement.key] in values
        case "NotIn":
            return not present or labels[requirement.key] not in values
        case "Exists":
            return present
        case "DoesNotExist":
            return not present
