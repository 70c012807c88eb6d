"""The OAuth2 core against a real, certified authorization server (oidc-provider)."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

import pytest
import trustme
from cryptography import x509
from cryptography.x509.oid import NameOID

from oauth2_token_operator.oauth2 import (
    AuthorizationServer,
    ClientConfig,
    IssuerConfig,
    MetadataCache,
    OAuth2Transport,
)
from oauth2_token_operator.oauth2.errors import (
    ConfigurationError,
    InvalidClientError,
    InvalidGrantError,
    IssuerMismatchError,
    NoResponseError,
)
from tests.authserver.fixtures import AuthServer
from tests.integration.conftest import Counters, client_config

pytestmark = pytest.mark.authserver


def server_for(
    issuer: IssuerConfig, client: ClientConfig, transport: OAuth2Transport
) -> AuthorizationServer:
    return AuthorizationServer(
        issuer, client, transport=transport, metadata_cache=MetadataCache(transport)
    )


def path(url: str) -> str:
    return urlsplit(url).path


def _name_attribute(name: x509.Name, oid: x509.ObjectIdentifier) -> str:
    """The one value of ``oid`` in ``name`` (trustme names carry each attribute once)."""
    (attribute,) = name.get_attributes_for_oid(oid)
    return str(attribute.value)


# -- discovery --------------------------------------------------------------------------------


async def test_discovery_uses_the_rfc8414_url_and_caches_it(
    authserver: AuthServer, issuer: IssuerConfig, transport: OAuth2Transport, counters: Counters
) -> None:
    cache = MetadataCache(transport)
    metadata = await cache.get(issuer)
    assert metadata.issuer == authserver.issuer
    assert metadata.token_endpoint == f"{authserver.issuer}/token"
    assert metadata.mtls_endpoint_aliases
    # RFC 8414 first; oidc-provider serves it, so no OpenID Connect fallback request.
    # (The fallback is tested against a server that answers 404, in test_transport_faults.)
    assert counters.delta("/.well-known/oauth-authorization-server") == 1
    assert counters.delta("/.well-known/openid-configuration") == 0
    await cache.get(issuer)
    assert counters.delta("/.well-known/oauth-authorization-server") == 1  # cached


async def test_issuer_mismatch_is_refused(
    authserver: AuthServer, transport: OAuth2Transport
) -> None:
    # This listener serves the main provider, whose metadata names the https issuer.
    config = IssuerConfig(issuer=authserver.mismatch_url, allow_insecure_http=True)
    with pytest.raises(IssuerMismatchError, match="expected exactly"):
        await MetadataCache(transport).get(config)


async def test_plain_http_is_refused_without_opt_in_and_works_with_it(
    authserver: AuthServer, transport: OAuth2Transport
) -> None:
    client = client_config(authserver.http_client)
    refused = server_for(IssuerConfig(issuer=authserver.http_issuer), client, transport)
    with pytest.raises(ConfigurationError, match="plain http"):
        await refused.client_credentials()
    allowed = server_for(
        IssuerConfig(issuer=authserver.http_issuer, allow_insecure_http=True), client, transport
    )
    token = await allowed.client_credentials()
    assert token.access_token
    assert token.token_type == "Bearer"


async def test_tls_is_verified_by_default(
    authserver: AuthServer, transport: OAuth2Transport
) -> None:
    """Without the test CA the system trust store refuses the server's certificate."""
    untrusted = IssuerConfig(issuer=authserver.issuer)
    with pytest.raises(NoResponseError, match="ConnectError"):
        await MetadataCache(transport).get(untrusted)


# -- client authentication ---------------------------------------------------------------------

METHODS = [
    ("client_secret_basic", None),
    ("client_secret_post", None),
    ("client_secret_jwt", "HS256"),
    ("client_secret_jwt", "HS384"),
    ("client_secret_jwt", "HS512"),
    ("private_key_jwt", "RS256"),
    ("private_key_jwt", "PS256"),
    ("private_key_jwt", "ES256"),
    ("private_key_jwt", "EdDSA"),
    ("tls_client_auth", None),
]


@pytest.mark.parametrize(("method", "alg"), METHODS)
async def test_each_auth_method_obtains_a_client_credentials_token(
    authserver: AuthServer,
    issuer: IssuerConfig,
    transport: OAuth2Transport,
    config_for: Callable[..., ClientConfig],
    counters: Counters,
    method: str,
    alg: str | None,
) -> None:
    client = config_for(method, alg)
    server = server_for(issuer, client, transport)
    scopes = frozenset(authserver.resource_scopes[:2])
    token = await server.client_credentials(scopes, resources=[authserver.resource])
    assert token.scopes == scopes
    assert token.expires_at is not None
    introspection = await server.introspect(token.access_token)
    assert introspection.active
    assert introspection.client_id == client.client_id
    assert introspection.aud in (authserver.resource, [authserver.resource])
    if method == "tls_client_auth":
        # RFC 8705 §5: the mTLS alias is used, never the regular endpoint.
        assert counters.delta("listener=mtls /token") == 1
        assert counters.delta("listener=main /token") == 0


@pytest.mark.parametrize(
    ("method", "alg"), [m for m in METHODS if m[0] in ("client_secret_basic", "client_secret_post",
                                                         "client_secret_jwt")]
)  # fmt: skip
async def test_a_wrong_secret_gives_invalid_client_without_leaking_it(
    issuer: IssuerConfig,
    transport: OAuth2Transport,
    config_for: Callable[..., ClientConfig],
    method: str,
    alg: str | None,
) -> None:
    wrong = "wrong-secret-" + "z" * 64
    server = server_for(issuer, config_for(method, alg, client_secret=wrong), transport)
    with pytest.raises(InvalidClientError) as caught:
        await server.client_credentials()
    message = str(caught.value)
    assert message.startswith("token_endpoint: invalid_client")
    assert "wrong-secret" not in message
    assert caught.value.status_code in (400, 401)


async def test_a_wrong_private_key_gives_invalid_client(
    authserver: AuthServer, issuer: IssuerConfig, transport: OAuth2Transport
) -> None:
    client = authserver.clients["private_key_jwt"]
    # Sign with the ES256 key but claim the RS256 key's id: the signature cannot verify.
    stranger = client_config(client, "ES256", key_id=client.kids.get("RS256") or "unknown-kid")
    with pytest.raises(InvalidClientError):
        await server_for(issuer, stranger, transport).client_credentials()


async def test_a_certificate_from_another_ca_gives_invalid_client(
    authserver: AuthServer, issuer: IssuerConfig, transport: OAuth2Transport
) -> None:
    genuine = authserver.clients["tls_client_auth"]
    assert genuine.cert_file is not None
    # The genuine certificate's identity (subject DN and SAN, which is also what the server
    # registered as tls_client_auth_subject_dn), under a CA with the same name as the one
    # the server trusts but another key: only the CA check can refuse it.
    genuine_cert = x509.load_pem_x509_certificate(genuine.cert_file.read_bytes())
    san = genuine_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    identities = [*san.get_values_for_type(x509.DNSName)]
    identities += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    forger = trustme.CA(
        organization_name=_name_attribute(genuine_cert.issuer, NameOID.ORGANIZATION_NAME),
        organization_unit_name=_name_attribute(
            genuine_cert.issuer, NameOID.ORGANIZATIONAL_UNIT_NAME
        ),
    )
    forged = forger.issue_cert(
        *identities,
        common_name=_name_attribute(genuine_cert.subject, NameOID.COMMON_NAME),
        organization_name=_name_attribute(genuine_cert.subject, NameOID.ORGANIZATION_NAME),
        organization_unit_name=_name_attribute(
            genuine_cert.subject, NameOID.ORGANIZATIONAL_UNIT_NAME
        ),
    )
    forged_cert = x509.load_pem_x509_certificate(forged.cert_chain_pems[0].bytes())
    assert forged_cert.subject == genuine_cert.subject
    assert forged_cert.issuer == genuine_cert.issuer
    assert forged_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value == san
    trusted_ca = x509.load_pem_x509_certificate(authserver.ca_bundle.read_bytes())
    forger_ca = x509.load_pem_x509_certificate(forger.cert_pem.bytes())
    assert forger_ca.subject == trusted_ca.subject
    assert forger_ca.public_key() != trusted_ca.public_key()
    client = ClientConfig(
        client_id=genuine.client_id,
        auth_method="tls_client_auth",
        tls_client_cert=forged.cert_chain_pems[0].bytes().decode(),
        tls_client_key=forged.private_key_pem.bytes().decode(),
    )
    with pytest.raises(InvalidClientError):
        await server_for(issuer, client, transport).client_credentials()


async def test_client_auth_method_comes_from_the_client_not_the_server(
    issuer: IssuerConfig, transport: OAuth2Transport, config_for: Callable[..., ClientConfig]
) -> None:
    """The seed's defect 3: it read the method from the server's metadata.

    The server is made to advertise only client_secret_basic; the client is
    registered for client_secret_post, and oidc-provider refuses any other
    method for it. Only a library that follows the client's configuration
    gets a token.
    """
    advertised_basic_only = IssuerConfig(
        issuer=issuer.issuer,
        ca_pem=issuer.ca_pem,
        metadata_overrides={"token_endpoint_auth_methods_supported": ["client_secret_basic"]},
    )
    server = server_for(advertised_basic_only, config_for("client_secret_post"), transport)
    assert (await server.client_credentials()).access_token


# -- grants ------------------------------------------------------------------------------------


async def test_unknown_scopes_are_silently_dropped_and_the_echo_is_used(
    authserver: AuthServer,
    issuer: IssuerConfig,
    transport: OAuth2Transport,
    config_for: Callable[..., ClientConfig],
) -> None:
    server = server_for(issuer, config_for("client_secret_basic"), transport)
    known = authserver.resource_scopes[0]
    token = await server.client_credentials(
        frozenset({known, "no-such-scope"}), resources=[authserver.resource]
    )
    assert token.scope_echoed
    assert token.scopes == {known}


async def test_refresh_narrows_scope_rotates_and_a_reused_token_is_invalid_grant(
    authserver: AuthServer,
    issuer: IssuerConfig,
    transport: OAuth2Transport,
    config_for: Callable[..., ClientConfig],
    counters: Counters,
) -> None:
    client = authserver.clients["client_secret_basic"]
    initial = authserver.password_grant(client, authserver.user_scopes)
    first_refresh_token = initial["refresh_token"]
    server = server_for(issuer, config_for("client_secret_basic"), transport)
    narrowed = frozenset(authserver.user_scopes[:1]) | {"offline_access"}
    narrowed &= frozenset(authserver.user_scopes)

    refreshed = await server.refresh(first_refresh_token, scopes=narrowed)
    assert refreshed.scopes <= narrowed
    assert refreshed.refresh_token
    assert refreshed.refresh_token != first_refresh_token

    with pytest.raises(InvalidGrantError) as caught:
        await server.refresh(first_refresh_token)
    assert "invalid_grant" in str(caught.value)
    assert first_refresh_token not in str(caught.value)
    # The library never revokes anything while refreshing.
    assert counters.delta("/token/revocation") == 0


async def test_public_client_refreshes_with_auth_method_none(
    authserver: AuthServer,
    issuer: IssuerConfig,
    transport: OAuth2Transport,
    config_for: Callable[..., ClientConfig],
) -> None:
    initial = authserver.password_grant(authserver.clients["none"], authserver.user_scopes)
    server = server_for(issuer, config_for("none"), transport)
    refreshed = await server.refresh(initial["refresh_token"])
    assert refreshed.access_token
    assert refreshed.refresh_token != initial["refresh_token"]


# -- introspection and revocation --------------------------------------------------------------


async def test_introspection_active_then_inactive_after_revocation(
    authserver: AuthServer,
    issuer: IssuerConfig,
    transport: OAuth2Transport,
    config_for: Callable[..., ClientConfig],
) -> None:
    server = server_for(issuer, config_for("client_secret_post"), transport)
    token = await server.client_credentials(
        frozenset(authserver.resource_scopes[:1]), resources=[authserver.resource]
    )
    before = await server.introspect(token.access_token)
    assert before.active
    assert before.exp is not None
    assert before.scopes == frozenset(authserver.resource_scopes[:1])
    await server.revoke(token.access_token)
    after = await server.introspect(token.access_token)
    assert after.active is False
    # RFC 7009 §2.2: revoking an unknown or already revoked token is a success too.
    await server.revoke(token.access_token)
    await server.revoke("never-issued-token")
