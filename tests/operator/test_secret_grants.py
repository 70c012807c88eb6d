"""Referencing a Secret is no grant to use it (issue 22, item 5).

Whoever may create OAuth2Clients and AccessTokenRequests in a namespace, but not read its
Secrets, used to have every Secret there used for them: a client secret sent to a server
of their choice, a key signing a JWT, a token copied into a Secret they read, a rotated
refresh token written into any Secret. The operator now uses a referenced Secret only if
it carries `oauth2.token-operator.io/usable-by-operator: "true"`, set by whoever may write
it. Each path below is refused without the label (the authorization server gets no
request made with it, nothing is signed with it, nothing is copied from it) and works
once the label is added, within `awaited`'s window, not at the next failure backoff
(the operator here backs off 60 s or more after a failure).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client as k8s

from oauth2_token_operator.api.labels import USABLE_BY_OPERATOR
from oauth2_token_operator.api.token_secret import decode_data
from oauth2_token_operator.controller.shared import grants
from oauth2_token_operator.controller.shared.refresh_tokens import RefreshTokenWriter
from oauth2_token_operator.kube.api import KubeApi
from oauth2_token_operator.manager import RefreshToken, TokenKey
from oauth2_token_operator.oauth2 import client_assertion
from tests.cluster.harness import unique_name
from tests.integration.conftest import Counters
from tests.operator.conftest import USABLE, Namespace, credentials, introspect, wait_for
from tests.operator.runner import OperatorThread
from tests.operator.test_refresh_rotation import renew_now, revision

PICKUP_WINDOW = 20.0
"""`awaited`: a Secret not usable is read again at most every 10 s, through the 5 s cache
of the credentials; 5 s more for a loaded machine."""
SERVER_PATHS = ("/token", "/token/introspection", "/token/revocation")


@pytest.fixture
def slow_backoff(operator_factory: Callable[..., OperatorThread]) -> OperatorThread:
    return operator_factory(min_renewal_lead=5.0, revocation_deadline=5.0, retry_base_delay=60.0)


@pytest.fixture
def signed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The `iss` of every client assertion signed in this process (the operator runs in a
    thread of it), for client_secret_jwt and private_key_jwt alike."""
    issuers: list[str] = []
    sign = client_assertion.sign

    def recording(claims: dict[str, Any], signing: client_assertion.SigningKey) -> str:
        issuers.append(str(claims["iss"]))
        return sign(claims, signing)

    monkeypatch.setattr(client_assertion, "sign", recording)
    return issuers


@pytest.mark.parametrize(
    ("method", "unlabelled"),
    [
        ("client_secret_basic", "idp-credentials"),
        ("client_secret_jwt", "idp-credentials"),
        ("private_key_jwt", "idp-credentials"),
        ("tls_client_auth", "idp-credentials"),
        ("client_secret_basic", "idp-ca"),  # the CA bundle, kept in a Secret
    ],
    ids=["client_secret_basic", "client_secret_jwt", "private_key_jwt", "tls_client_auth",
         "ca_bundle_from_secret"],
)  # fmt: skip
def test_client_credentials_are_used_only_from_a_secret_that_grants_it(
    ns: Namespace, slow_backoff: OperatorThread, signed: list[str], method: str, unlabelled: str
) -> None:
    server = ns.authserver
    client = server.clients[method]
    counters = Counters(server)
    authentication, data, secret_type = credentials(client, "idp-credentials")
    ns.secret("idp-credentials", data, usable=unlabelled != "idp-credentials", type_=secret_type)
    ns.secret("idp-ca", {"ca.crt": server.ca_bundle.read_text()}, usable=unlabelled != "idp-ca")
    ns.create(
        "oauth2clients",
        "idp",
        {
            "issuer": server.issuer,
            "clientId": client.client_id,
            "authentication": authentication,
            "tls": {"caBundleFrom": {"kind": "Secret", "name": "idp-ca", "key": "ca.crt"}},
        },
    )
    ns.request("billing", "idp")
    refused = ns.wait_ready("idp", status="False", reason="SecretNotUsable", plural="oauth2clients")
    ns.wait_ready("billing", status="False", reason="SecretNotUsable")
    grant = f"kubectl label secret {unlabelled} -n {ns.name} {USABLE_BY_OPERATOR}=true"
    assert grant in refused["message"]
    time.sleep(2)  # more looks at both (their first failures were some time ago)
    assert counters.delta("/.well-known/openid-configuration") == 0, "not even discovered"
    assert [counters.delta(path) for path in SERVER_PATHS] == [0, 0, 0]
    assert signed == [], "nothing was signed with the key"
    assert ns.token_secret("billing") is None

    ns.grant_use(unlabelled)
    labelled = time.monotonic()
    ns.wait_ready("billing", timeout=PICKUP_WINDOW)
    print(f"Ready {time.monotonic() - labelled:.1f} s after the label was added")
    ns.wait_ready("idp", plural="oauth2clients", timeout=PICKUP_WINDOW)
    assert counters.delta(f"client={client.client_id} /token") >= 1, "the counter counts"
    if method.endswith("_jwt"):
        assert client.client_id in signed, "the recorder records"


def test_a_registered_token_is_copied_only_from_a_secret_that_grants_it(
    ns: Namespace, slow_backoff: OperatorThread
) -> None:
    server = ns.authserver
    client = server.clients["client_secret_basic"]
    external = ns.external_token(client)
    ns.client("idp", client)
    ns.wait_ready("idp", plural="oauth2clients")
    counters = Counters(server)
    ns.secret("external", {"token": external}, usable=False)
    ns.register_request("tracked", "idp", "external")
    refused = ns.wait_ready("tracked", status="False", reason="SecretNotUsable")
    assert f"kubectl label secret external -n {ns.name}" in refused["message"]
    time.sleep(2)
    assert counters.delta("/token/introspection") == 0, "the token was not even introspected"
    assert ns.token_secret("tracked") is None, "nor copied"

    ns.grant_use("external")
    ns.wait_ready("tracked", timeout=PICKUP_WINDOW)
    assert (ns.token_secret("tracked") or {})["access_token"] == external


def test_a_refresh_token_is_read_only_from_a_secret_that_grants_it(
    ns: Namespace, slow_backoff: OperatorThread
) -> None:
    server = ns.authserver
    client = server.clients["client_secret_basic"]
    original = server.password_grant(client, ["read"], resource=server.resource)["refresh_token"]
    ns.client("idp", client)
    ns.wait_ready("idp", plural="oauth2clients")
    counters = Counters(server)
    ns.secret("user-grant", {"refresh_token": original}, usable=False)
    ns.refresh_request("api", "idp", "user-grant")
    ns.wait_ready("api", status="False", reason="SecretNotUsable")
    time.sleep(2)
    assert counters.delta("/token") == 0, "the refresh token was not sent"
    assert (ns.token_secret("user-grant") or {})["refresh_token"] == original, "nor replaced"

    ns.grant_use("user-grant")
    ns.wait_ready("api", timeout=PICKUP_WINDOW)
    rotated = (ns.token_secret("user-grant") or {})["refresh_token"]
    assert rotated != original, "the rotated refresh token is written back to a granted Secret"
    assert introspect(server, rotated, client)["active"] is True


def test_a_rotated_refresh_token_is_never_written_into_a_kubernetes_typed_secret(
    ns: Namespace, operator: OperatorThread
) -> None:
    """Read from a `kubernetes.io/basic-auth` Secret that grants its use, but never written
    back there: the rotated token is kept in memory and used for the next renewal (the
    one still in the Secret, rotated away, is never sent again: the server would revoke
    the whole grant), and the request says so."""
    server = ns.authserver
    client = server.clients["client_secret_basic"]
    original = server.password_grant(client, ["read"], resource=server.resource)["refresh_token"]
    ns.secret(
        "user-grant",
        {"username": "alice", "refresh_token": original},
        type_="kubernetes.io/basic-auth",
    )
    ns.client("idp", client)
    ns.refresh_request("api", "idp", "user-grant")
    ns.wait_ready("api")

    def issuing() -> dict[str, Any]:
        return ns.condition("api", "Issuing") or {}

    wait_for("Issuing SecretNotUsable", lambda: issuing().get("reason") == "SecretNotUsable")
    message = issuing()["message"]
    assert "kubernetes.io/basic-auth" in message
    assert "kept in memory" in message
    assert (ns.token_secret("user-grant") or {}) == {"username": "alice", "refresh_token": original}

    first = (ns.token_secret("api") or {})["access_token"]
    renew_now(ns, "api")
    wait_for("a renewal", lambda: revision(ns, "api") >= 2, 15)
    renewed = (ns.token_secret("api") or {})["access_token"]
    assert renewed != first
    assert introspect(server, renewed, client)["active"] is True, "the grant lives on"
    subject = f"{grants.REFRESH_SUBJECT_PREFIX}{ns.name}/user-grant#refresh_token"
    held = operator.ctx.refresh_tokens.unpersisted[subject].value
    assert held != original
    assert introspect(server, held, client)["active"] is True
    assert (ns.token_secret("user-grant") or {})["refresh_token"] == original, "never written"
    ready = ns.condition("api")
    assert ready is not None
    assert (ready["status"], ready["reason"]) == ("True", "TokenValid")


async def test_the_write_back_goes_only_into_a_granted_secret_of_a_type_of_ones_own(
    kube_admin: k8s.ApiClient, kube_namespace: str
) -> None:
    """`RefreshTokenWriter` against the real API server: refused (nothing written, the token
    held) without the label and for Kubernetes' own types; into the named key only, once
    the label is there."""
    core = k8s.CoreV1Api(kube_admin)
    writer = RefreshTokenWriter(KubeApi(kube_admin))

    def create(data: dict[str, str], labels: dict[str, str], type_: str = "Opaque") -> str:
        name = unique_name("grant")
        body = {"metadata": {"name": name, "labels": labels}, "type": type_, "stringData": data}
        core.create_namespaced_secret(kube_namespace, k8s.V1Secret.model_validate(body))
        return name

    def token(name: str, value: str) -> RefreshToken:
        subject = f"{grants.REFRESH_SUBJECT_PREFIX}{kube_namespace}/{name}#refresh_token"
        key = TokenKey("https://login.example.com", subject, "billing", "ns/idp")
        return RefreshToken(value, key, frozenset({"read"}), time.time())

    def stored(name: str) -> tuple[str | None, dict[str, Any]]:
        secret = core.read_namespaced_secret(name, kube_namespace)
        assert secret.metadata is not None
        return secret.metadata.resource_version, dict(secret.data or {})

    refused = [
        (create({"refresh_token": "old", "other": "kept"}, {}), "kubectl label secret"),
        (
            create({"username": "u", "refresh_token": "old"}, USABLE, "kubernetes.io/basic-auth"),
            "kubernetes.io/basic-auth",
        ),
        (
            create({".dockerconfigjson": "{}"}, USABLE, "kubernetes.io/dockerconfigjson"),
            "kubernetes.io/dockerconfigjson",
        ),
    ]
    for name, why in refused:
        before = stored(name)
        rotated = token(name, "new")
        assert await writer.persist(rotated) is False
        assert stored(name) == before, f"{name} was written"
        subject = str(rotated.key.subject)
        assert writer.unpersisted[subject] is rotated, "the rotated token is held"
        assert why in writer.refused[subject]

    # The label added later: the held token is written at the next try, into its key only.
    name = refused[0][0]
    core.patch_namespaced_secret(name, kube_namespace, {"metadata": {"labels": USABLE}})
    subject = str(token(name, "new").key.subject)
    assert await writer.persist(writer.unpersisted[subject]) is True
    assert subject not in writer.unpersisted
    assert subject not in writer.refused
    secret = await KubeApi(kube_admin).read_secret(kube_namespace, name)
    assert secret is not None
    assert decode_data(secret["data"]) == {"refresh_token": "new", "other": "kept"}
