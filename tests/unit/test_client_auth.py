import base64
import json
from collections.abc import Callable
from urllib.parse import unquote_plus

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from oauth2_token_operator.oauth2.client_auth import (
    ClientAuthenticator,
    ClientConfig,
    basic_credentials,
)
from oauth2_token_operator.oauth2.errors import ConfigurationError

TOKEN_ENDPOINT = "https://as.example/oauth/token"
ISSUER = "https://as.example"

#: The key types a private_key_jwt client signs with (and PyJWT verifies with their public half).
SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def pem(key: SigningKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def authenticate(client: ClientConfig) -> tuple[dict[str, str], dict[str, str]]:
    auth = ClientAuthenticator(client).authenticate(token_endpoint=TOKEN_ENDPOINT, issuer=ISSUER)
    return auth.headers, auth.form


def test_basic_form_urlencodes_id_and_secret_before_base64() -> None:
    """RFC 6749 §2.3.1 (the seed's defect 6): a ':' in the secret must not split it."""
    header = basic_credentials("my client", "s3cr3t:with/special+chars%&=")
    raw = base64.b64decode(header.removeprefix("Basic ")).decode()
    assert raw == "my+client:s3cr3t%3Awith%2Fspecial%2Bchars%25%26%3D"
    client_id, secret = raw.split(":")
    assert unquote_plus(client_id) == "my client"
    assert unquote_plus(secret) == "s3cr3t:with/special+chars%&="


def test_client_secret_post_puts_credentials_in_the_form() -> None:
    headers, form = authenticate(
        ClientConfig(client_id="c", auth_method="client_secret_post", client_secret="s")
    )
    assert headers == {}
    assert form == {"client_id": "c", "client_secret": "s"}


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_client_secret_jwt_claims(alg: str) -> None:
    secret = "x" * 64
    client = ClientConfig(
        client_id="c", auth_method="client_secret_jwt", client_secret=secret, signing_alg=alg
    )
    _, form = authenticate(client)
    assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    claims = jwt.decode(form["client_assertion"], secret, algorithms=[alg], audience=TOKEN_ENDPOINT)
    assert claims["iss"] == claims["sub"] == "c"
    assert claims["exp"] - claims["iat"] == 60
    assert jwt.get_unverified_header(form["client_assertion"])["alg"] == alg


def es256_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


KEYS: dict[str, Callable[[], SigningKey]] = {
    "RS256": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "ES256": es256_key,
    "ES384": lambda: ec.generate_private_key(ec.SECP384R1()),
    "ES512": lambda: ec.generate_private_key(ec.SECP521R1()),
    "EdDSA": ed25519.Ed25519PrivateKey.generate,
}


@pytest.mark.parametrize("alg", sorted(KEYS))
def test_private_key_jwt_derives_the_algorithm_from_the_key(alg: str) -> None:
    key = KEYS[alg]()
    client = ClientConfig(client_id="c", auth_method="private_key_jwt", private_key=pem(key))
    _, form = authenticate(client)
    assertion = form["client_assertion"]
    assert jwt.get_unverified_header(assertion)["alg"] == alg
    claims = jwt.decode(
        assertion,
        key.public_key(),
        algorithms=[alg],
        audience=TOKEN_ENDPOINT,
    )
    assert claims["iss"] == claims["sub"] == "c"


def test_private_key_jwt_ps256_and_issuer_audience_and_unique_jti() -> None:
    key = KEYS["RS256"]()
    client = ClientConfig(
        client_id="c",
        auth_method="private_key_jwt",
        private_key=pem(key),
        signing_alg="PS256",
        key_id="k1",
        assertion_audience="issuer",
    )
    authenticator = ClientAuthenticator(client)
    assertions = [
        authenticator.authenticate(token_endpoint=TOKEN_ENDPOINT, issuer=ISSUER).form[
            "client_assertion"
        ]
        for _ in range(20)
    ]
    header = jwt.get_unverified_header(assertions[0])
    assert header["alg"] == "PS256"
    assert header["kid"] == "k1"
    jtis = {jwt.decode(a, key.public_key(), algorithms=["PS256"], audience=ISSUER)["jti"]
            for a in assertions}  # fmt: skip
    assert len(jtis) == 20


def test_private_key_as_jwk_keeps_its_kid() -> None:
    key = es256_key()
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key))
    jwk["kid"] = "from-jwk"
    client = ClientConfig(client_id="c", auth_method="private_key_jwt", private_key=json.dumps(jwk))
    _, form = authenticate(client)
    assert jwt.get_unverified_header(form["client_assertion"])["kid"] == "from-jwk"


def test_public_jwk_is_refused() -> None:
    key = es256_key()
    public = jwt.algorithms.ECAlgorithm.to_jwk(key.public_key())
    with pytest.raises(ConfigurationError, match="no private part"):
        ClientAuthenticator(
            ClientConfig(client_id="c", auth_method="private_key_jwt", private_key=public)
        )


def test_algorithm_must_fit_the_key() -> None:
    client = ClientConfig(
        client_id="c", auth_method="private_key_jwt", private_key=pem(KEYS["ES256"]()),
        signing_alg="RS256",
    )  # fmt: skip
    with pytest.raises(ConfigurationError, match="does not fit"):
        ClientAuthenticator(client)


def test_unloadable_key_error_does_not_echo_the_key() -> None:
    garbage = "-----BEGIN PRIVATE KEY-----\nTOPSECRETMATERIAL\n-----END PRIVATE KEY-----"
    client = ClientConfig(client_id="c", auth_method="private_key_jwt", private_key=garbage)
    with pytest.raises(ConfigurationError) as caught:
        ClientAuthenticator(client)
    assert "TOPSECRETMATERIAL" not in str(caught.value)
    assert "TOPSECRETMATERIAL" not in repr(caught.value)


@pytest.mark.parametrize("method", ["tls_client_auth", "none"])
def test_certificate_and_public_clients_send_only_their_id(method: str) -> None:
    extra = {"tls_client_cert": "CERT", "tls_client_key": "KEY"} if method != "none" else {}
    headers, form = authenticate(ClientConfig(client_id="c", auth_method=method, **extra))
    assert headers == {}
    assert form == {"client_id": "c"}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"auth_method": "client_secret_basic"}, "needs a client secret"),
        ({"auth_method": "client_secret_post", "client_secret": ""}, "needs a client secret"),
        ({"auth_method": "client_secret_jwt", "client_secret": "s", "signing_alg": "RS256"},
         "signs with one of HS256"),
        ({"auth_method": "private_key_jwt"}, "needs a private key"),
        ({"auth_method": "private_key_jwt", "private_key": "k", "signing_alg": "HS256"},
         "signs with one of RS256"),
        ({"auth_method": "tls_client_auth"}, "needs a client certificate"),
        ({"auth_method": "client_secret_basic", "client_secret": "s", "assertion_lifetime": 0},
         "assertion_lifetime"),
        ({"auth_method": "bogus"}, "auth_method"),
    ],
)  # fmt: skip
def test_client_config_validation(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        ClientConfig(client_id="c", **fields)


def test_secrets_stay_out_of_repr() -> None:
    client = ClientConfig(client_id="c", client_secret="hunter2-secret")
    assert "hunter2-secret" not in repr(client)
    assert "hunter2-secret" not in str(client.model_dump())
