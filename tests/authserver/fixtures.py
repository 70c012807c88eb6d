"""A real OAuth 2.0 authorization server (npm ``oidc-provider``) for the test-suite.

``run_authserver()`` makes a throw-away CA with ``trustme`` (server certificate for 127.0.0.1,
a client certificate for ``tls_client_auth``), key pairs for ``private_key_jwt``, writes a JSON
configuration and starts ``node server.mjs`` next to this file. The ``authserver`` fixture is
the session-scoped pytest wrapper. See README.md in this directory for clients and scopes.

Run by hand: ``.venv/bin/python -m tests.authserver.fixtures`` (prints the URLs and clients,
stops on Ctrl-C).
"""

from __future__ import annotations

import base64
import json
import os
import queue
import shutil
import signal
import ssl
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote_plus

import httpx
import jwt
import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

AUTHSERVER_DIR = Path(__file__).resolve().parent
SERVER_SCRIPT = AUTHSERVER_DIR / "server.mjs"
READY_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0

USERNAME = "alice"
PASSWORD = "wonderland:P@ss w0rd+&="
RESOURCE = "https://api.example.test"
RESOURCE_SCOPES = ("read", "write", "admin")
# OpenID scopes known to the server (openid, offline_access + the claim scopes profile, email).
USER_SCOPES = ("openid", "profile", "email", "offline_access")
SHORT_TTL = 3
RENEWAL_TTL = 20
"""Lifetime of `renewal_ttl` tokens: long enough to watch a renewal happen ahead of expiry."""

# Secrets with characters that RFC 6749 §2.3.1 form-urlencoding must escape in HTTP Basic
# (':' '/' '+' '%' '&' '=' and a space, which must become '+' or '%20', never stay literal).
BASIC_SECRET = "s3cr3t:with/special+chars%&= and space"
POST_SECRET = "p0st s3cr3t:with/special+chars%&="
# client_secret_jwt: 64 bytes, enough for HS512 (RFC 7518 §3.2: key >= hash output size).
JWT_SECRET = "hs512-client-secret-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJ"
SHORT_TTL_SECRET = "short:ttl/secret+%&="
RENEWAL_TTL_SECRET = "renewal-ttl:secret/+%&="
NO_EXPIRY_SECRET = "no-expiry:secret/+%&="
HTTP_SECRET = "http:secret/with+special%&="

CONFIDENTIAL_GRANTS = ("client_credentials", "refresh_token", "password")
PUBLIC_GRANTS = ("refresh_token", "password")


@dataclass(frozen=True)
class TestClient:
    """One statically registered client of the test server."""

    __test__ = False  # not a pytest test class

    client_id: str
    auth_method: str
    client_secret: str | None = None
    private_keys: dict[str, str] = field(default_factory=dict, hash=False)
    """private_key_jwt: JWS alg -> PKCS#8 PEM private key (the server has the public JWKS)."""
    cert_file: Path | None = None
    key_file: Path | None = None
    """tls_client_auth: client certificate chain / private key PEM files."""
    grant_types: tuple[str, ...] = CONFIDENTIAL_GRANTS
    kids: dict[str, str] = field(default_factory=dict, hash=False)
    """private_key_jwt: JWS alg -> `kid` of the registered public key."""


@dataclass(frozen=True)
class AuthServer:
    """A running oidc-provider; see tests/authserver/README.md."""

    issuer: str
    """https://127.0.0.1:P1 (main provider)."""
    mtls_base: str
    """https://127.0.0.1:P2, same provider, asks for client certificates (mTLS aliases)."""
    http_issuer: str
    """http://127.0.0.1:P3, a second provider on plain http (one client_secret_basic client)."""
    mismatch_url: str
    """http://127.0.0.1:P4 serving the MAIN provider (its discovery says issuer=`issuer`)."""
    lean_issuer: str
    """https://127.0.0.1:P5, a third provider with the main one's clients and neither an
    introspection nor a revocation endpoint (as Entra ID and Google have no revocation)."""
    ca_bundle: Path
    clients: dict[str, TestClient] = field(hash=False)
    http_client: TestClient
    resource: str
    resource_scopes: tuple[str, ...]
    user_scopes: tuple[str, ...]
    username: str
    password: str
    log_file: Path
    """oidc-provider's stderr (warnings, every error it returned to a client)."""

    @property
    def token_endpoint(self) -> str:
        return f"{self.issuer}/token"

    @property
    def introspection_endpoint(self) -> str:
        return f"{self.issuer}/token/introspection"

    @property
    def revocation_endpoint(self) -> str:
        return f"{self.issuer}/token/revocation"

    @property
    def mtls_token_endpoint(self) -> str:
        return f"{self.mtls_base}/token"

    def ssl_context(self, client: TestClient | None = None) -> ssl.SSLContext:
        """Trusts the test CA; loads the client certificate of a tls_client_auth client."""
        return ssl_context(self.ca_bundle, client)

    def counters(self) -> dict[str, int]:
        """Request counters of the server (GET /__test__/counters on the main listener).

        Keys: ``"/token"`` (all listeners), ``"listener=main /token"`` (listeners: main, mtls,
        mismatch, http) and ``"client=<client_id> /token"``. Compare two snapshots.
        """
        response = httpx.get(f"{self.issuer}/__test__/counters", verify=self.ssl_context())
        response.raise_for_status()
        result: dict[str, int] = response.json()
        return result

    def password_grant(
        self, client: TestClient, scopes: Iterable[str], resource: str | None = None
    ) -> dict[str, Any]:
        """Real ``grant_type=password`` request; returns the token response JSON.

        Raises ``httpx.HTTPStatusError`` on an error response.
        """
        data = {"grant_type": "password", "username": self.username, "password": self.password}
        scope = " ".join(scopes)
        if scope:
            data["scope"] = scope
        if resource is not None:
            data["resource"] = resource
        issuer = self.http_issuer if client.client_id == self.http_client.client_id else None
        return self.token_request(client, data, issuer=issuer)

    def token_request(
        self, client: TestClient, data: dict[str, str], *, issuer: str | None = None
    ) -> dict[str, Any]:
        """POST ``data`` to the token endpoint, authenticated as ``client`` (any method)."""
        issuer = issuer or self.issuer
        base = self.mtls_base if client.auth_method == "tls_client_auth" else issuer
        url = f"{base}/token"
        headers, auth_data = client_auth(client, audience=issuer)
        with httpx.Client(verify=self.ssl_context(client), timeout=10.0) as http:
            response = http.post(url, data={**data, **auth_data}, headers=headers)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result


def client_auth(client: TestClient, *, audience: str) -> tuple[dict[str, str], dict[str, str]]:
    """Headers and form fields authenticating ``client`` (test helper, not the library)."""
    method = client.auth_method
    if method == "client_secret_basic":
        assert client.client_secret is not None
        return {"Authorization": basic_authorization(client.client_id, client.client_secret)}, {}
    if method == "client_secret_post":
        assert client.client_secret is not None
        return {}, {"client_id": client.client_id, "client_secret": client.client_secret}
    if method in ("client_secret_jwt", "private_key_jwt"):
        if method == "client_secret_jwt":
            assert client.client_secret is not None
            alg, key = "HS512", client.client_secret
        else:  # ES256 where the client has such a key, else its only one
            alg = "ES256" if "ES256" in client.private_keys else next(iter(client.private_keys))
            key = client.private_keys[alg]
        now = int(time.time())
        claims = {
            "iss": client.client_id,
            "sub": client.client_id,
            "aud": audience,
            "jti": uuid.uuid4().hex,
            "iat": now,
            "exp": now + 60,
        }
        headers = {"kid": client.kids[alg]} if alg in client.kids else None
        assertion = jwt.encode(claims, key, algorithm=alg, headers=headers)
        return {}, {
            "client_id": client.client_id,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
        }
    # tls_client_auth (certificate in the TLS handshake) and none
    return {}, {"client_id": client.client_id}


def ssl_context(ca_bundle: Path, client: TestClient | None = None) -> ssl.SSLContext:
    """Trusts `ca_bundle`; presents the client certificate of a tls_client_auth client."""
    context = ssl.create_default_context(cafile=str(ca_bundle))
    if client is not None and client.cert_file is not None:
        context.load_cert_chain(str(client.cert_file), str(client.key_file))
    return context


def basic_authorization(client_id: str, secret: str) -> str:
    """RFC 6749 §2.3.1: form-urlencode id and secret, then RFC 7617 Basic."""
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode("ascii")
    return "Basic " + base64.b64encode(raw).decode("ascii")


# ---------------------------------------------------------------------------------------------
# Start-up
# ---------------------------------------------------------------------------------------------


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def _private_key_jwt_keys() -> tuple[dict[str, str], dict[str, str], list[dict[str, Any]]]:
    """(alg -> private PEM, alg -> kid, public JWKS keys) for RS256, PS256, ES256, EdDSA."""
    pems: dict[str, str] = {}
    kids: dict[str, str] = {}
    jwks: list[dict[str, Any]] = []
    for alg in ("RS256", "PS256", "ES256", "EdDSA"):
        public: dict[str, Any]
        if alg in ("RS256", "PS256"):
            rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            pems[alg] = _pem(rsa_key)
            public = dict(RSAAlgorithm.to_jwk(rsa_key.public_key(), as_dict=True))
        elif alg == "ES256":
            ec_key = ec.generate_private_key(ec.SECP256R1())
            pems[alg] = _pem(ec_key)
            public = dict(ECAlgorithm.to_jwk(ec_key.public_key(), as_dict=True))
        else:
            ed_key = ed25519.Ed25519PrivateKey.generate()
            pems[alg] = _pem(ed_key)
            public = dict(OKPAlgorithm.to_jwk(ed_key.public_key(), as_dict=True))
        kids[alg] = f"pkjwt-{alg.lower()}"
        public["kid"] = kids[alg]
        public["use"] = "sig"
        if alg != "EdDSA":  # an Ed25519 key serves both "EdDSA" and "Ed25519"
            public["alg"] = alg
        jwks.append(public)
    return pems, kids, jwks


def _metadata(client: TestClient, **extra: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "client_id": client.client_id,
        "token_endpoint_auth_method": client.auth_method,
        "grant_types": list(client.grant_types),
        "response_types": [],
        "redirect_uris": [],
        **extra,
    }
    if client.client_secret is not None:
        metadata["client_secret"] = client.client_secret
    return metadata


def _build(tmp: Path) -> tuple[dict[str, Any], dict[str, TestClient], TestClient]:
    ca = trustme.CA(organization_name="oauth2-token-operator tests")
    ca_file = tmp / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    server_cert.cert_chain_pems[0].write_to_path(str(tmp / "server.pem"))
    for pem in server_cert.cert_chain_pems[1:]:
        pem.write_to_path(str(tmp / "server.pem"), append=True)
    server_cert.private_key_pem.write_to_path(str(tmp / "server.key"))

    tls_cert = ca.issue_cert(
        "tls-client.example.test",
        common_name="tls-client",
        organization_name="oauth2-token-operator tests",
        organization_unit_name="authserver",
    )
    client_cert_file, client_key_file = tmp / "client.pem", tmp / "client.key"
    for i, pem in enumerate(tls_cert.cert_chain_pems):
        pem.write_to_path(str(client_cert_file), append=i > 0)
    tls_cert.private_key_pem.write_to_path(str(client_key_file))
    subject_dn = x509.load_pem_x509_certificate(
        tls_cert.cert_chain_pems[0].bytes()
    ).subject.rfc4514_string()

    pems, kids, jwks = _private_key_jwt_keys()
    for alg, private_pem in pems.items():
        (tmp / f"pkjwt-{alg.lower()}.key").write_text(private_pem)

    clients = {
        "client_secret_basic": TestClient("cs-basic", "client_secret_basic", BASIC_SECRET),
        "client_secret_post": TestClient("cs-post", "client_secret_post", POST_SECRET),
        "client_secret_jwt": TestClient("cs-jwt", "client_secret_jwt", JWT_SECRET),
        "private_key_jwt": TestClient("pk-jwt", "private_key_jwt", private_keys=pems, kids=kids),
        "tls_client_auth": TestClient(
            "tls-client",
            "tls_client_auth",
            cert_file=client_cert_file,
            key_file=client_key_file,
        ),
        "none": TestClient("public", "none", grant_types=PUBLIC_GRANTS),
        "short_ttl": TestClient("short-ttl", "client_secret_basic", SHORT_TTL_SECRET),
        "renewal_ttl": TestClient("renewal-ttl", "client_secret_basic", RENEWAL_TTL_SECRET),
        # Token responses without expires_in (RFC 6749 allows it); the tokens live 1 h.
        "no_expiry": TestClient("no-expiry", "client_secret_basic", NO_EXPIRY_SECRET),
    }
    http_client = TestClient(
        "http-basic", "client_secret_basic", HTTP_SECRET, grant_types=CONFIDENTIAL_GRANTS
    )
    extra: dict[str, dict[str, Any]] = {
        "private_key_jwt": {"jwks": {"keys": jwks}},
        "tls_client_auth": {"tls_client_auth_subject_dn": subject_dn},
    }
    config = {
        "tls": {
            "cert": str(tmp / "server.pem"),
            "key": str(tmp / "server.key"),
            "ca": str(ca_file),
        },
        "user": {
            "username": USERNAME,
            "password": PASSWORD,
            "claims": {
                "email": "alice@example.test",
                "email_verified": True,
                "name": "Alice Liddell",
                "preferred_username": USERNAME,
            },
        },
        "resource": {"identifier": RESOURCE, "scope": " ".join(RESOURCE_SCOPES)},
        "clients": [_metadata(c, **extra.get(name, {})) for name, c in clients.items()],
        "httpClients": [_metadata(http_client)],
        "ttlOverrides": {
            clients["short_ttl"].client_id: {
                "AccessToken": SHORT_TTL,
                "ClientCredentials": SHORT_TTL,
            },
            clients["renewal_ttl"].client_id: {
                "AccessToken": RENEWAL_TTL,
                "ClientCredentials": RENEWAL_TTL,
            },
        },
        "omitExpiresIn": [clients["no_expiry"].client_id],
        "clockTolerance": 0,
    }
    return config, clients, http_client


def _reader(stream: IO[bytes], lines: queue.Queue[bytes | None], log: Path) -> None:
    """First stdout line -> queue (the ready line); anything later is appended to the log."""
    first = True
    for line in iter(stream.readline, b""):
        if first:
            lines.put(line)
            first = False
        else:
            with log.open("ab") as f:
                f.write(b"[stdout] " + line)
    if first:
        lines.put(None)


def _tail(path: Path, limit: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return "<no log>"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with suppress(OSError):
            assert proc.stdin is not None
            proc.stdin.close()
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(STOP_TIMEOUT)
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            with suppress(OSError):
                stream.close()


@contextmanager
def run_authserver() -> Iterator[AuthServer]:
    """Start the authorization server; stop it and delete its files on exit."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("Node.js (`node`) is not on PATH; the authserver needs Node >= 20")
    if not (AUTHSERVER_DIR / "node_modules" / "oidc-provider").is_dir():
        raise RuntimeError(
            f"{AUTHSERVER_DIR / 'node_modules'} is missing oidc-provider: run `make setup`"
        )

    tmp = Path(tempfile.mkdtemp(prefix="authserver-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        config, clients, http_client = _build(tmp)
        config_file = tmp / "config.json"
        config_file.write_text(json.dumps(config, indent=2))
        log_file = tmp / "authserver.log"
        with log_file.open("wb") as log:
            proc = subprocess.Popen(
                [node, str(SERVER_SCRIPT), str(config_file)],
                cwd=AUTHSERVER_DIR,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
            )
        assert proc.stdout is not None
        lines: queue.Queue[bytes | None] = queue.Queue()
        threading.Thread(target=_reader, args=(proc.stdout, lines, log_file), daemon=True).start()
        try:
            line = lines.get(timeout=READY_TIMEOUT)
        except queue.Empty:
            line = None
            problem = f"not ready after {READY_TIMEOUT:.0f} s"
        else:
            problem = "bad ready line"
            if line is None:
                try:
                    problem = f"exited with code {proc.wait(2)}"
                except subprocess.TimeoutExpired:
                    problem = "closed its stdout"
        ready: dict[str, Any] = {}
        if line:
            with suppress(ValueError):
                ready = json.loads(line)
        if not ready.get("ready"):
            raise RuntimeError(
                f"authserver (node {SERVER_SCRIPT.name}) {problem}: {line!r}\n"
                f"--- {log_file} ---\n{_tail(log_file)}"
            )
        yield AuthServer(
            issuer=ready["issuer"],
            mtls_base=ready["mtls_base"],
            http_issuer=ready["http_issuer"],
            mismatch_url=ready["mismatch_url"],
            lean_issuer=ready["lean_issuer"],
            ca_bundle=tmp / "ca.pem",
            clients=clients,
            http_client=http_client,
            resource=RESOURCE,
            resource_scopes=RESOURCE_SCOPES,
            user_scopes=USER_SCOPES,
            username=USERNAME,
            password=PASSWORD,
            log_file=log_file,
        )
    finally:
        if proc is not None:
            _stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def authserver() -> Iterator[AuthServer]:
    """The running oidc-provider (one per test session)."""
    with run_authserver() as server:
        yield server


if __name__ == "__main__":
    with run_authserver() as server:
        print(f"issuer       {server.issuer}")
        print(f"mtls_base    {server.mtls_base}")
        print(f"http_issuer  {server.http_issuer}")
        print(f"mismatch_url {server.mismatch_url}")
        print(f"ca_bundle    {server.ca_bundle}")
        print(f"log_file     {server.log_file}")
        for name, c in {**server.clients, "http": server.http_client}.items():
            print(f"client {name:20} id={c.client_id} secret={c.client_secret!r}")
        print("Ctrl-C to stop")
        with suppress(KeyboardInterrupt):
            signal.pause()
