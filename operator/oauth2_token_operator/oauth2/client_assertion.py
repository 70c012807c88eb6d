"""RFC 7523 client assertions: the signing key, loaded once, and the signed JWT.

Imported only by a client that signs (`client_auth.ClientAuthenticator`): PyJWT with
cryptography's bindings cost 8.7 MiB of the operator's memory (measured: RSS before and
after `import jwt`, Python 3.11), which an operator whose clients use secrets or TLS
should not pay.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from pydantic import SecretStr

from oauth2_token_operator.oauth2.algorithms import ASYMMETRIC_ALGORITHMS
from oauth2_token_operator.oauth2.errors import ConfigurationError

_RSA_ALGORITHMS = frozenset(a for a in ASYMMETRIC_ALGORITHMS if a[:2] in ("RS", "PS"))
_EC_ALGORITHM_BY_CURVE = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}


@dataclass(frozen=True)
class SigningKey:
    key: Any = field(repr=False)
    """A cryptography private key, or the client secret for the HMAC algorithms."""
    algorithm: str
    kid: str | None


def load_signing_key(
    private_key: SecretStr, signing_alg: str | None, key_id: str | None, client_id: str
) -> SigningKey:
    """A PEM or JWK private key, its algorithm (given, or the key's default), checked to
    fit each other."""
    text = private_key.get_secret_value().strip()
    kid = key_id
    try:
        if text.startswith("{"):
            jwk = json.loads(text)
            if not isinstance(jwk, dict):
                raise ConfigurationError("the private key is JSON but not a JWK object")
            if "d" not in jwk:
                raise ConfigurationError("the JWK has no private part ('d')")
            kid = kid or jwk.get("kid")
            loaded = jwt.PyJWK(jwk, algorithm=signing_alg or jwk.get("alg"))
            key: Any = loaded.key
        else:
            key = load_pem_private_key(text.encode("utf-8"), password=None)
    except ConfigurationError:
        raise
    except (ValueError, TypeError, jwt.PyJWTError) as exc:
        failure = type(exc).__name__
    else:
        signing = SigningKey(key, signing_alg or _default_algorithm(key), kid)
        _check_key_matches(signing)
        return signing
    # Only the kind of failure, and raised outside the handler: PyJWT's and json's
    # exceptions quote the key, and an exception chain would carry them along.
    raise ConfigurationError(f"private key for client {client_id!r} cannot be loaded ({failure})")


def sign(claims: dict[str, Any], signing: SigningKey) -> str:
    headers = {"kid": signing.kid} if signing.kid else None
    return jwt.encode(claims, signing.key, algorithm=signing.algorithm, headers=headers)


def _default_algorithm(key: Any) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        alg = _EC_ALGORITHM_BY_CURVE.get(key.curve.name)
        if alg:
            return alg
        raise ConfigurationError(f"unsupported EC curve {key.curve.name}")
    if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        return "EdDSA"
    raise ConfigurationError(f"unsupported private key type {type(key).__name__}")


def _check_key_matches(signing: SigningKey) -> None:
    alg, key = signing.algorithm, signing.key
    ok = (
        (alg in _RSA_ALGORITHMS and isinstance(key, rsa.RSAPrivateKey))
        or (alg.startswith("ES") and isinstance(key, ec.EllipticCurvePrivateKey))
        or (alg == "EdDSA" and isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey))
    )
    if not ok:
        raise ConfigurationError(f"signing_alg {alg} does not fit a {type(key).__name__}")
