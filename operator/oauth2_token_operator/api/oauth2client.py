"""`OAuth2Client`: an authorization server and the credentials to talk to it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal

from pydantic import Field, model_validator

from oauth2_token_operator.api.durations import Duration
from oauth2_token_operator.api.references import (
    CONDITIONS_LIST,
    ApiModel,
    CelRule,
    Condition,
    DataKey,
    NamespaceName,
    ObjectName,
    SecretKeySelector,
    SecretReference,
)
from oauth2_token_operator.oauth2.client_auth import AuthMethod

SigningAlgorithm = Literal[
    "HS256", "HS384", "HS512",
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
    "ES256", "ES384", "ES512", "EdDSA",
]  # fmt: skip
LabelValue = Annotated[str, Field(max_length=63)]
ScopeToken = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[!#-\[\]-~]+$")]
"""An RFC 6749 §3.3 scope-token: printable ASCII except space, `"` and `\\`."""
Url = Annotated[str, Field(min_length=1, max_length=2048, pattern=r"^https?://[^\s]+$")]

SECRET_METHODS = ("client_secret_basic", "client_secret_post", "client_secret_jwt")
SERVICE_ACCOUNT_TOKEN = "service_account_token"  # noqa: S105 - a method's name
Method = Literal[AuthMethod, "service_account_token"]
"""The RFC 7591 methods, and `service_account_token`: a Kubernetes ServiceAccount token
sent as an RFC 7523 client assertion."""
Audience = Annotated[str, Field(min_length=1, max_length=2048, pattern=r"^[^\s]+$")]


class ServiceAccountReference(ApiModel):
    """A ServiceAccount in the namespace of the object that refers to it."""

    name: ObjectName
    """Name of the ServiceAccount."""


class Endpoints(ApiModel):
    """Endpoints that replace what discovery finds (servers without, or with wrong, metadata)."""

    token: Url | None = None
    """Token endpoint (RFC 6749 §3.2)."""
    introspection: Url | None = None
    """Introspection endpoint (RFC 7662)."""
    revocation: Url | None = None
    """Revocation endpoint (RFC 7009)."""


class Authentication(ApiModel):
    """How the client authenticates at the token, introspection and revocation endpoints."""

    model_config = CelRule.config(
        CelRule(
            "(self.method in ['client_secret_basic', 'client_secret_post', 'client_secret_jwt'])"
            " == has(self.clientSecretRef)",
            "clientSecretRef is required for the client_secret_* methods and forbidden otherwise",
        ),
        CelRule(
            "(self.method == 'private_key_jwt') == has(self.privateKeyRef)",
            "privateKeyRef is required for private_key_jwt and forbidden otherwise",
        ),
        CelRule(
            "(self.method == 'tls_client_auth') == has(self.tlsSecretRef)",
            "tlsSecretRef is required for tls_client_auth and forbidden otherwise",
        ),
        CelRule(
            "(self.method == 'service_account_token') == has(self.serviceAccountRef)",
            "serviceAccountRef is required for service_account_token and forbidden otherwise",
        ),
        CelRule(
            "!has(self.audience) || self.method == 'service_account_token'",
            "audience applies to service_account_token only",
        ),
        CelRule(
            "!has(self.signingAlgorithm) || (self.method == 'client_secret_jwt'"
            " && self.signingAlgorithm.startsWith('HS')) || (self.method == 'private_key_jwt'"
            " && !self.signingAlgorithm.startsWith('HS'))",
            "signingAlgorithm applies to client_secret_jwt (HS256, HS384, HS512) and"
            " private_key_jwt (RS*, PS*, ES*, EdDSA) only",
        ),
    )

    method: Method = "client_secret_basic"
    """RFC 7591 name of the method, or `service_account_token` (no secret anywhere: a
    short-lived token of a ServiceAccount of this namespace, minted by the operator, is the
    client's credential, sent as an RFC 7523 client assertion). The client's choice, never
    the server's."""
    client_secret_ref: SecretKeySelector | None = None
    """The client secret, for `client_secret_basic`, `client_secret_post` and
    `client_secret_jwt`."""
    private_key_ref: SecretKeySelector | None = None
    """A private key (PEM, or a JWK in JSON) that signs client assertions, for
    `private_key_jwt`."""
    signing_algorithm: SigningAlgorithm | None = None
    """JWS algorithm of the client assertion. Default: HS256 for `client_secret_jwt`;
    derived from the key type for `private_key_jwt`."""
    key_id: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    """`kid` of the assertion's header. Default: the JWK's own `kid`."""
    tls_secret_ref: SecretReference | None = None
    """A Secret of type `kubernetes.io/tls` with the client certificate (`tls.crt`) and
    its key (`tls.key`), for `tls_client_auth`."""
    service_account_ref: ServiceAccountReference | None = None
    """The ServiceAccount whose tokens authenticate the client, for
    `service_account_token`. It must carry the label
    `oauth2.token-operator.io/usable-by-operator: "true"` (`ServiceAccountNotUsable`
    otherwise): naming it is no grant to use it."""
    audience: Audience | None = None
    """The one audience of the ServiceAccount tokens, for `service_account_token`.
    Default: the issuer (Keycloak expects its realm URL; Entra ID
    `api://AzureADTokenExchange`). Never one the Kubernetes API server accepts
    (`AudienceNotAllowed`): the operator's `--kubernetes-api-audience` values."""

    @model_validator(mode="after")
    def _one_credential_for_the_method(self) -> Authentication:
        wanted = {
            "clientSecretRef": (self.client_secret_ref, self.method in SECRET_METHODS),
            "privateKeyRef": (self.private_key_ref, self.method == "private_key_jwt"),
            "tlsSecretRef": (self.tls_secret_ref, self.method == "tls_client_auth"),
            "serviceAccountRef": (
                self.service_account_ref,
                self.method == SERVICE_ACCOUNT_TOKEN,
            ),
        }
        for name, (value, needed) in wanted.items():
            if needed and value is None:
                raise ValueError(f"authentication method {self.method} needs {name}")
            if value is not None and not needed:
                raise ValueError(f"{name} does not apply to authentication method {self.method}")
        if self.audience is not None and self.method != SERVICE_ACCOUNT_TOKEN:
            raise ValueError(f"audience does not apply to authentication method {self.method}")
        alg = self.signing_algorithm
        if alg is not None and not (
            (self.method == "client_secret_jwt" and alg.startswith("HS"))
            or (self.method == "private_key_jwt" and not alg.startswith("HS"))
        ):
            raise ValueError(f"signingAlgorithm {alg} does not fit method {self.method}")
        return self


class CABundleSource(ApiModel):
    """A CA bundle (PEM) kept in a Secret or a ConfigMap of the client's namespace."""

    kind: Literal["Secret", "ConfigMap"]
    """Kind of the object holding the bundle."""
    name: ObjectName
    """Its name."""
    key: DataKey
    """The key of its data that holds the PEM certificates."""


class TLS(ApiModel):
    """How to verify the authorization server. Default: the system's trust store."""

    model_config = CelRule.config(
        CelRule(
            "!(has(self.caBundle) && has(self.caBundleFrom))",
            "set caBundle or caBundleFrom, not both",
        )
    )

    ca_bundle: Annotated[str, Field(min_length=1, max_length=1_048_576)] | None = None
    """PEM certificates, inline."""
    ca_bundle_from: CABundleSource | None = None
    """PEM certificates from a Secret or ConfigMap key."""

    @model_validator(mode="after")
    def _one_source(self) -> TLS:
        if self.ca_bundle is not None and self.ca_bundle_from is not None:
            raise ValueError("set caBundle or caBundleFrom, not both")
        return self


MIN_INTROSPECTION_INTERVAL = timedelta(seconds=10)
"""No tenant makes the operator introspect more often than this (one server call per
token per interval)."""


class ClientIntrospection(ApiModel):
    """Introspection (RFC 7662) through this client."""

    model_config = CelRule.config(
        CelRule(
            "!has(self.minInterval) || duration(self.minInterval) >= duration('10s')",
            "minInterval must be at least 10s",
        )
    )

    min_interval: Duration = Field(
        default=timedelta(seconds=30), json_schema_extra={"default": "30s"}
    )
    """Introspection answers younger than this are reused; requests cannot introspect
    more often. At least 10s."""

    @model_validator(mode="after")
    def _floor(self) -> ClientIntrospection:
        if self.min_interval < MIN_INTROSPECTION_INTERVAL:
            raise ValueError("minInterval must be at least 10s")
        return self


class LabelSelectorRequirement(ApiModel):
    """One `matchExpressions` entry."""

    key: Annotated[str, Field(min_length=1, max_length=317)]
    """The label's key."""
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    """How the label's value relates to `values`."""
    values: Annotated[list[Annotated[str, Field(max_length=63)]], Field(max_length=64)] | None = (
        None
    )
    """Values for `In` and `NotIn`; empty for `Exists` and `DoesNotExist`."""


class LabelSelector(ApiModel):
    """A Kubernetes label selector (`matchLabels` and `matchExpressions`, ANDed)."""

    match_labels: Annotated[dict[str, LabelValue], Field(max_length=64)] | None = None
    """Labels a namespace must carry with exactly these values."""
    match_expressions: Annotated[list[LabelSelectorRequirement], Field(max_length=16)] | None = None
    """Requirements a namespace's labels must meet."""


class AllowedNamespaces(ApiModel):
    """Which namespaces' AccessTokenRequests may use this client. The client's own
    namespace always may. A namespace is admitted when it is listed or matches the
    selector."""

    names: Annotated[list[NamespaceName], Field(max_length=256)] | None = None
    """Namespaces by name."""
    selector: LabelSelector | None = None
    """Namespaces by label; an empty selector admits every namespace."""


class OAuth2ClientSpec(ApiModel):
    model_config = CelRule.config(
        CelRule(
            "self.allowInsecureHTTP || (self.issuer.startsWith('https://')"
            " && (!has(self.endpoints) || ["
            "has(self.endpoints.token) ? self.endpoints.token : 'https://',"
            " has(self.endpoints.introspection) ? self.endpoints.introspection : 'https://',"
            " has(self.endpoints.revocation) ? self.endpoints.revocation : 'https://'"
            "].all(u, u.startsWith('https://'))))",
            "the issuer and endpoints must use https unless allowInsecureHTTP is true",
        )
    )

    issuer: Url
    """Issuer identifier of the authorization server. Its metadata is discovered from
    `/.well-known/oauth-authorization-server` (RFC 8414), then
    `/.well-known/openid-configuration`; the issuer in it must match exactly. The
    operator's egress rules may refuse it, or an endpoint, with `IssuerNotAllowed`: an
    address in its `--deny-cidr` (by default the pod itself and cloud metadata addresses),
    a host outside its `--allow-issuer` patterns."""
    endpoints: Endpoints | None = None
    client_id: Annotated[str, Field(min_length=1, max_length=1024)]
    """The client identifier the authorization server registered."""
    authentication: Authentication
    tls: TLS | None = None
    allow_insecure_http: bool = Field(default=False, alias="allowInsecureHTTP")
    """Allow plain `http://` issuer and endpoints. Only for local testing: tokens and
    credentials would cross the network unencrypted. An operator run with
    `--forbid-insecure-http` refuses it (`IssuerNotAllowed`)."""
    default_scopes: Annotated[list[ScopeToken], Field(max_length=64)] | None = None
    """Scopes of requests that name none."""
    introspection: ClientIntrospection = Field(
        default_factory=ClientIntrospection, json_schema_extra={"default": {}}
    )
    revoke_on_delete: bool = True
    """Revoke a request's token when the request is deleted (requests may override)."""
    allowed_namespaces: AllowedNamespaces | None = None
    """Who else may use this client. Default: requests in its own namespace only."""

    @model_validator(mode="after")
    def _https_unless_allowed(self) -> OAuth2ClientSpec:
        if self.allow_insecure_http:
            return self
        endpoints = self.endpoints or Endpoints()
        for url in (self.issuer, endpoints.token, endpoints.introspection, endpoints.revocation):
            if url is not None and not url.startswith("https://"):
                raise ValueError(
                    "the issuer and endpoints must use https unless allowInsecureHTTP is true"
                )
        return self


class DiscoveredEndpoints(ApiModel):
    token: str | None = None
    """Token endpoint."""
    introspection: str | None = None
    """Introspection endpoint; absent when the server has none."""
    revocation: str | None = None
    """Revocation endpoint; absent when the server has none."""


class OAuth2ClientStatus(ApiModel):
    observed_generation: int | None = None
    """The `metadata.generation` the status was last written for."""
    conditions: list[Condition] = Field(default_factory=list, json_schema_extra=CONDITIONS_LIST)
    """`Ready`: the server's metadata was discovered and the credentials are usable."""
    endpoints: DiscoveredEndpoints | None = None
    """The endpoints in use: discovered, then overridden by `spec.endpoints`."""
    auth_methods_supported: list[str] | None = None
    """`token_endpoint_auth_methods_supported` as the server advertises it."""
    metadata_fetched_at: datetime | None = None
    """When the server's metadata was last fetched."""
