"""Keycloak, the second real authorization server of the tests (issue 23, part 1).

The distribution comes from Maven Central (`tests/keycloak/build.sh`, version in
`versions.env`); one server per test session runs `kc.sh start-dev` on loopback with an
in-memory database, so nothing of it outlives the session. Its realm `tokens` is
`realm.json`, imported through the admin API once the server answers (with the clients of
standard token exchange, `Keycloak.exchange_clients`); only the public
key of the `private_key_jwt` client is filled in here (made for each session). The
`read` scope is created there too, as an optional scope of every client: a realm
import that names client scopes replaces Keycloak's default ones.

Keycloak answers on `http://localhost:PORT` (its realm URL is the issuer, and it is also
the audience a ServiceAccount token must carry for federated client authentication), and
on `https://localhost:HTTPS_PORT` with a certificate of a throw-away test CA, asking for a
client certificate (`--https-client-auth=request`) that its X.509 client authenticator
checks for `tls_client_auth` (client `mtls`; the CA is its HTTPS trust store). Keycloak
names its issuer after the URL a request reached, so the same realm has one issuer per
listener.

Federated client authentication (a Kubernetes ServiceAccount token as the client's
credential) needs Keycloak to trust the API server's CA from its start
(`--truststore-paths`): when the session's tests use the test control plane too, the
`keycloak` fixture starts it first and hands Keycloak its CA, so the session still
starts one Keycloak, whichever test asks first. `trust_kubernetes` and `federated_client`
then configure the identity provider and clients through the admin API.

Keycloak runs with its legacy token exchange on (`FEATURES`), whose external-token
exchange takes a ServiceAccount's token as the subject token:
`exchange_service_account_tokens` sets that up for one client.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.authserver.fixtures import TestClient, _pem, _tail, ssl_context

HERE = Path(__file__).resolve().parent
REALM = "tokens"
READY_TIMEOUT = 240.0
"""Seconds for a first start (it builds itself for the options given: ~30 s on 2 cores
when idle, several times that beside a busy test run)."""
ADMIN = ("admin", "admin-password-for-tests")
TRUST_STORE_PASSWORD = "trust-store-of-the-tests"  # it holds only the test CA


@dataclass(frozen=True)
class Keycloak:
    """A running Keycloak with the realm `tokens`."""

    url: str
    """http://localhost:PORT"""
    clients: dict[str, TestClient]
    """auth method -> client (`client_secret_basic`, `client_secret_post`,
    `client_secret_jwt`, `private_key_jwt`; `tls_client_auth`, over HTTPS only)."""
    log_file: Path
    https_url: str
    """https://localhost:HTTPS_PORT"""
    ca_bundle: Path
    """The test CA (PEM), which issued the HTTPS certificate and the client certificate."""

    @property
    def issuer(self) -> str:
        return f"{self.url}/realms/{REALM}"

    @property
    def https_issuer(self) -> str:
        return f"{self.https_url}/realms/{REALM}"

    def ssl_context(self, client: TestClient | None = None) -> ssl.SSLContext:
        """Trusts the test CA; presents the client certificate of a tls_client_auth client."""
        return ssl_context(self.ca_bundle, client)

    @property
    def exchange_clients(self) -> dict[str, TestClient]:
        """The standard token exchange's clients (`client_secret_basic`): `subject`, whose
        client_credentials tokens name `exchanger` in their audience; `exchanger`, which
        may exchange them (`standard.token.exchange.enabled`) for the audience `api`;
        and `api`, which only introspects (an exchanged token for `api` names only it)."""
        realm = json.loads((HERE / "realm.json").read_text())
        secrets = {c["clientId"]: c.get("secret") for c in realm["clients"]}
        return {
            name: TestClient(name, "client_secret_basic", secrets[name])
            for name in ("subject", "exchanger", "api")
        }


def distribution() -> Path:
    out = subprocess.run(
        ["bash", str(HERE / "build.sh"), "--print-dir"], check=True, capture_output=True, text=True
    )
    dist = Path(out.stdout.strip())
    if not (dist / "bin" / "kc.sh").is_file():
        raise RuntimeError(f"Keycloak is not in {dist}: run `make keycloak`")
    return dist


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _realm(clients: dict[str, TestClient], jwks: dict[str, Any]) -> dict[str, Any]:
    realm: dict[str, Any] = json.loads((HERE / "realm.json").read_text())
    for client in realm["clients"]:
        if client["clientId"] == clients["private_key_jwt"].client_id:
            client["attributes"]["jwks.string"] = json.dumps(jwks)
    return realm


def _pki(tmp: Path, port: int) -> list[str]:
    """A test CA (`ca.pem`), the HTTPS certificate for localhost, the `mtls` client's
    certificate (`mtls.pem`, `mtls.key`) and the HTTPS trust store (the CA, in PKCS12:
    Keycloak reads trust stores as files of a keystore type). Returns kc.sh's options for
    HTTPS on `port`."""
    ca = trustme.CA(organization_name="oauth2-token-operator tests")
    ca.cert_pem.write_to_path(str(tmp / "ca.pem"))
    for name, cert in (
        ("server", ca.issue_cert("localhost", "127.0.0.1")),
        ("mtls", ca.issue_cert("mtls.example.test", common_name="keycloak-mtls-client")),
    ):
        for i, pem in enumerate(cert.cert_chain_pems):
            pem.write_to_path(str(tmp / f"{name}.pem"), append=i > 0)
        cert.private_key_pem.write_to_path(str(tmp / f"{name}.key"))
    subprocess.run(
        ["keytool", "-importcert", "-noprompt", "-alias", "test-ca",
         "-file", str(tmp / "ca.pem"), "-keystore", str(tmp / "trust.p12"),
         "-storetype", "PKCS12", "-storepass", TRUST_STORE_PASSWORD],
        check=True, capture_output=True,
    )  # fmt: skip
    return [
        f"--https-port={port}",
        f"--https-certificate-file={tmp / 'server.pem'}",
        f"--https-certificate-key-file={tmp / 'server.key'}",
        "--https-client-auth=request",
        f"--https-trust-store-file={tmp / 'trust.p12'}",
        f"--https-trust-store-password={TRUST_STORE_PASSWORD}",
    ]


def _clients(tmp: Path) -> tuple[dict[str, TestClient], dict[str, Any]]:
    realm = json.loads((HERE / "realm.json").read_text())
    secrets = {c["clientId"]: c.get("secret") for c in realm["clients"]}
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = dict(RSAAlgorithm.to_jwk(key.public_key(), as_dict=True))
    public.update(kid="pkjwt-rs256", use="sig", alg="RS256")
    clients = {
        "client_secret_basic": TestClient("basic", "client_secret_basic", secrets["basic"]),
        "client_secret_post": TestClient("post", "client_secret_post", secrets["post"]),
        "client_secret_jwt": TestClient("jwt", "client_secret_jwt", secrets["jwt"]),
        "private_key_jwt": TestClient(
            "pkjwt",
            "private_key_jwt",
            private_keys={"RS256": _pem(key)},
            kids={"RS256": "pkjwt-rs256"},
        ),
        "tls_client_auth": TestClient(
            "mtls", "tls_client_auth", cert_file=tmp / "mtls.pem", key_file=tmp / "mtls.key"
        ),
    }
    return clients, {"keys": [public]}


def _wait_until_answering(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Keycloak exited ({proc.returncode}):\n{_tail(log)}")
        with suppress(httpx.HTTPError):
            if httpx.get(f"{url}/realms/master", timeout=2.0).status_code == 200:
                return
        time.sleep(0.5)
    raise RuntimeError(f"Keycloak not answering after {READY_TIMEOUT:.0f} s:\n{_tail(log)}")


@contextmanager
def admin(url: str) -> Iterator[httpx.Client]:
    """Keycloak's admin REST API at `url`, as the bootstrap administrator."""
    with httpx.Client(base_url=url, timeout=30.0) as http:
        token = http.post(
            "/realms/master/protocol/openid-connect/token",
            data={"grant_type": "password", "client_id": "admin-cli",
                  "username": ADMIN[0], "password": ADMIN[1]},
        ).raise_for_status().json()["access_token"]  # fmt: skip
        http.headers["Authorization"] = f"Bearer {token}"
        yield http


def _configure(url: str, realm: dict[str, Any]) -> None:
    """Import the realm, then give every client the optional scope `read`."""
    with admin(url) as http:
        http.post("/admin/realms", json=realm).raise_for_status()
        base = f"/admin/realms/{REALM}"
        http.post(
            f"{base}/client-scopes",
            json={"name": "read", "protocol": "openid-connect",
                  "attributes": {"include.in.token.scope": "true"}},
        ).raise_for_status()  # fmt: skip
        (scope,) = [s for s in http.get(f"{base}/client-scopes").json() if s["name"] == "read"]
        for client in http.get(f"{base}/clients").json():
            if client["clientId"] in {c["clientId"] for c in realm["clients"]}:
                http.put(
                    f"{base}/clients/{client['id']}/optional-client-scopes/{scope['id']}"
                ).raise_for_status()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """kc.sh stays as a parent shell of the JVM: the whole process group goes."""
    if proc.poll() is None:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    else:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # a JVM left behind by its shell


FEATURES = ("token-exchange", "admin-fine-grained-authz:v1")
"""Keycloak's legacy token exchange (V1), the one that takes a token of another issuer
(a ServiceAccount's) as the subject token, and the permissions it needs. With them on, a
client not allowed to exchange gets 403 `access_denied` ("Client not allowed to
exchange") instead of the standard exchange's 400 `invalid_request`."""

KUBERNETES_IDP = "kubernetes"
"""Alias of the identity provider that trusts the test control plane's ServiceAccounts."""


def trust_kubernetes(keycloak: Keycloak, issuer: str) -> None:
    """The realm trusts ServiceAccount tokens of the API server whose issuer is `issuer`
    (its JWKS found by discovery: the API server must serve it anonymously). Idempotent."""
    with admin(keycloak.url) as http:
        instances = f"/admin/realms/{REALM}/identity-provider/instances"
        if http.get(f"{instances}/{KUBERNETES_IDP}").status_code == 200:
            return  # a duplicate alias is a 400, not a 409
        http.post(
            instances,
            json={"alias": KUBERNETES_IDP, "providerId": "kubernetes", "enabled": True,
                  "config": {"issuer": issuer}},
        ).raise_for_status()  # fmt: skip


def federated_client(keycloak: Keycloak, client_id: str, namespace: str, name: str) -> None:
    """A client that authenticates with a token of ServiceAccount `namespace/name`
    (`federated-jwt`), with an audience mapper naming itself (so that introspection
    through it says active) and the optional scope `read`."""
    with admin(keycloak.url) as http:
        base = f"/admin/realms/{REALM}"
        http.post(
            f"{base}/clients",
            json={
                "clientId": client_id, "enabled": True, "protocol": "openid-connect",
                "publicClient": False, "serviceAccountsEnabled": True,
                "standardFlowEnabled": False, "clientAuthenticatorType": "federated-jwt",
                "attributes": {
                    "jwt.credential.issuer": KUBERNETES_IDP,
                    "jwt.credential.sub": f"system:serviceaccount:{namespace}:{name}",
                },
                "protocolMappers": [{
                    "name": "audience-itself", "protocol": "openid-connect",
                    "protocolMapper": "oidc-audience-mapper",
                    "config": {"included.client.audience": client_id,
                               "access.token.claim": "true",
                               "introspection.token.claim": "true"},
                }],
            },
        ).raise_for_status()  # fmt: skip
        (made,) = http.get(f"{base}/clients", params={"clientId": client_id}).json()
        (scope,) = [s for s in http.get(f"{base}/client-scopes").json() if s["name"] == "read"]
        http.put(
            f"{base}/clients/{made['id']}/optional-client-scopes/{scope['id']}"
        ).raise_for_status()


SERVICE_ACCOUNT_IDP = "kubernetes-oidc"
"""Alias of the OpenID Connect identity provider through which the legacy token exchange
takes the test control plane's ServiceAccount tokens as subject tokens."""


def exchange_service_account_tokens(
    keycloak: Keycloak, issuer: str, client_id: str, *, allowed: bool = True
) -> None:
    """Client `client_id` may exchange tokens of the ServiceAccount issuer `issuer` (whose
    JWKS the API server must serve anonymously) for its own tokens, of a user Keycloak
    makes for each ServiceAccount: an OpenID Connect identity provider (signatures
    checked with the issuer's JWKS; no `typ` check, as ServiceAccount tokens have none)
    whose `token-exchange` permission a client policy grants to `client_id` (taken back if
    not `allowed`). Idempotent."""
    with admin(keycloak.url) as http:
        base = f"/admin/realms/{REALM}"
        instances = f"{base}/identity-provider/instances"
        if http.get(f"{instances}/{SERVICE_ACCOUNT_IDP}").status_code != 200:
            unused = f"{issuer}/not-used-by-token-exchange"
            http.post(
                instances,
                json={"alias": SERVICE_ACCOUNT_IDP, "providerId": "oidc", "enabled": True,
                      "config": {"issuer": issuer, "validateSignature": "true",
                                 "useJwksUrl": "true", "jwksUrl": f"{issuer}/openid/v1/jwks",
                                 "disableTypeClaimCheck": "true", "syncMode": "IMPORT",
                                 "clientId": "unused", "clientSecret": "unused",
                                 "clientAuthMethod": "client_secret_post",
                                 "authorizationUrl": unused, "tokenUrl": unused}},
            ).raise_for_status()  # fmt: skip
        permissions = (
            http.put(
                f"{instances}/{SERVICE_ACCOUNT_IDP}/management/permissions", json={"enabled": True}
            )
            .raise_for_status()
            .json()["scopePermissions"]
        )
        (management,) = http.get(f"{base}/clients", params={"clientId": "realm-management"}).json()
        (client,) = http.get(f"{base}/clients", params={"clientId": client_id}).json()
        authz = f"{base}/clients/{management['id']}/authz/resource-server"
        name = f"exchange-service-account-tokens-{client_id}"
        found = http.get(f"{authz}/policy", params={"name": name, "exact": "true"}).json()
        policy = found[0] if found else http.post(
            f"{authz}/policy/client",
            json={"name": name, "clients": [client["id"]], "logic": "POSITIVE"},
        ).raise_for_status().json()  # fmt: skip
        permission = f"{authz}/permission/scope/{permissions['token-exchange']}"
        current = http.get(permission).raise_for_status().json()
        of = f"{authz}/policy/{current['id']}"  # a PUT replaces all three lists
        policies = {p["id"] for p in http.get(f"{of}/associatedPolicies").json()}
        http.put(permission, json={
            **current,
            "policies": sorted(policies | {policy["id"]} if allowed else policies - {policy["id"]}),
            "resources": [r["_id"] for r in http.get(f"{of}/resources").json()],
            "scopes": [s["id"] for s in http.get(f"{of}/scopes").json()],
        }).raise_for_status()  # fmt: skip


@contextmanager
def run_keycloak(truststore: Path | None = None) -> Iterator[Keycloak]:
    """Start Keycloak with the realm `tokens`; stop it and delete its files on exit.
    `truststore`: PEM certificates it trusts besides the system's (a cluster's CA)."""
    if shutil.which("java") is None:
        raise RuntimeError("Keycloak needs Java 17 or later (`java`) on PATH")
    dist = distribution()
    tmp = Path(tempfile.mkdtemp(prefix="keycloak-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        port, https_port = _free_port(), _free_port()
        url = f"http://localhost:{port}"
        log_file = tmp / "keycloak.log"
        https_options = _pki(tmp, https_port)
        clients, jwks = _clients(tmp)
        env = {
            **os.environ,
            "KC_BOOTSTRAP_ADMIN_USERNAME": ADMIN[0],
            "KC_BOOTSTRAP_ADMIN_PASSWORD": ADMIN[1],
            "JAVA_OPTS_APPEND": f"-Djava.io.tmpdir={tmp}",
        }
        command = [
            str(dist / "bin" / "kc.sh"), "start-dev",
            "--db=dev-mem",
            "--http-host=127.0.0.1", f"--http-port={port}",
            f"--http-management-port={_free_port()}",
            f"--features={','.join(FEATURES)}",
            *https_options,
            *([f"--truststore-paths={truststore}"] if truststore is not None else []),
        ]  # fmt: skip
        with log_file.open("wb") as log:
            proc = subprocess.Popen(
                command, cwd=tmp, env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        _wait_until_answering(url, proc, log_file)
        _configure(url, _realm(clients, jwks))
        yield Keycloak(
            url=url,
            clients=clients,
            log_file=log_file,
            https_url=f"https://localhost:{https_port}",
            ca_bundle=tmp / "ca.pem",
        )
    finally:
        if proc is not None:
            _stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def keycloak(request: pytest.FixtureRequest) -> Iterator[Keycloak]:
    """The running Keycloak (one per test session, started by the first test asking).
    When any test of the session uses the test control plane, that starts first and
    Keycloak trusts its CA (for federated client authentication)."""
    truststore: Path | None = None
    if any("kube_cluster" in getattr(item, "fixturenames", ()) for item in request.session.items):
        cluster = request.getfixturevalue("kube_cluster")
        ca = cluster.configuration().ssl_ca_cert
        truststore = Path(ca) if ca else None
    with run_keycloak(truststore) as server:
        yield server
