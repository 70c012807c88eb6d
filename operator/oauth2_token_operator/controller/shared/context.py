"""Everything the reconcilers share, built once at start (kopf's `memo`)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from oauth2_token_operator.controller.shared.config import OperatorConfig
from oauth2_token_operator.controller.shared.credentials import CredentialReader
from oauth2_token_operator.controller.shared.ledger import RequestKey, TokenLedger
from oauth2_token_operator.controller.shared.metrics import Metrics
from oauth2_token_operator.controller.shared.refresh_tokens import RefreshTokenWriter
from oauth2_token_operator.controller.shared.scheduler import Scheduler
from oauth2_token_operator.kube.api import KubeApi
from oauth2_token_operator.kube.cache import ClusterCache
from oauth2_token_operator.manager import TokenManager

if TYPE_CHECKING:
    from oauth2_token_operator.controller.shared.awaited import Awaited

Body = Mapping[str, Any]


class EventSink(Protocol):
    def __call__(self, body: Body, *, type: str, reason: str, message: str) -> None: ...


@dataclass
class OperatorContext:
    config: OperatorConfig
    kube: KubeApi
    manager: TokenManager
    credentials: CredentialReader
    cache: ClusterCache
    """The cluster as the operator's informers see it (listed before any handler runs, so
    a restart sees every Secret before deciding anything)."""
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
