"""No configuration error repeats a secret: not in str, repr, pydantic's
``errors()``/``json()``, nor anywhere in the printed exception chain.

Every invalid combination is fed: each auth method with an empty client id,
missing credentials, wrong types, unknown fields holding secrets, bad
algorithms and lifetimes; then unloadable PEM and JWK keys, TLS material and
proxy URLs with passwords.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable, Iterator
from typing import Any, get_args

import jwt
import pytest
import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import BaseModel, ValidationError

from oauth2_token_operator.oauth2 import (
    AuthMethod,
    ClientConfig,
    ConfigurationError,
    ProxySettings,
    TLSConfig,
)
from oauth2_token_operator.oauth2.client_auth import ClientAuthenticator

SECRET = "Zq8-client-secret-never-shown"
OTHER_SECRET = "Wx5-other-secret-never-shown"


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
KEY_PEM = _pem(RSA_KEY)
EC_KEY_PEM = _pem(ec.generate_private_key(ec.SECP256R1()))
JWK = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(RSA_KEY))
JWK_TEXT = json.dumps(JWK)
CA = trustme.CA()
LEAF = CA.issue_cert("client.example")
TLS_CERT = LEAF.cert_chain_pems[0].bytes().decode()
TLS_KEY = LEAF.private_key_pem.bytes().decode()

#: Every text that must never appear: secrets, every line of every key, JWK private parts.
FORBIDDEN = sorted(
    {SECRET, OTHER_SECRET}
    | {line for pem in (KEY_PEM, EC_KEY_PEM, TLS_KEY) for line in pem.splitlines() if line}
    | {JWK[part] for part in ("d", "p", "q", "dp", "dq", "qi")}
)


def exception_texts(exc: BaseException) -> Iterator[str]:
    """Everything a log line, a status message or a debugger could show."""
    yield str(exc)
    yield repr(exc)
    yield repr(exc.args)
    yield "".join(traceback.format_exception(exc))
    for linked in (exc.__cause__, exc.__context__):
        if linked is not None:
            yield from exception_texts(linked)
    if isinstance(exc, ValidationError):
        yield repr(exc.errors())
        yield exc.json()


def assert_no_secret(exc: BaseException) -> None:
    for text in exception_texts(exc):
        for forbidden in FORBIDDEN:
            assert forbidden not in text, f"{forbidden[:12]}… leaked in {type(exc).__name__}"


ALL_SECRETS: dict[str, Any] = {
    "client_secret": SECRET,
    "private_key": KEY_PEM,
    "tls_client_cert": TLS_CERT,
    "tls_client_key": TLS_KEY,
}
METHODS: tuple[str, ...] = get_args(AuthMethod)


#: What each method cannot do without.
NEEDS: dict[str, tuple[str, ...]] = {
    "client_secret_basic": ("client_secret",),
    "client_secret_post": ("client_secret",),
    "client_secret_jwt": ("client_secret",),
    "private_key_jwt": ("private_key",),
    "tls_client_auth": ("tls_client_cert", "tls_client_key"),
    "none": (),
    "bogus_method": tuple(ALL_SECRETS),
}
SIGNING_METHODS = ("client_secret_jwt", "private_key_jwt")


def invalid_inputs() -> Iterator[tuple[str, Any]]:
    """Each one invalid; all secret material present unless the case removes it."""
    for method in (*METHODS, "bogus_method"):
        ok = {"client_id": "c", "auth_method": method, **ALL_SECRETS}
        yield f"{method}: empty client_id", {**ok, "client_id": ""}
        yield f"{method}: no client_id", {k: v for k, v in ok.items() if k != "client_id"}
        yield f"{method}: client_id not a string", {**ok, "client_id": 7}
        yield f"{method}: unknown field with a secret", {**ok, "clientSecret": OTHER_SECRET}
        yield f"{method}: unknown field with a key", {**ok, "key": EC_KEY_PEM}
        yield f"{method}: secret of the wrong type", {**ok, "client_secret": {"v": SECRET}}
        yield f"{method}: JWK as an object", {**ok, "private_key": JWK}
        yield f"{method}: key as a list of lines", {**ok, "tls_client_key": TLS_KEY.splitlines()}
        yield f"{method}: key as a list of bytes", {**ok, "private_key": [KEY_PEM.encode()]}
        yield f"{method}: zero lifetime", {**ok, "assertion_lifetime": 0}
        yield f"{method}: lifetime not a number", {**ok, "assertion_lifetime": SECRET}
        yield f"{method}: unknown audience", {**ok, "assertion_audience": SECRET}
        for needed in NEEDS[method]:
            yield f"{method}: without {needed}", {k: v for k, v in ok.items() if k != needed}
            yield f"{method}: empty {needed}", {**ok, needed: ""}
        if method in SIGNING_METHODS:
            yield f"{method}: algorithm none", {**ok, "signing_alg": "none"}
            yield (
                f"{method}: algorithm of the other kind",
                {**ok, "signing_alg": "RS256" if method == "client_secret_jwt" else "HS256"},
            )
    yield "a secret instead of a mapping", SECRET


INVALID = list(invalid_inputs())


def constructors() -> dict[str, Callable[[Any], object]]:
    class Outer(BaseModel):
        """The operator will embed ClientConfig in models of its own."""

        client: ClientConfig

    def keywords(data: Any) -> object:
        if isinstance(data, dict):
            return ClientConfig(**data)
        return ClientConfig.model_validate(data)

    return {
        "keywords": keywords,
        "model_validate": ClientConfig.model_validate,
        "model_validate_json": lambda data: ClientConfig.model_validate_json(
            json.dumps(data, default=str)
        ),
        "nested": lambda data: Outer(client=data),
    }


@pytest.mark.parametrize("how", list(constructors()))
@pytest.mark.parametrize(("case", "data"), INVALID, ids=[case for case, _ in INVALID])
def test_invalid_client_configuration_never_echoes_input(case: str, data: Any, how: str) -> None:
    with pytest.raises(ConfigurationError, match=r"^invalid client configuration: ") as caught:
        constructors()[how](data)
    assert_no_secret(caught.value)


@pytest.mark.parametrize(
    "document",
    [
        '{"client_id": "c", "client_secret": "' + SECRET + '"',  # truncated
        '{"client_id": "c", "client_secret": "' + SECRET + '", }',  # trailing comma
        SECRET,
    ],
)
def test_malformed_json_is_not_quoted(document: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        ClientConfig.model_validate_json(document)
    assert_no_secret(caught.value)


def broken_pem(pem: str) -> str:
    """Valid armour and line structure, but one line of the body is damaged."""
    lines = pem.splitlines()
    lines[3] = lines[3][::-1]
    return "\n".join(lines)


@pytest.mark.parametrize(
    "private_key",
    [
        broken_pem(KEY_PEM),
        KEY_PEM.replace("PRIVATE KEY", "PUBLIC KEY"),
        KEY_PEM[: len(KEY_PEM) // 2],
        json.dumps({k: v for k, v in JWK.items() if k != "n"}),  # RSA JWK without modulus
        json.dumps({**JWK, "kty": "XYZ"}),  # unknown key type: PyJWT quotes the JWK
        JWK_TEXT[:-5],  # malformed JSON: json quotes the document
        json.dumps([JWK]),
    ],
    ids=["damaged-pem", "wrong-armour", "truncated-pem", "jwk-no-n", "jwk-bad-kty",
         "bad-json", "jwk-in-list"],
)  # fmt: skip
def test_unloadable_private_keys_are_not_quoted(private_key: str) -> None:
    config = ClientConfig(
        client_id="c", auth_method="private_key_jwt", private_key=private_key, signing_alg="RS256"
    )
    with pytest.raises(ConfigurationError) as caught:
        ClientAuthenticator(config)
    assert_no_secret(caught.value)
    assert "cannot be loaded" in str(caught.value) or "JWK" in str(caught.value)


@pytest.mark.parametrize(
    "key",
    [broken_pem(TLS_KEY), TLS_KEY[: len(TLS_KEY) // 2], EC_KEY_PEM, KEY_PEM],
    ids=["damaged", "truncated", "other-ec-key", "other-rsa-key"],
)
def test_unloadable_tls_client_keys_are_not_quoted(key: str) -> None:
    with pytest.raises(ConfigurationError, match="client certificate or key") as caught:
        TLSConfig(client_cert_pem=TLS_CERT, client_key_pem=key).ssl_context()
    assert_no_secret(caught.value)


def test_an_unusable_ca_bundle_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="CA bundle"):
        TLSConfig(ca_pem=broken_pem(CA.cert_pem.bytes().decode())).ssl_context()


@pytest.mark.parametrize(
    "url",
    [f"socks5://user:{SECRET}@proxy.example:1080", f"http://user:{SECRET}@", f"ftp://u:{SECRET}@p"],
)
def test_proxy_urls_with_passwords_are_not_quoted(url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        ProxySettings(https_proxy=url)
    assert_no_secret(caught.value)
    assert SECRET not in repr(ProxySettings(https_proxy=f"http://user:{SECRET}@proxy.example:3128"))
