"""From an `OAuth2Client` spec and the Secrets it references to the token library's
`IssuerConfig` and `ClientConfig`. Pure: the caller reads the Secrets.

Errors name the object and key that is wrong, never a value read from a Secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from oauth2_token_operator.api.labels import USABLE_BY_OPERATOR, USABLE_VALUE
from oauth2_token_operator.api.oauth2client import SERVICE_ACCOUNT_TOKEN, OAuth2ClientSpec
from oauth2_token_operator.oauth2.client_auth import ClientAssertionSource, ClientConfig
from oauth2_token_operator.oauth2.errors import ConfigurationError
from oauth2_token_operator.oauth2.metadata import IssuerConfig

SecretData = Mapping[str, str]
"""A Secret's or ConfigMap's data, decoded."""

SECRET_NOT_USABLE = "SecretNotUsable"  # noqa: S105 - a condition reason
"""The reason for a referenced Secret that does not grant the operator its use."""
SERVICE_ACCOUNT_NOT_USABLE = "ServiceAccountNotUsable"
"""The reason for a ServiceAccount (`service_account_token`) that does not grant it."""
SERVICE_ACCOUNT = "ServiceAccount"
UID = "uid"
"""What is read of a ServiceAccount: its `metadata.uid`, as the value of this key."""


@dataclass(frozen=True)
class NotUsable:
    """A Secret (or ServiceAccount) that exists but does not carry the opt-in label
    (`api.labels`): its data was not even decoded, and nothing of it is used."""

    namespace: str
    name: str
    kind: str = "Secret"

    @property
    def reason(self) -> str:
        return SERVICE_ACCOUNT_NOT_USABLE if self.kind == SERVICE_ACCOUNT else SECRET_NOT_USABLE

    @property
    def message(self) -> str:
        return not_usable_message(self.namespace, self.name, self.kind)


Found = SecretData | NotUsable | None
"""What reading a referenced object found: its data, a Secret the operator may not use,
or nothing."""


_NO_GRANT = {
    "Secret": "to use it, so the operator reads and writes none of it",
    SERVICE_ACCOUNT: "to act as it, so the operator mints no token of it",
}


def not_usable_message(namespace: str, name: str, kind: str = "Secret") -> str:
    """Why a Secret (or ServiceAccount) is not used, and how whoever may write it grants
    its use."""
    return (
        f"{kind} {namespace}/{name} does not carry the label {USABLE_BY_OPERATOR}="
        f'"{USABLE_VALUE}": naming a {kind} is no grant {_NO_GRANT[kind]}. Whoever may'
        f" write the {kind} grants it with: kubectl label {kind.lower()} {name} -n"
        f" {namespace} {USABLE_BY_OPERATOR}={USABLE_VALUE}"
    )


@dataclass(frozen=True)
class SecretKey:
    """Which object and key of the client's namespace a value comes from (a
    ServiceAccount's: its uid, `UID`)."""

    kind: str
    name: str
    key: str

    def __str__(self) -> str:
        if self.kind == SERVICE_ACCOUNT:
            return f"{self.kind} {self.name!r}"
        return f"{self.kind} {self.name!r} key {self.key!r}"


class ClientConfigError(Exception):
    """The client cannot be used as configured. `reason` is a condition reason;
    `missing`, the key whose object or value is not there, or whose Secret does not grant
    its use (its creation, or the label, may fix it)."""

    def __init__(self, reason: str, message: str, *, missing: SecretKey | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.missing = missing


def referenced_keys(spec: OAuth2ClientSpec) -> list[SecretKey]:
    """Every Secret or ConfigMap key the client needs, in a stable order."""
    auth = spec.authentication
    keys: list[SecretKey] = []
    if auth.client_secret_ref is not None:
        keys.append(SecretKey("Secret", auth.client_secret_ref.name, auth.client_secret_ref.key))
    if auth.private_key_ref is not None:
        keys.append(SecretKey("Secret", auth.private_key_ref.name, auth.private_key_ref.key))
    if auth.tls_secret_ref is not None:
        keys.append(SecretKey("Secret", auth.tls_secret_ref.name, "tls.crt"))
        keys.append(SecretKey("Secret", auth.tls_secret_ref.name, "tls.key"))
    if auth.service_account_ref is not None:
        keys.append(SecretKey(SERVICE_ACCOUNT, auth.service_account_ref.name, UID))
    if spec.tls is not None and spec.tls.ca_bundle_from is not None:
        source = spec.tls.ca_bundle_from
        keys.append(SecretKey(source.kind, source.name, source.key))
    return keys


def issuer_config(spec: OAuth2ClientSpec, values: Mapping[SecretKey, str]) -> IssuerConfig:
    overrides: dict[str, str] = {}
    if spec.endpoints is not None:
        for name, url in (
            ("token_endpoint", spec.endpoints.token),
            ("introspection_endpoint", spec.endpoints.introspection),
            ("revocation_endpoint", spec.endpoints.revocation),
        ):
            if url is not None:
                overrides[name] = url
    ca_pem = spec.tls.ca_bundle if spec.tls is not None else None
    if spec.tls is not None and spec.tls.ca_bundle_from is not None:
        source = spec.tls.ca_bundle_from
        ca_pem = values[SecretKey(source.kind, source.name, source.key)]
    return IssuerConfig(
        issuer=spec.issuer,
        metadata_overrides=overrides,
        allow_insecure_http=spec.allow_insecure_http,
        ca_pem=ca_pem,
    )


def assertion_audience(spec: OAuth2ClientSpec) -> str:
    """The audience of a `service_account_token` client's ServiceAccount tokens."""
    return spec.authentication.audience or spec.issuer


def client_config(
    spec: OAuth2ClientSpec,
    values: Mapping[SecretKey, str],
    *,
    partition: str = "",
    assertions: ClientAssertionSource | None = None,
) -> ClientConfig:
    """The library's client; `values` holds every key of `referenced_keys(spec)`.
    `partition` keeps its tokens apart from other configurations of the same client_id
    (the operator passes the OAuth2Client's `namespace/name`). `assertions`: where a
    `service_account_token` client's ServiceAccount tokens come from."""
    auth = spec.authentication
    fields: dict[str, object] = {
        "client_id": spec.client_id,
        "auth_method": auth.method,
        "token_partition": partition,
    }
    if auth.method == SERVICE_ACCOUNT_TOKEN:
        if assertions is None:
            raise ClientConfigError(
                "InvalidConfiguration",
                "service_account_token: only the operator, in the cluster, mints"
                " ServiceAccount tokens",
            )
        fields["auth_method"] = "client_assertion"
        fields["client_assertion"] = assertions
    if auth.client_secret_ref is not None:
        ref = auth.client_secret_ref
        fields["client_secret"] = values[SecretKey("Secret", ref.name, ref.key)]
    if auth.private_key_ref is not None:
        ref = auth.private_key_ref
        fields["private_key"] = values[SecretKey("Secret", ref.name, ref.key)]
    if auth.tls_secret_ref is not None:
        name = auth.tls_secret_ref.name
        fields["tls_client_cert"] = values[SecretKey("Secret", name, "tls.crt")]
        fields["tls_client_key"] = values[SecretKey("Secret", name, "tls.key")]
    if auth.signing_algorithm is not None:
        fields["signing_alg"] = auth.signing_algorithm
    if auth.key_id is not None:
        fields["key_id"] = auth.key_id
    try:
        return ClientConfig.model_validate(fields)
    except ConfigurationError as exc:  # its message names fields, never their values
        raise ClientConfigError("InvalidCredentials", str(exc)) from None


def configs(
    spec: OAuth2ClientSpec,
    keys: list[SecretKey],
    objects: Mapping[tuple[str, str], Found],
    *,
    partition: str = "",
    assertions: ClientAssertionSource | None = None,
) -> tuple[IssuerConfig, ClientConfig]:
    """The library's issuer and client for `spec`, from the decoded `objects` that
    hold its `keys` (`referenced_keys(spec)`); see `client_config` for the rest."""
    values = collect_values(keys, objects)
    return issuer_config(spec, values), client_config(
        spec, values, partition=partition, assertions=assertions
    )


def collect_values(
    keys: list[SecretKey], objects: Mapping[tuple[str, str], Found]
) -> dict[SecretKey, str]:
    """Pick each key's value from the decoded objects; explain what is missing or not
    to be used."""
    values: dict[SecretKey, str] = {}
    for key in keys:
        data = objects.get((key.kind, key.name))
        if data is None:
            message = f"{key.kind} {key.name!r} not found"
            raise ClientConfigError(f"{key.kind}NotFound", message, missing=key)
        if isinstance(data, NotUsable):
            raise ClientConfigError(data.reason, data.message, missing=key)
        value = without_final_newline(data.get(key.key) or "")
        if not value:
            message = f"{key} is missing or empty"
            raise ClientConfigError(f"{key.kind}KeyMissing", message, missing=key)
        values[key] = value
    return values


def without_final_newline(text: str) -> str:
    """A value as meant: one final line break dropped (`\n` or `\r\n`), as files made
    with `echo` or an editor end, and as `kubectl create secret --from-file` keeps them.
    The operator and the CLI read every Secret, ConfigMap, file and variable value so."""
    if text.endswith("\r\n"):
        return text[:-2]
    return text.removesuffix("\n")
