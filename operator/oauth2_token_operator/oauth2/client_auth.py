"""Client authentication at the token, introspection and revocation endpoints.

The method comes from the client's own configuration, never from the
server's metadata (the seed's defect 3). Methods: RFC 6749 §2.3.1
``client_secret_basic`` and ``client_secret_post``; RFC 7523 / OIDC Core §9
``client_secret_jwt`` and ``private_key_jwt``; RFC 8705 ``tls_client_auth``;
``none`` for public clients; ``client_assertion``: an RFC 7523 §2.2 assertion made
elsewhere (a Kubernetes ServiceAccount token, say), which this package only sends.
"""

from __future__ import annotations

import base64
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Self
from urllib.parse import quote_plus

from pydantic import (
    BaseModel,
    ConfigDict,
    ModelWrapValidatorHandler,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic.config import ExtraValues

from oauth2_token_operator.oauth2.algorithms import ASYMMETRIC_ALGORITHMS, HMAC_ALGORITHMS
from oauth2_token_operator.oauth2.errors import ConfigurationError
from oauth2_token_operator.oauth2.tls import TLSConfig

if TYPE_CHECKING:
    from oauth2_token_operator.oauth2.client_assertion import SigningKey

AuthMethod = Literal[
    "client_secret_basic",
    "client_secret_post",
    "client_secret_jwt",
    "private_key_jwt",
    "tls_client_auth",
    "none",
]
"""The methods a client configures with its own credential (or none)."""
ClientAuthMethod = Literal[AuthMethod, "client_assertion"]
"""Those, and sending an assertion made elsewhere (`ClientAssertionSource`)."""

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
"""RFC 7523 §2.2 `client_assertion_type` of a JWT client assertion."""


class ClientAssertionSource(ABC):
    """Where a ``client_assertion`` client's ready-made assertions come from (RFC 7523
    §2.2: a JWT that some other party issued for the client, such as a Kubernetes
    ServiceAccount token), asked for one before each call.

    Compared and hashed by `key` alone, which names where assertions come from, never an
    assertion: a fresh assertion is no new client configuration, so a `ClientConfig`
    holding the source stays equal (its stored tokens, protocol client and connection
    pools stay the same) when the source renews what it hands out.
    """

    def __init__(self, key: str) -> None:
        self.key = key

    @abstractmethod
    async def assertion(self, *, endpoint: str = "token_endpoint") -> str:
        """A currently valid assertion for a call to `endpoint`; raises when none can be
        had (its text must never contain an assertion). A source may hand out for
        revocation what it no longer would for a token."""

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is type(self)
            and isinstance(other, ClientAssertionSource)
            and (other.key == self.key)
        )

    def __hash__(self) -> int:
        return hash((type(self).__qualname__, self.key))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.key!r})"


class ClientConfig(BaseModel):
    """A registered OAuth2 client: who we are to the authorization server.

    Invalid input raises ``ConfigurationError`` (not pydantic's
    ``ValidationError``), whose text names the fields and the problems but
    never a value: see ``_never_echo_input``.
    """

    model_config = ConfigDict(
        frozen=True, extra="forbid", hide_input_in_errors=True, arbitrary_types_allowed=True
    )

    client_id: str
    token_partition: str = ""
    """Tokens are shared only between configurations with the same `client_id` and
    partition. An application that takes client configurations from several owners (the
    operator: one per OAuth2Client object) sets one per owner, so a configuration with
    the right client_id but wrong credentials is never handed another owner's token."""
    auth_method: ClientAuthMethod = "client_secret_basic"
    client_secret: SecretStr | None = None
    private_key: SecretStr | None = None
    """PEM (PKCS#8, PKCS#1 or SEC1) or a private JWK in JSON, for ``private_key_jwt``."""
    signing_alg: str | None = None
    """JWS algorithm; by default HS256 for secrets and derived from the key type for keys."""
    key_id: str | None = None
    """``kid`` header; by default the JWK's own ``kid`` when the key is a JWK."""
    assertion_audience: Literal["token_endpoint", "issuer"] = "token_endpoint"
    assertion_lifetime: float = 60.0
    tls_client_cert: str | None = None
    """PEM certificate chain for ``tls_client_auth``."""
    tls_client_key: SecretStr | None = None
    client_assertion: ClientAssertionSource | None = None
    """For ``client_assertion``: where each call's assertion comes from."""

    @classmethod
    def model_validate_json(
        cls,
        json_data: str | bytes | bytearray,
        *,
        strict: bool | None = None,
        extra: ExtraValues | None = None,
        context: Any | None = None,
        by_alias: bool | None = None,
        by_name: bool | None = None,
    ) -> Self:
        """As pydantic's; malformed JSON, which no validator sees, is not quoted either."""
        try:
            return super().model_validate_json(
                json_data,
                strict=strict,
                extra=extra,
                context=context,
                by_alias=by_alias,
                by_name=by_name,
            )
        except ValidationError as exc:
            problems = describe_validation_errors(exc)
        raise ConfigurationError(f"invalid client configuration: {problems}")

    @model_validator(mode="after")
    def _check_credentials(self) -> ClientConfig:
        method = self.auth_method
        if not self.client_id:
            raise ValueError("client_id must not be empty")
        needs_secret = method in ("client_secret_basic", "client_secret_post", "client_secret_jwt")
        if needs_secret and not (self.client_secret and self.client_secret.get_secret_value()):
            raise ValueError(f"{method} needs a client secret")
        if method == "client_secret_jwt" and (self.signing_alg or "HS256") not in HMAC_ALGORITHMS:
            raise ValueError(f"client_secret_jwt signs with one of {', '.join(HMAC_ALGORITHMS)}")
        if method == "private_key_jwt":
            if not (self.private_key and self.private_key.get_secret_value()):
                raise ValueError("private_key_jwt needs a private key")
            if self.signing_alg is not None and self.signing_alg not in ASYMMETRIC_ALGORITHMS:
                raise ValueError(
                    f"private_key_jwt signs with one of {', '.join(ASYMMETRIC_ALGORITHMS)}"
                )
        if method == "tls_client_auth" and not (self.tls_client_cert and self.tls_client_key):
            raise ValueError("tls_client_auth needs a client certificate and its key")
        if (method == "client_assertion") != (self.client_assertion is not None):
            raise ValueError("a client assertion source is for (and needed by) client_assertion")
        if self.assertion_lifetime <= 0 or self.assertion_lifetime > 600:
            raise ValueError("assertion_lifetime must be within (0, 600] seconds")
        return self

    @model_validator(mode="wrap")
    @classmethod
    def _never_echo_input(
        cls, data: Any, handler: ModelWrapValidatorHandler[ClientConfig]
    ) -> ClientConfig:
        """Replace pydantic's error by one that carries no input.

        ``ValidationError.errors()`` keeps the raw input (for a check across
        fields, the whole input: secret, private key and all), whatever
        ``hide_input_in_errors`` says. ``ConfigurationError`` is not a
        ``ValueError``, so pydantic lets it through unchanged, also when this
        model is validated as part of another one. Declared after the other
        validators so that it wraps them.
        """
        try:
            return handler(data)
        except ValidationError as exc:
            problems = describe_validation_errors(exc)
        # Raised outside the handler, so no exception chain leads back to the input.
        raise ConfigurationError(f"invalid client configuration: {problems}")

    @property
    def uses_mtls(self) -> bool:
        return self.auth_method == "tls_client_auth"

    def tls(self, ca_pem: str | None) -> TLSConfig:
        """The TLS configuration for calls made as this client."""
        if not self.uses_mtls:
            return TLSConfig(ca_pem=ca_pem)
        assert self.tls_client_key is not None
        return TLSConfig(
            ca_pem=ca_pem,
            client_cert_pem=self.tls_client_cert,
            client_key_pem=self.tls_client_key.get_secret_value(),
        )


def describe_validation_errors(exc: ValidationError) -> str:
    """``field: problem; ...`` from pydantic's errors, without their ``input``."""
    problems = []
    for error in exc.errors(include_url=False, include_context=False, include_input=False):
        where = ".".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {message}" if where else message)
    return "; ".join(problems)


@dataclass(frozen=True)
class ClientAuthentication:
    """What to add to one request: headers and form fields."""

    headers: dict[str, str]
    form: dict[str, str]


def basic_credentials(client_id: str, client_secret: str) -> str:
    """RFC 6749 §2.3.1: form-urlencode id and secret, then base64 ``id:secret``."""
    raw = f"{quote_plus(client_id, safe='')}:{quote_plus(client_secret, safe='')}"
    return "Basic " + base64.b64encode(raw.encode("utf-8")).decode("ascii")


class ClientAuthenticator:
    """Adds the configured client authentication to requests.

    The private key is parsed once, not on every request. The JOSE code
    (`client_assertion`, with PyJWT and cryptography: 8.7 MiB of memory once
    imported) is imported only for a client that signs assertions.
    """

    def __init__(self, client: ClientConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self._clock = clock
        self._signing_key: SigningKey | None = None
        if client.auth_method == "private_key_jwt":
            from oauth2_token_operator.oauth2.client_assertion import load_signing_key

            assert client.private_key is not None
            self._signing_key = load_signing_key(
                client.private_key, client.signing_alg, client.key_id, client.client_id
            )

    def authenticate(
        self, *, token_endpoint: str, issuer: str, assertion: str | None = None
    ) -> ClientAuthentication:
        """Credentials for a call to any endpoint; a JWT assertion's ``aud`` is the token
        endpoint or the issuer (RFC 7523 §3), as configured, whichever endpoint is called.
        `assertion`: the ready-made one of a ``client_assertion`` client (its source's)."""
        client = self.client
        method = client.auth_method
        if method == "client_secret_basic":
            assert client.client_secret is not None
            header = basic_credentials(client.client_id, client.client_secret.get_secret_value())
            return ClientAuthentication({"Authorization": header}, {})
        if method == "client_secret_post":
            assert client.client_secret is not None
            return ClientAuthentication(
                {},
                {
                    "client_id": client.client_id,
                    "client_secret": client.client_secret.get_secret_value(),
                },
            )
        if method in ("client_secret_jwt", "private_key_jwt"):
            audience = token_endpoint if client.assertion_audience == "token_endpoint" else issuer
            return ClientAuthentication(
                {},
                {
                    "client_id": client.client_id,
                    "client_assertion_type": JWT_BEARER,
                    "client_assertion": self._assertion(audience),
                },
            )
        if method == "client_assertion":
            if not assertion:
                raise ConfigurationError("client_assertion: no assertion to send")
            # RFC 7521 §4.2: client_id is optional beside an assertion; sent, it names the
            # client for servers that look it up first (Keycloak, Entra ID).
            return ClientAuthentication(
                {},
                {
                    "client_id": client.client_id,
                    "client_assertion_type": JWT_BEARER,
                    "client_assertion": assertion,
                },
            )
        # tls_client_auth (the certificate is on the connection) and none.
        return ClientAuthentication({}, {"client_id": client.client_id})

    def _assertion(self, audience: str) -> str:
        """RFC 7523 §3: iss = sub = client_id, aud, unique jti, short lifetime."""
        from oauth2_token_operator.oauth2.client_assertion import SigningKey, sign

        client = self.client
        now = int(self._clock())
        claims = {
            "iss": client.client_id,
            "sub": client.client_id,
            "aud": audience,
            "jti": secrets.token_urlsafe(24),
            "iat": now,
            "exp": now + int(client.assertion_lifetime),
        }
        if client.auth_method == "client_secret_jwt":
            assert client.client_secret is not None
            secret = client.client_secret.get_secret_value()
            return sign(claims, SigningKey(secret, client.signing_alg or "HS256", None))
        assert self._signing_key is not None
        return sign(claims, self._signing_key)
