"""`AccessTokenRequest`: keep a valid access token with these scopes in this Secret."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, model_validator

from oauth2_token_operator.api.durations import Duration
from oauth2_token_operator.api.labels import USABLE_BY_OPERATOR
from oauth2_token_operator.api.oauth2client import (
    MIN_INTROSPECTION_INTERVAL,
    Audience,
    LabelValue,
    ScopeToken,
)
from oauth2_token_operator.api.references import (
    CONDITIONS_LIST,
    DATA_KEY_PATTERN,
    ApiModel,
    CelRule,
    Condition,
    NamespaceName,
    ObjectName,
    SecretKeySelector,
)
from oauth2_token_operator.api.secret_data import (
    DATA_KEYS,
    MAX_TEMPLATE_LENGTH,
    MAX_TEMPLATES,
    template_problem,
)

Grant = Literal["client_credentials", "refresh_token", "register", "token_exchange"]
SecretType = Annotated[str, Field(min_length=1, max_length=253)]
ResourceUri = Annotated[
    str, Field(min_length=1, max_length=2048, pattern=r"^[a-zA-Z][a-zA-Z0-9+.-]*:[^\s#]+$")
]
"""An absolute URI without a fragment (RFC 8707 §2)."""


class ClientReference(ApiModel):
    """The `OAuth2Client` to use."""

    name: ObjectName
    """Name of the `OAuth2Client`."""
    namespace: NamespaceName | None = None
    """Default: the request's namespace. Another namespace works only when that client's
    `allowedNamespaces` admits this request's namespace."""


class AccessTokenRequestReference(ApiModel):
    """An `AccessTokenRequest` in the namespace of the request that refers to it."""

    name: ObjectName
    """Name of the `AccessTokenRequest`."""


class ServiceAccountSubject(ApiModel):
    """A ServiceAccount of the request's namespace whose token is the subject token."""

    name: ObjectName
    """Name of the ServiceAccount. It must carry the label
    `oauth2.token-operator.io/usable-by-operator: "true"` (`ServiceAccountNotUsable`
    otherwise): naming it is no grant to act as it."""
    audience: Audience | None = None
    """The one audience of its tokens. Default: the issuer of the request's OAuth2Client.
    Never one the Kubernetes API server accepts (`AudienceNotAllowed`): the operator's
    `--kubernetes-api-audience` values."""


class SubjectTokenSource(ApiModel):
    """Where the subject token of a token exchange comes from: exactly one of
    `accessTokenRequestRef` and `serviceAccountRef`."""

    model_config = CelRule.config(
        CelRule(
            "has(self.accessTokenRequestRef) != has(self.serviceAccountRef)",
            "set exactly one of accessTokenRequestRef and serviceAccountRef",
        )
    )

    access_token_request_ref: AccessTokenRequestReference | None = None
    """The access token the operator holds for another `AccessTokenRequest` of this
    namespace: the one it obtained itself (never read from that request's Secret, which
    others may write), sent only to the server that issued it (the same issuer,
    endpoints and TLS settings), and only while it is valid. Each exchange uses that
    request's token of the moment (`subject_token_type`
    `urn:ietf:params:oauth:token-type:access_token`)."""
    service_account_ref: ServiceAccountSubject | None = None
    """A token of a ServiceAccount of this namespace (`subject_token_type`
    `urn:ietf:params:oauth:token-type:jwt`), minted by the operator with the TokenRequest
    API for the shortest lifetime the API server grants, kept in memory only, reused for
    most of its life, as for `service_account_token` client authentication."""

    @model_validator(mode="after")
    def _one_source(self) -> SubjectTokenSource:
        if (self.access_token_request_ref is None) == (self.service_account_ref is None):
            raise ValueError("set exactly one of accessTokenRequestRef and serviceAccountRef")
        return self


class TokenExchange(ApiModel):
    """The `token_exchange` grant (RFC 8693): a subject token exchanged for an access
    token. The new token's `audience`, `resources` and `scopes` are the request's own
    fields of those names."""

    subject_token_from: SubjectTokenSource
    """The subject token (`subject_token`)."""


KUBERNETES_TYPES = "kubernetes.io/"
"""Prefix of the Secret types Kubernetes itself gives a meaning (service account tokens,
registry credentials, TLS): the operator neither writes a token Secret of such a type
nor writes a rotated refresh token into one."""
TEMPLATE_TYPE_MESSAGE = (
    "secretTemplate.type must be Opaque or a type of your own, not one of Kubernetes'"
    f" ({KUBERNETES_TYPES}*)"
)
TEMPLATE_LABEL_MESSAGE = (
    f"secretTemplate.labels cannot carry {USABLE_BY_OPERATOR}: only whoever may write"
    " a Secret grants the operator its use"
)


class SecretTemplate(ApiModel):
    """Extra metadata of the Secret the token is written to."""

    model_config = CelRule.config(
        CelRule(
            f"!has(self.type) || !self.type.startsWith('{KUBERNETES_TYPES}')", TEMPLATE_TYPE_MESSAGE
        ),
        CelRule(
            f"!has(self.labels) || !('{USABLE_BY_OPERATOR}' in self.labels)",
            TEMPLATE_LABEL_MESSAGE,
        ),
        CelRule(
            "!has(self.data) || self.data.all(k, size(k) <= 253"
            f" && k.matches('{DATA_KEY_PATTERN}'))",
            "secretTemplate.data keys are Secret keys: letters, digits, '-', '_' and '.'",
        ),
        CelRule(
            "!has(self.data) || self.data.all(k, !(k in "
            + "["
            + ", ".join(f"'{key}'" for key in DATA_KEYS)
            + "]))",
            "secretTemplate.data cannot set a standard key (" + ", ".join(DATA_KEYS) + ")",
        ),
    )

    type: SecretType = "Opaque"
    """The Secret's `type`: `Opaque` or a type of your own. Not one of Kubernetes' own
    (`kubernetes.io/…`): those mean something to the cluster (a
    `kubernetes.io/service-account-token` Secret is filled with a ServiceAccount's token)."""
    labels: Annotated[dict[str, LabelValue], Field(max_length=64)] | None = None
    """Labels added to the Secret (beside the operator's own); not
    `oauth2.token-operator.io/usable-by-operator`, which only whoever may write a Secret
    sets."""
    annotations: (
        Annotated[dict[str, Annotated[str, Field(max_length=4096)]], Field(max_length=64)] | None
    ) = None
    """Annotations added to the Secret (beside the operator's own)."""
    data: (
        Annotated[
            dict[str, Annotated[str, Field(max_length=MAX_TEMPLATE_LENGTH)]],
            Field(max_length=MAX_TEMPLATES),
        ]
        | None
    ) = None
    """Extra keys of the Secret, each rendered from a template over the token's values:
    `$access_token`, `$token_type`, `$expires_at`, `$scope`, `$authorization` (or
    `${name}`), and each as a JSON string with `_json` (`${access_token_json}`); `$$` is
    a dollar sign. Nothing else: no expressions, files or environment. A token is always
    data, never template. E.g. `.netrc: "machine api.example.com password $access_token"`.
    Not one of the standard keys."""

    @model_validator(mode="after")
    def _no_kubernetes_type_nor_grant(self) -> SecretTemplate:
        if self.type.startswith(KUBERNETES_TYPES):
            raise ValueError(TEMPLATE_TYPE_MESSAGE)
        if USABLE_BY_OPERATOR in (self.labels or {}):
            raise ValueError(TEMPLATE_LABEL_MESSAGE)
        for key, text in (self.data or {}).items():
            problem = template_problem(key, text)
            if problem is not None:
                raise ValueError(problem)
        return self


class RolloutRestartTarget(ApiModel):
    """A workload of the request's namespace restarted after each new token (as `kubectl
    rollout restart` does), for a process that reads the token from an environment
    variable once. It must carry the label `oauth2.token-operator.io/usable-by-operator:
    "true"`: whoever may create a request does not thereby restart others' workloads."""

    kind: Literal["Deployment", "StatefulSet", "DaemonSet"]
    """The workload's kind (`apps/v1`)."""
    name: ObjectName
    """Its name, in the request's namespace."""


class RequestIntrospection(ApiModel):
    """Periodic introspection (RFC 7662) of the token in the Secret."""

    model_config = CelRule.config(
        CelRule(
            "!has(self.interval) || duration(self.interval) >= duration('10s')",
            "interval must be at least 10s",
        )
    )

    interval: Duration | None = None
    """Introspect the token this often (RFC 7662); an inactive token is replaced at once.
    Never more often than the client's `introspection.minInterval`, nor than every 10s.
    Default: never."""

    @model_validator(mode="after")
    def _floor(self) -> RequestIntrospection:
        if self.interval is not None and self.interval < MIN_INTROSPECTION_INTERVAL:
            raise ValueError("interval must be at least 10s")
        return self


class AccessTokenRequestSpec(ApiModel):
    model_config = CelRule.config(
        CelRule(
            "(self.grant == 'refresh_token') == has(self.refreshTokenSecretRef)",
            "refreshTokenSecretRef is required for the refresh_token grant and forbidden otherwise",
        ),
        CelRule(
            "(self.grant == 'register') == has(self.tokenSecretRef)",
            "tokenSecretRef is required for the register grant and forbidden otherwise",
        ),
        CelRule(
            "(self.grant == 'token_exchange') == has(self.tokenExchange)",
            "tokenExchange is required for the token_exchange grant and forbidden otherwise",
        ),
        CelRule(
            "!(has(self.renewBefore) && has(self.renewBeforePercentage))",
            "set renewBefore or renewBeforePercentage, not both",
        ),
        CelRule(
            "!has(self.renewBefore) || duration(self.renewBefore) > duration('0s')",
            "renewBefore must be longer than zero",
        ),
        CelRule(
            "!has(self.assumedLifetime) || duration(self.assumedLifetime) >= duration('10s')",
            "assumedLifetime must be at least 10s",
        ),
        CelRule(
            "self.grant != 'register' || (!has(self.resources) && !has(self.audience))",
            "resources and audience cannot be requested for a registered token",
        ),
    )

    client_ref: ClientReference
    grant: Grant = "client_credentials"
    """How the token is obtained: `client_credentials` (RFC 6749 §4.4), `refresh_token`
    (§6, from a refresh token in `refreshTokenSecretRef`), `register` (a token obtained
    elsewhere, in `tokenSecretRef`: introspected, tracked, revoked on delete, renewed by
    nobody) or `token_exchange` (RFC 8693, from the subject token `tokenExchange` names;
    renewed by exchanging again)."""
    scopes: Annotated[list[ScopeToken], Field(max_length=64)] | None = None
    """Scopes to request. Default: the client's `defaultScopes`; for `register`, any."""
    resources: Annotated[list[ResourceUri], Field(max_length=16)] | None = None
    """Resource indicators (RFC 8707): the APIs the token is meant for."""
    audience: Annotated[str, Field(min_length=1, max_length=2048)] | None = None
    """The `audience` parameter some servers take instead of, or beside, `resources`
    (for `token_exchange`: RFC 8693's `audience`, the target service)."""
    refresh_token_secret_ref: SecretKeySelector | None = None
    """Where the refresh token is, for the `refresh_token` grant. A rotated refresh token is
    written back here before the new access token is published."""
    token_secret_ref: SecretKeySelector | None = None
    """Where the externally obtained access token is, for the `register` grant."""
    token_exchange: TokenExchange | None = None
    """The subject token to exchange, for the `token_exchange` grant."""
    secret_name: ObjectName | None = None
    """The Secret the token is written to. Default: the request's name."""
    secret_template: SecretTemplate = Field(
        default_factory=SecretTemplate, json_schema_extra={"default": {}}
    )
    renew_before: Duration | None = None
    """Renew this long before expiry. Default: at 2/3 of the token's lifetime."""
    renew_before_percentage: Annotated[int, Field(ge=1, le=99)] | None = None
    """Renew when this percentage of the lifetime remains."""
    assumed_lifetime: Duration | None = None
    """The lifetime assumed for a token whose server states none (no `expires_in`, no
    `exp` at introspection; RFC 6749 allows that): it is renewed by the rule above as if
    it lived this long, and trusted no longer. Default: the operator's
    `--assumed-token-lifetime` (5m)."""
    introspection: RequestIntrospection | None = None
    rollout_restart_targets: Annotated[list[RolloutRestartTarget], Field(max_length=16)] | None = (
        None
    )
    """Workloads restarted after each new token (at most once per the operator's
    `--rollout-restart-min-interval`, 60 s by default), for processes that read the token
    from an environment variable. A mounted Secret file is better: the kubelet updates it
    in place, with no restart. Each target must carry the opt-in label."""
    revoke_on_delete: bool | None = None
    """Revoke the token when this request is deleted. Default: the client's
    `revokeOnDelete`."""

    @model_validator(mode="after")
    def _grant_inputs(self) -> AccessTokenRequestSpec:
        for name, value, grant in (
            ("refreshTokenSecretRef", self.refresh_token_secret_ref, "refresh_token"),
            ("tokenSecretRef", self.token_secret_ref, "register"),
            ("tokenExchange", self.token_exchange, "token_exchange"),
        ):
            if (value is not None) != (self.grant == grant):
                raise ValueError(
                    f"{name} is required for the {grant} grant and forbidden otherwise"
                )
        if self.renew_before is not None and self.renew_before_percentage is not None:
            raise ValueError("set renewBefore or renewBeforePercentage, not both")
        if self.grant == "register" and (self.resources or self.audience):
            raise ValueError("resources and audience cannot be requested for a registered token")
        if self.renew_before is not None and self.renew_before.total_seconds() <= 0:
            raise ValueError("renewBefore must be longer than zero")
        if self.assumed_lifetime is not None and self.assumed_lifetime.total_seconds() < 10:
            raise ValueError("assumedLifetime must be at least 10s")
        return self


class LastIntrospection(ApiModel):
    """The last introspection answer for the token in the Secret."""

    active: bool
    """Whether the authorization server said the token is active."""
    time: datetime
    """When it said so."""
    first_look: bool | None = None
    """Whether it was the token's first introspection: two tokens in a row inactive at
    their first one make the `IntrospectionReliable` condition False (the server's answers
    are then not acted on; see docs/authorization-servers.md)."""


class AccessTokenRequestStatus(ApiModel):
    observed_generation: int | None = None
    """The `metadata.generation` the status was last written for."""
    conditions: list[Condition] = Field(default_factory=list, json_schema_extra=CONDITIONS_LIST)
    """`Ready` (the Secret holds a valid, unexpired token), `Issuing` (an issuance is in
    progress, its reason the trigger) and, once introspection has gone wrong,
    `IntrospectionReliable` (False: `InactiveAtIssue` or `IntrospectionUnsupported`)."""
    secret_name: str | None = None
    """The Secret the token is written to."""
    token_type: str | None = None
    """The token's type, as the server said it (e.g. `Bearer`)."""
    granted_scopes: list[str] | None = None
    """What the server granted; a condition says when it is less than requested."""
    subject: str | None = None
    """The token's `sub`, when known."""
    issued_at: datetime | None = None
    """When the token in the Secret was issued."""
    expires_at: datetime | None = None
    """When it expires; absent when the server gave no expiry."""
    renewal_time: datetime | None = None
    """When the operator will renew the token (its schedule; a retry after a failure is
    `nextAttemptTime`)."""
    revision: int | None = None
    """Incremented with each issuance."""
    failed_attempts: int | None = None
    """Failed issuances since the last success."""
    last_failure_time: datetime | None = None
    """When the last issuance failed."""
    next_attempt_time: datetime | None = None
    """While issuances fail: when the next attempt goes (exponential backoff with jitter,
    or a server's `Retry-After`; rarely, when only a change can help)."""
    rejected_refresh_token: str | None = None
    """A digest of the refresh token the server refused (SHA-256, 16 hex digits; never
    the token): it is not sent again, across restarts too. A new refresh token in the
    Secret is tried at the next look."""
    last_introspection: LastIntrospection | None = None
    rollout_restart_revision: int | None = None
    """The token revision `rolloutRestartTargets` were last restarted for."""
    last_rollout_restart_time: datetime | None = None
    """When they were."""
