"""The operator's own settings (command-line flags and environment), validated."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from oauth2_token_operator.oauth2.egress import (
    DEFAULT_DENIED,
    EgressPolicy,
    parse_host_pattern,
    parse_network,
)
from oauth2_token_operator.policies.service_accounts import DEFAULT_API_AUDIENCES


class OperatorConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    namespaces: tuple[str, ...] = ()
    """Namespaces to watch; empty: all."""
    min_renewal_lead: float = Field(default=90.0, ge=0)
    """Renew no later than this many seconds before expiry, so the kubelet can bring the
    new Secret into mounted volumes (its sync period is up to a minute plus cache TTL)."""
    assumed_token_lifetime: float = Field(default=300.0, ge=10)
    """The lifetime assumed for a token whose server states none (`spec.assumedLifetime`
    overrides it per request): such a token is renewed as if it lived this long, and
    shared no longer than that after it was last confirmed."""
    revocation_deadline: float = Field(default=30.0, gt=0)
    """How long a deletion waits for the authorization server before giving up on
    revocation (the outcome is an Event): a namespace deletion never wedges."""
    rollout_restart_min_interval: float = Field(default=60.0, ge=0)
    """The least time between two restarts of a request's `rolloutRestartTargets`: a token
    renewed more often than this restarts its workloads no more often (the last renewal
    meanwhile is what the next restart brings)."""
    credentials_cache_ttl: float = Field(default=5.0, ge=0)
    """How long client credentials read from Secrets are reused: a burst of issuances
    through one client reads its Secret once; a rotation takes effect after this."""
    retry_base_delay: float = Field(default=5.0, gt=0)
    retry_max_delay: float = Field(default=300.0, gt=0)
    """Failed issuances back off exponentially with full jitter, capped here."""
    client_retry_interval: float = Field(default=60.0, gt=0)
    """How often a client that is not Ready (discovery failed, Secret missing) retries."""
    concurrency: int = Field(default=16, ge=1)
    """Scheduled reconciliations running at once."""
    per_server_concurrency: int = Field(default=8, ge=1)
    """Of those, at most this many for requests of one authorization server (their token
    endpoint): a slow or hung server holds no more slots than that, and its other requests
    wait for one of them without taking a slot (`scheduler`). Half: a hung server leaves
    the others half the slots, and an installation whose requests all use one server
    keeps 8 renewals in flight (renewing 1000 tokens of 20 s on 2 shared cores, a share
    of 4 and one of 16 came within the noise of each other: BENCHMARKS.md, tenth round)."""
    breaker_failures: int = Field(default=5, ge=0)
    """Failed calls in a row (no answer, or HTTP 5xx) after which an endpoint gets no call
    for a cool-down but one trial (`oauth2.breaker`); 0: never."""
    breaker_cooldown: float = Field(default=10.0, gt=0)
    """The first cool-down; doubled at each reopening, up to `retry_max_delay`."""
    heap_trim_interval: float = Field(default=30.0, ge=0)
    """How often memory freed inside the C library's heaps goes back to the system
    (`heap.HeapTrimmer`); 0: never."""
    metrics_port: int | None = Field(default=8080, ge=1, le=65535)
    health_port: int | None = Field(default=8081, ge=1, le=65535)
    metrics_bind_address: str = "0.0.0.0"  # noqa: S104 - a pod's port
    health_bind_address: str = "0.0.0.0"  # noqa: S104
    """The addresses the metrics and liveness endpoints listen on (`::` for IPv6)."""
    deny_cidrs: tuple[str, ...] = DEFAULT_DENIED
    """No OAuth2 call connects to an address in these blocks (after name resolution);
    empty: none denied."""
    allow_issuers: tuple[str, ...] = ()
    """Host patterns every URL the operator calls must match; empty: every host."""
    forbid_insecure_http: bool = False
    """An OAuth2Client's `allowInsecureHTTP: true` is refused (`IssuerNotAllowed`)."""
    kubernetes_api_audiences: tuple[str, ...] = DEFAULT_API_AUDIENCES
    """Audiences the Kubernetes API server accepts (its `--api-audiences`): no
    ServiceAccount token is minted for one of them (`AudienceNotAllowed`)."""
    leader_election: bool = False
    """Run as one of several replicas: only the holder of the Lease works."""
    lease_namespace: str = "default"
    """Where the Lease lives (the operator's own namespace in a Deployment)."""
    lease_name: str = "oauth2-token-operator"
    seal_namespace: str = "default"
    seal_name: str = "oauth2-token-operator-seal"
    """The Secret holding the key that seals token Secrets (`seal`): in the operator's
    own namespace, where no tenant reaches."""
    identity: str = ""
    """This replica's name in the Lease (default: the host name, i.e. the pod's name)."""
    lease_duration: float = Field(default=15.0, gt=0)
    lease_renew_interval: float = Field(default=5.0, gt=0)
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("metrics_bind_address", "health_bind_address")
    @classmethod
    def _an_address(cls, value: str) -> str:
        return str(ipaddress.ip_address(value))

    @field_validator("deny_cidrs")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(str(parse_network(text)) for text in value)

    @field_validator("allow_issuers")
    @classmethod
    def _patterns(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(parse_host_pattern(text) for text in value)

    def egress(self) -> EgressPolicy:
        """The rules every OAuth2 call of the operator obeys."""
        return EgressPolicy.parse(
            self.deny_cidrs, self.allow_issuers, forbid_insecure_http=self.forbid_insecure_http
        )
