"""Everything the reconcilers share, built once at start (kopf's `memo`)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from oauth2_token_operator.controller.config import OperatorConfig
from oauth2_token_operator.controller.credentials import CredentialReader
from oauth2_token_operator.controller.freezing import thawed
from oauth2_token_operator.controller.ledger import RequestKey, TokenLedger
from oauth2_token_operator.controller.metrics import Metrics
from oauth2_token_operator.controller.refresh_tokens import RefreshTokenWriter
from oauth2_token_operator.controller.scheduler import Scheduler
from oauth2_token_operator.kube.api import KubeApi
from oauth2_token_operator.manager import TokenManager

if TYPE_CHECKING:
    from oauth2_token_operator.controller.awaited import Awaited

Body = Mapping[str, Any]


Index = Mapping[Any, Any]
"""Key → the values kept under it: an informer's store (`watches`), or any such mapping
in tests."""


def stored(index: Index, key: Any) -> Any | None:
    """The value indexed under `key`; an object an index keeps frozen (`freezing`) comes
    back as a new dict of its own, which the caller may keep or change."""
    values = index.get(key)
    value = next(iter(values), None) if values else None
    return thawed(value)


@dataclass(frozen=True)
class Views:
    """The cluster as the operator's watches see it (`watches`: listed before any handler
    runs, so a restart sees every Secret before deciding anything)."""

    token_secrets: Index
    """(namespace, name) → Secret labelled as managed by the operator."""
    clients: Index
    """(namespace, name) → OAuth2Client."""
    requests: Index
    """(namespace, name) → AccessTokenRequest."""
    requests_by_client: Index
    """(client namespace, client name) → (namespace, name) of each request using it."""
    namespaces: Index
    """namespace name → `{"labels": …, "terminating": bool}` (see `namespace_labels`)."""

    def namespace_labels(self, namespace: str) -> dict[str, str] | None:
        """The namespace's labels; `None` while the namespace is unknown."""
        facts = stored(self.namespaces, namespace)
        return None if facts is None else dict(facts.get("labels") or {})

    def terminating(self, namespace: str) -> bool:
        """Is the namespace being deleted? (It then takes no new objects, Events included.)"""
        facts = stored(self.namespaces, namespace)
        return facts is not None and bool(facts.get("terminating"))


class EventSink(Protocol):
    def __call__(self, body: Body, *, type: str, reason: str, message: str) -> None: ...


@dataclass
class OperatorContext:
    config: OperatorConfig
    kube: KubeApi
    manager: TokenManager
    credentials: CredentialReader
    views: Views
    post_event: EventSink
    seal_key: bytes
    """Seals the token Secrets the operator writes (`token_secret.seal`)."""
    ledger: TokenLedger = field(default_factory=TokenLedger)
    clock: Callable[[], float] = time.time
    metrics: Metrics = field(default_factory=Metrics)
    refresh_tokens: RefreshTokenWriter | None = None
    request_scheduler: Scheduler[RequestKey] | None = None
    client_scheduler: Scheduler[RequestKey] | None = None
    awaited: Awaited | None = None
    """Missing clients, Secrets and ConfigMaps, and who waits for them (`awaited`)."""
    closing: list[Callable[[], Awaitable[object]]] = field(default_factory=list)
    """What the operator's cleanup closes, in this order (the heap trimmer, the OAuth2
    transport, the Kubernetes API client)."""
