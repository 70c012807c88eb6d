"""The values one AccessTokenRequest reconciliation passes around: the request as
read, what it resolved to, what it decided, and the few condition helpers every step
shares."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from oauth2_token_operator.api import AccessTokenRequestSpec, OAuth2ClientSpec
from oauth2_token_operator.api.references import SecretKeySelector
from oauth2_token_operator.controller.shared.context import Body
from oauth2_token_operator.controller.shared.ledger import RequestKey
from oauth2_token_operator.policies.access import CLIENT_NOT_ALLOWED as CLIENT_NOT_ALLOWED
from oauth2_token_operator.policies.identity import TokenIdentity
from oauth2_token_operator.policies.outcome import SECRET_CONFLICT as SECRET_CONFLICT
from oauth2_token_operator.policies.outcome import Outcome as Outcome
from oauth2_token_operator.policies.outcome import not_ready as not_ready
from oauth2_token_operator.policies.outcome import secret_conflict as secret_conflict
from oauth2_token_operator.policies.outcome import time_or_unknown as time_or_unknown


class Blocked(Exception):
    """The request cannot be served until something else changes (reason, message)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Request:
    """An AccessTokenRequest as read from its body."""

    namespace: str
    name: str
    uid: str
    generation: int | None
    body: Body
    status: dict[str, Any]
    annotations: dict[str, str]
    key: RequestKey
    """`(namespace, name)`."""
    failed_attempts: int
    """Failed issuances in a row (`status.failedAttempts`)."""

    @classmethod
    def of(cls, body: Body) -> Request:
        meta = body.get("metadata", {})
        # Interned: the key is kept by the ledger, the scheduler and the metrics, from
        # bodies decoded anew on each read (`kube.cache`); one copy for all.
        namespace, name = sys.intern(meta["namespace"]), sys.intern(meta["name"])
        status = dict(body.get("status") or {})
        return cls(
            namespace=namespace,
            name=name,
            uid=meta["uid"],
            generation=meta.get("generation"),
            body=body,
            status=status,
            annotations=dict(meta.get("annotations") or {}),
            key=(namespace, name),
            failed_attempts=int(status.get("failedAttempts") or 0),
        )


@dataclass(frozen=True)
class Resolved:
    """The request's client and the token it wants."""

    spec: AccessTokenRequestSpec
    client_namespace: str
    client_spec: OAuth2ClientSpec
    identity: TokenIdentity
    secret_name: str
    source_value: str | None = None
    """For `register`: the token read from the user's Secret."""
    revoke_all_requested_at: str | None = None
    """The client's revoke-all annotation, as written (see `policies.on_demand`)."""
    source: SecretKeySelector | None = None
    """The user's Secret key the grant reads (`grants.source_ref`: refresh token, or
    registered token), found once at resolution."""
