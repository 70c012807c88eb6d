"""Whether the operator may use a Secret that a spec references (issue 22, item 5). Pure.

Naming a Secret in an OAuth2Client or AccessTokenRequest is no grant: the Secret must
carry the opt-in label (`api.labels.USABLE_BY_OPERATOR`), set by whoever may write it.
Without it the operator decodes none of its data. The operator's own token Secrets are
not referenced Secrets and need no label (it writes them; `token_secret`).

A rotated refresh token is written back only into a Secret that grants its use and is
not of one of Kubernetes' own types (`kubernetes.io/…`, whose keys mean something to the
cluster), and only into the key the spec names (`grants.parse_refresh_subject`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from oauth2_token_operator.api.accesstokenrequest import KUBERNETES_TYPES
from oauth2_token_operator.api.labels import USABLE_BY_OPERATOR, USABLE_VALUE
from oauth2_token_operator.client_config import not_usable_message


def usable(secret: Mapping[str, Any]) -> bool:
    """Whether the Secret (as the API server returned it) grants the operator its use."""
    labels = (secret.get("metadata") or {}).get("labels") or {}
    return bool(labels.get(USABLE_BY_OPERATOR) == USABLE_VALUE)


def write_back_refusal(secret: Mapping[str, Any], namespace: str, name: str) -> str | None:
    """Why a rotated refresh token may not be written into `secret`; `None` if it may."""
    if not usable(secret):
        return not_usable_message(namespace, name)
    secret_type = str(secret.get("type") or "Opaque")
    if secret_type.startswith(KUBERNETES_TYPES):
        return (
            f"Secret {namespace}/{name} is of type {secret_type}, one of Kubernetes' own,"
            " which the operator never writes to: keep the refresh token in an Opaque Secret"
        )
    return None
