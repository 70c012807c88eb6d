"""An OAuth2Client spec plus its Secrets' values → the token library's configuration."""

from __future__ import annotations

import pytest

from oauth2_token_operator.api import OAuth2ClientSpec
from oauth2_token_operator.client_config import (
    ClientConfigError,
    NotUsable,
    SecretKey,
    client_config,
    collect_values,
    issuer_config,
    referenced_keys,
    without_final_newline,
)
from tests.api.cases import VALID_CLIENT

SECRET = "s3cr3t:with/special+chars%&="


def spec(**changes: object) -> OAuth2ClientSpec:
    return OAuth2ClientSpec.model_validate({**VALID_CLIENT, **changes})


def test_client_secret_basic() -> None:
    s = spec()
    keys = referenced_keys(s)
    assert keys == [SecretKey("Secret", "billing-client", "client-secret")]
    values = collect_values(keys, {("Secret", "billing-client"): {"client-secret": SECRET}})
    config = client_config(s, values)
    assert config.client_id == "billing"
    assert config.auth_method == "client_secret_basic"
    assert config.client_secret is not None
    assert config.client_secret.get_secret_value() == SECRET


def test_tls_client_auth_reads_both_keys_of_the_tls_secret() -> None:
    s = spec(authentication={"method": "tls_client_auth", "tlsSecretRef": {"name": "client-tls"}})
    assert referenced_keys(s) == [
        SecretKey("Secret", "client-tls", "tls.crt"),
        SecretKey("Secret", "client-tls", "tls.key"),
    ]


def test_endpoint_overrides_and_inline_ca() -> None:
    s = spec(
        endpoints={"token": "https://login.example.com/oauth/token"},
        tls={"caBundle": "-----BEGIN CERTIFICATE-----"},
    )
    issuer = issuer_config(s, {})
    assert issuer.metadata_overrides == {"token_endpoint": "https://login.example.com/oauth/token"}
    assert issuer.ca_pem == "-----BEGIN CERTIFICATE-----"
    assert issuer.allow_insecure_http is False


def test_ca_bundle_from_a_config_map() -> None:
    s = spec(tls={"caBundleFrom": {"kind": "ConfigMap", "name": "ca", "key": "ca.crt"}})
    keys = referenced_keys(s)
    assert SecretKey("ConfigMap", "ca", "ca.crt") in keys
    values = collect_values(
        keys,
        {
            ("Secret", "billing-client"): {"client-secret": SECRET},
            ("ConfigMap", "ca"): {"ca.crt": "PEM"},
        },
    )
    assert issuer_config(s, values).ca_pem == "PEM"


def test_missing_secret_and_missing_key_are_named() -> None:
    keys = referenced_keys(spec())
    with pytest.raises(ClientConfigError) as missing:
        collect_values(keys, {("Secret", "billing-client"): None})
    assert missing.value.reason == "SecretNotFound"
    assert "billing-client" in missing.value.message
    with pytest.raises(ClientConfigError) as no_key:
        collect_values(keys, {("Secret", "billing-client"): {"other": "x"}})
    assert no_key.value.reason == "SecretKeyMissing"
    assert "client-secret" in no_key.value.message


def test_a_secret_that_does_not_grant_its_use_says_how_to_grant_it() -> None:
    keys = referenced_keys(spec())
    with pytest.raises(ClientConfigError) as refused:
        collect_values(keys, {("Secret", "billing-client"): NotUsable("apps", "billing-client")})
    assert refused.value.reason == "SecretNotUsable"
    assert refused.value.missing == keys[0], "waited for like a missing Secret"
    assert (
        "kubectl label secret billing-client -n apps"
        " oauth2.token-operator.io/usable-by-operator=true"
    ) in refused.value.message


def test_invalid_credentials_are_reported_without_their_value() -> None:
    """An HMAC client assertion with an RSA algorithm: refused by the library's model,
    reported as a condition reason with pydantic's message and never the secret."""
    s = spec(
        authentication={
            "method": "client_secret_jwt",
            "clientSecretRef": {"name": "k", "key": "secret"},
        }
    )
    values = {SecretKey("Secret", "k", "secret"): SECRET}
    assert client_config(s, values).auth_method == "client_secret_jwt"
    broken = s.model_copy(
        update={"authentication": s.authentication.model_copy(update={"key_id": ""})}
    )
    with pytest.raises(ClientConfigError) as caught:
        client_config(broken.model_copy(update={"client_id": ""}), values)
    assert caught.value.reason == "InvalidCredentials"
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(caught.value.__cause__)


@pytest.mark.parametrize(
    ("stored", "sent"),
    [
        (SECRET + "\n", SECRET),  # kubectl create secret --from-file of an `echo`ed file
        (SECRET + "\r\n", SECRET),
        (SECRET + "\n\n", SECRET + "\n"),  # one line break only: the rest is the value's
        (" " + SECRET + " ", " " + SECRET + " "),  # spaces are the value's
    ],
)
def test_one_final_line_break_is_not_part_of_a_secret(stored: str, sent: str) -> None:
    """One rule for the operator and the CLI (`client_config.without_final_newline`)."""
    keys = referenced_keys(spec())
    values = collect_values(keys, {("Secret", "billing-client"): {"client-secret": stored}})
    config = client_config(spec(), values)
    assert config.client_secret is not None
    assert config.client_secret.get_secret_value() == sent
    assert without_final_newline(stored) == sent


def test_a_secret_of_only_a_line_break_is_missing() -> None:
    keys = referenced_keys(spec())
    with pytest.raises(ClientConfigError, match="missing or empty"):
        collect_values(keys, {("Secret", "billing-client"): {"client-secret": "\n"}})
