"""Smoke tests of the oidc-provider fixture itself (not of the operator's OAuth2 library).

Every request is spelled out with plain httpx so that a failure points at the server's
configuration, not at client code.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote_plus

import httpx
import jwt
import pytest

from tests.authserver.fixtures import AuthServer

pytestmark = pytest.mark.authserver

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@pytest.fixture(scope="module")
def http(authserver: AuthServer) -> Iterator[httpx.Client]:
    with httpx.Client(verify=authserver.ssl_context(), timeout=10.0) as client:
        yield client


def basic(client_id: str, secret: str) -> dict[str, str]:
    """RFC 6749 §2.3.1: application/x-www-form-urlencoded id and secret, then Basic."""
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def assertion(client_id: str, key: str, alg: str, aud: str) -> dict[str, str]:
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": aud,
        "jti": uuid.uuid4().hex,
        "iat": now,
        "exp": now + 60,
    }
    return {
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": jwt.encode(claims, key, algorithm=alg),
    }


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def post(
    http: httpx.Client, url: str, headers: dict[str, str] | None = None, /, **data: str
) -> dict[str, Any]:
    """POST a form, expect 200, return the JSON body."""
    return ok(http.post(url, data=data, headers=headers))


def test_discovery(authserver: AuthServer, http: httpx.Client) -> None:
    meta = ok(http.get(f"{authserver.issuer}/.well-known/openid-configuration"))
    assert meta["issuer"] == authserver.issuer
    assert meta["token_endpoint"] == authserver.token_endpoint
    assert meta["introspection_endpoint"] == authserver.introspection_endpoint
    assert meta["revocation_endpoint"] == authserver.revocation_endpoint
    assert meta["mtls_endpoint_aliases"] == {
        "token_endpoint": f"{authserver.mtls_base}/token",
        "introspection_endpoint": f"{authserver.mtls_base}/token/introspection",
        "revocation_endpoint": f"{authserver.mtls_base}/token/revocation",
    }
    assert {
        "client_secret_basic",
        "client_secret_post",
        "client_secret_jwt",
        "private_key_jwt",
        "tls_client_auth",
        "none",
    } <= set(meta["token_endpoint_auth_methods_supported"])
    assert {"client_credentials", "refresh_token", "password"} <= set(meta["grant_types_supported"])

    plain = ok(httpx.get(f"{authserver.http_issuer}/.well-known/openid-configuration"))
    assert plain["issuer"] == authserver.http_issuer
    assert plain["token_endpoint"] == f"{authserver.http_issuer}/token"

    mismatch = ok(httpx.get(f"{authserver.mismatch_url}/.well-known/openid-configuration"))
    assert mismatch["issuer"] == authserver.issuer != authserver.mismatch_url


def test_client_secret_basic_needs_form_urlencoding(
    authserver: AuthServer, http: httpx.Client
) -> None:
    client = authserver.clients["client_secret_basic"]
    assert client.client_secret is not None
    assert set(":/+%&= ") <= set(client.client_secret)
    data = {"grant_type": "client_credentials"}

    auth = basic(client.client_id, client.client_secret)
    token = ok(http.post(authserver.token_endpoint, data=data, headers=auth))
    assert token["token_type"] == "Bearer"
    assert token["access_token"]

    # httpx's own Basic auth does not form-urlencode: oidc-provider decodes per spec and refuses.
    raw = http.post(
        authserver.token_endpoint, data=data, auth=(client.client_id, client.client_secret)
    )
    assert raw.status_code == 400
    assert raw.json()["error"] == "invalid_request"


def test_client_secret_post(authserver: AuthServer, http: httpx.Client) -> None:
    client = authserver.clients["client_secret_post"]
    assert client.client_secret is not None
    post(
        http,
        authserver.token_endpoint,
        grant_type="client_credentials",
        client_id=client.client_id,
        client_secret=client.client_secret,
    )


def test_client_secret_jwt_hs512(authserver: AuthServer, http: httpx.Client) -> None:
    client = authserver.clients["client_secret_jwt"]
    assert client.client_secret is not None
    signed = assertion(client.client_id, client.client_secret, "HS512", authserver.token_endpoint)
    post(http, authserver.token_endpoint, grant_type="client_credentials", **signed)


@pytest.mark.parametrize(
    ("alg", "aud"),
    [("RS256", "token"), ("PS256", "issuer"), ("ES256", "token"), ("EdDSA", "issuer")],
)
def test_private_key_jwt(authserver: AuthServer, http: httpx.Client, alg: str, aud: str) -> None:
    client = authserver.clients["private_key_jwt"]
    audience = authserver.token_endpoint if aud == "token" else authserver.issuer
    signed = assertion(client.client_id, client.private_keys[alg], alg, audience)
    post(http, authserver.token_endpoint, grant_type="client_credentials", **signed)


def test_tls_client_auth_on_mtls_alias(authserver: AuthServer) -> None:
    client = authserver.clients["tls_client_auth"]
    data = {"grant_type": "client_credentials", "client_id": client.client_id}
    with httpx.Client(verify=authserver.ssl_context(client)) as mtls:
        ok(mtls.post(authserver.mtls_token_endpoint, data=data))
        # The main listener does not ask for a certificate.
        refused = mtls.post(authserver.token_endpoint, data=data)
    assert refused.status_code == 401
    assert refused.json()["error"] == "invalid_client"


def test_client_credentials_scopes(authserver: AuthServer, http: httpx.Client) -> None:
    client = authserver.clients["client_secret_basic"]
    assert client.client_secret is not None
    auth = basic(client.client_id, client.client_secret)
    url = authserver.token_endpoint
    grant = "client_credentials"
    with_resource = post(
        http, url, auth, grant_type=grant, scope="read write unknown", resource=authserver.resource
    )
    assert with_resource["scope"] == "read write"  # unknown scope silently dropped
    # Without a resource indicator oidc-provider keeps only OpenID scopes: none here.
    without = post(http, url, auth, grant_type=grant, scope="read write")
    assert "scope" not in without


def test_password_grant_refresh_rotation(authserver: AuthServer, http: httpx.Client) -> None:
    client = authserver.clients["client_secret_basic"]
    assert client.client_secret is not None
    scopes = [*authserver.user_scopes, "read", "write"]
    first = authserver.password_grant(client, scopes, resource=authserver.resource)
    assert first["scope"] == "read write"
    old = first["refresh_token"]

    def refresh(token: str, **extra: str) -> httpx.Response:
        assert client.client_secret is not None
        return http.post(
            authserver.token_endpoint,
            headers=basic(client.client_id, client.client_secret),
            data={"grant_type": "refresh_token", "refresh_token": token, **extra},
        )

    narrowed = ok(refresh(old, scope="read"))
    assert narrowed["scope"] == "read"
    assert narrowed["refresh_token"] != old  # rotated

    reused = refresh(old)
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"
    # Reuse detection revoked the whole grant, the rotated token included.
    assert refresh(narrowed["refresh_token"]).json()["error"] == "invalid_grant"


def test_public_client_password_grant(authserver: AuthServer, http: httpx.Client) -> None:
    client = authserver.clients["none"]
    token = authserver.password_grant(client, ["offline_access"])
    refreshed = post(
        http,
        authserver.token_endpoint,
        grant_type="refresh_token",
        refresh_token=token["refresh_token"],
        client_id=client.client_id,
    )
    assert refreshed["refresh_token"] != token["refresh_token"]


def test_introspection_and_revocation(authserver: AuthServer, http: httpx.Client) -> None:
    client = authserver.clients["client_secret_post"]
    assert client.client_secret is not None
    auth = {"client_id": client.client_id, "client_secret": client.client_secret}

    def active(token: str) -> bool:
        info = post(http, authserver.introspection_endpoint, token=token, **auth)
        assert info["active"] is False or info["client_id"] == client.client_id
        return bool(info["active"])

    def revoke(token: str) -> None:
        revoked = http.post(authserver.revocation_endpoint, data={"token": token, **auth})
        assert revoked.status_code == 200, revoked.text

    url = authserver.token_endpoint
    grant = "client_credentials"
    cc = post(http, url, grant_type=grant, resource=authserver.resource, scope="read", **auth)
    assert active(cc["access_token"])
    revoke(cc["access_token"])
    assert not active(cc["access_token"])

    scopes = ["offline_access", "read"]
    user = authserver.password_grant(client, scopes, authserver.resource)
    assert active(user["access_token"])
    assert active(user["refresh_token"])
    revoke(user["refresh_token"])
    assert not active(user["refresh_token"])
    assert not active(user["access_token"])  # the grant's tokens go with it

    # Revoking a user access token also revokes the grant's refresh token (oidc-provider).
    user = authserver.password_grant(client, scopes, authserver.resource)
    revoke(user["access_token"])
    assert not active(user["access_token"])
    assert not active(user["refresh_token"])


def test_counters_increase(authserver: AuthServer, http: httpx.Client) -> None:
    client = authserver.clients["client_secret_post"]
    assert client.client_secret is not None
    key = f"client={client.client_id} /token"
    before = authserver.counters()
    for _ in range(3):
        post(
            http,
            authserver.token_endpoint,
            grant_type="client_credentials",
            client_id=client.client_id,
            client_secret=client.client_secret,
        )
    after = authserver.counters()
    assert after.get(key, 0) - before.get(key, 0) == 3
    assert after["/token"] - before.get("/token", 0) >= 3
    assert after["listener=main /token"] - before.get("listener=main /token", 0) >= 3


def test_short_ttl_client(authserver: AuthServer, http: httpx.Client) -> None:
    client = authserver.clients["short_ttl"]
    assert client.client_secret is not None
    auth = basic(client.client_id, client.client_secret)
    token = post(http, authserver.token_endpoint, auth, grant_type="client_credentials")
    assert 0 < token["expires_in"] <= 3
    assert authserver.password_grant(client, ["offline_access"])["expires_in"] <= 3


def test_no_expiry_client_gets_no_expires_in(authserver: AuthServer, http: httpx.Client) -> None:
    client = authserver.clients["no_expiry"]
    assert client.client_secret is not None
    auth = basic(client.client_id, client.client_secret)
    token = post(http, authserver.token_endpoint, auth, grant_type="client_credentials")
    assert token["access_token"]
    assert "expires_in" not in token
    assert "expires_in" not in authserver.password_grant(client, ["offline_access"])
    other = authserver.clients["short_ttl"]
    assert other.client_secret is not None
    shown = post(
        http, authserver.token_endpoint, basic(other.client_id, other.client_secret),
        grant_type="client_credentials",
    )  # fmt: skip
    assert "expires_in" in shown, "only the listed client's responses leave it out"
