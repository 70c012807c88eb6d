"""Secretless clients (issue 23, section 2): an OAuth2Client that authenticates with a
token of a Kubernetes ServiceAccount, end to end on the test control plane and Keycloak
26.7 (its Kubernetes identity provider trusting the control plane's ServiceAccount
issuer, a `federated-jwt` client per ServiceAccount).

No Secret holds any credential: the request becomes Ready, introspection says the token
was issued to that client, a renewal after the ServiceAccount token was minted again
keeps the client's configuration (stored tokens shared, pools kept), and deletion
revokes. Refusals, played by a tenant holding only its namespace's RBAC: a
ServiceAccount without the opt-in label, an audience the API server accepts, a missing
ServiceAccount (which then appears), and one Keycloak does not trust: each a clear
condition and no token.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import ssl
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from oauth2_token_operator.api.annotations import RENEW_REQUESTED_AT
from oauth2_token_operator.api.crd import GROUP, VERSION
from oauth2_token_operator.api.token_secret import TOKEN_ANNOTATION
from oauth2_token_operator.kube.rest import PathApi
from oauth2_token_operator.policies.service_accounts import DEFAULT_API_AUDIENCES
from tests.cluster.harness import KubeCluster, unique_name
from tests.cluster.objects import json_object
from tests.keycloak.fixtures import Keycloak, federated_client, trust_kubernetes
from tests.operator.conftest import USABLE, Namespace, settle, wait_for
from tests.operator.runner import OperatorThread

pytestmark = pytest.mark.keycloak

DISCOVERY_BINDING = "oauth2-token-operator-tests-anonymous-issuer-discovery"
TENANT_RULES = [
    {"apiGroups": [GROUP], "resources": ["accesstokenrequests", "oauth2clients"],
     "verbs": ["create", "get", "patch", "list"]},
]  # fmt: skip
"""A tenant who may create clients and requests in its namespace, and nothing else: not
act as its ServiceAccounts, not label them."""
JWT = re.compile(r"eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+")


def cluster_issuer(kube_admin: k8s.ApiClient) -> str:
    """The API server's ServiceAccount issuer, as its discovery document says."""
    answer = PathApi(kube_admin).call("GET", "/.well-known/openid-configuration")
    return str(json.loads(answer.data)["issuer"])


@pytest.fixture
def federation(kube_admin: k8s.ApiClient, keycloak: Keycloak) -> Iterator[str]:
    """Keycloak trusts the control plane's ServiceAccount tokens; the API server serves
    its discovery and JWKS to anyone (the two cluster-side prerequisites: the CA given to
    Keycloak at its start is the other). The issuer URL."""
    rbac = k8s.RbacAuthorizationV1Api(kube_admin)
    try:
        rbac.create_cluster_role_binding(k8s.V1ClusterRoleBinding.model_validate({
            "metadata": {"name": DISCOVERY_BINDING},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": "system:service-account-issuer-discovery"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                          "name": "system:unauthenticated"}],
        }))  # fmt: skip
    except ApiException as exc:
        if exc.status != 409:
            raise
    issuer = cluster_issuer(kube_admin)
    trust_kubernetes(keycloak, issuer)
    yield issuer
    rbac.delete_cluster_role_binding(DISCOVERY_BINDING)


def service_account(ns: Namespace, name: str, *, usable: bool = True) -> None:
    ns.core.create_namespaced_service_account(
        ns.name,
        k8s.V1ServiceAccount.model_validate(
            {"metadata": {"name": name, "labels": USABLE if usable else {}}}
        ),
    )


def minted(ns: Namespace, name: str, audience: str) -> str:
    """A token of ServiceAccount `name`, minted by the admin (as the test's own tool)."""
    answer = ns.core.create_namespaced_service_account_token(
        name,
        ns.name,
        k8s.AuthenticationV1TokenRequest.model_validate(
            {"spec": {"audiences": [audience], "expirationSeconds": 600}}
        ),
    )
    assert answer.status is not None
    return str(answer.status.token)


def secretless(keycloak: Keycloak, client_id: str, account: str, **auth: Any) -> dict[str, Any]:
    return {
        "issuer": keycloak.issuer, "clientId": client_id, "allowInsecureHTTP": True,
        "authentication": {"method": "service_account_token",
                           "serviceAccountRef": {"name": account}, **auth},
    }  # fmt: skip


def introspect(
    keycloak: Keycloak,
    ns: Namespace,
    client_id: str,
    account: str,
    token: str,
    assertion: str | None = None,
) -> Any:
    """Introspection by the federated client itself (its own ServiceAccount's token:
    `assertion`, or one minted now)."""
    response = httpx.post(
        f"{keycloak.issuer}/protocol/openid-connect/token/introspect",
        data={
            "token": token,
            "client_id": client_id,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion or minted(ns, account, keycloak.issuer),
        },
    )
    response.raise_for_status()
    return response.json()


def cluster_tokens(ns: Namespace, issuer: str, *more: str) -> list[str]:
    """Every ServiceAccount token (a JWT whose `iss` is the API server) found in the
    namespace's Secrets, in the status of its clients and requests, in its Events and in
    `more` (the operator's log)."""
    texts = list(more) + [
        base64.b64decode(value).decode(errors="replace")
        for secret in ns.core.list_namespaced_secret(ns.name).items
        for value in (secret.data or {}).values()
    ]
    for plural in ("oauth2clients", "accesstokenrequests"):
        listed = ns.custom.list_namespaced_custom_object(GROUP, VERSION, ns.name, plural)
        texts.append(json.dumps(json_object(listed)))
    texts += [e.message or "" for e in ns.core.list_namespaced_event(ns.name).items]
    found = []
    for text in texts:
        for candidate in JWT.findall(text):
            payload = candidate.split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            if claims.get("iss") == issuer:
                found.append(candidate)
    return found


def token_of(ns: Namespace, name: str) -> str:
    return (ns.token_secret(name) or {})["access_token"]


def revision(ns: Namespace, name: str) -> int:
    return int(((ns.get("accesstokenrequests", name) or {}).get("status") or {})["revision"])


def test_a_secretless_client_gets_renews_introspects_and_revokes_tokens(
    ns: Namespace,
    operator_factory: Callable[..., OperatorThread],
    keycloak: Keycloak,
    federation: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    operator = operator_factory(min_renewal_lead=5.0, revocation_deadline=5.0)
    client_id = f"fed-{ns.name}"
    service_account(ns, "billing")
    federated_client(keycloak, client_id, ns.name, "billing")
    ns.create("oauth2clients", "idp", secretless(keycloak, client_id, "billing"))
    ns.create("accesstokenrequests", "first", {"clientRef": {"name": "idp"}, "scopes": ["read"]})
    assert ns.wait_ready("first", timeout=90)["reason"] == "TokenValid"
    issued = token_of(ns, "first")
    info = introspect(keycloak, ns, client_id, "billing", issued)
    assert info["active"] is True
    assert info["client_id"] == client_id
    ready = ns.condition("idp", plural="oauth2clients") or {}
    assert "does not advertise" not in ready["message"]  # its private_key_jwt is ours
    tokens = operator.ctx.credentials.service_accounts
    assert tokens.mints == 1
    assert tokens.minted_for() == {(ns.name, "billing", keycloak.issuer)}

    # The ServiceAccount token is due again (80% of its 600 s): minted anew at the next
    # call, with no new client configuration (no pool dropped, no token re-issued).
    changes: list[object] = []
    on_change = operator.ctx.credentials.on_change

    async def spy(*old: object) -> object:
        changes.append(old)
        return await on_change(*old)

    operator.ctx.credentials.on_change = spy
    tokens._clock = lambda: time.time() + 490
    at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    ns.patch("accesstokenrequests", "first",
             {"metadata": {"annotations": {RENEW_REQUESTED_AT: at}}})  # fmt: skip
    wait_for("the renewal", lambda: revision(ns, "first") >= 2, timeout=60)
    settle(operator, ns, "first")
    # The client's stored tokens are still its own: a new request with the same scopes
    # shares one, with no token request of its own. (Two runs out of seven, under load,
    # shared another stored token than the renewed one; the message then shows why.)
    ns.create("accesstokenrequests", "second", {"clientRef": {"name": "idp"}, "scopes": ["read"]})
    ns.wait_ready("second", timeout=60)
    renewed = token_of(ns, "first")
    assert renewed != issued
    assert token_of(ns, "second") in (issued, renewed), [
        ((ns.get("accesstokenrequests", n) or {}).get("status"), ns.events(n))
        for n in ("first", "second")
    ]
    assert revision(ns, "second") == 1
    assert tokens.mints == 2
    assert introspect(keycloak, ns, client_id, "billing", renewed)["client_id"] == client_id
    assert changes == []
    assert tokens.mints == 2

    # No ServiceAccount token anywhere but in the operator's memory (its log at DEBUG too).
    assert "minted a token of ServiceAccount" in caplog.text
    assert cluster_tokens(ns, federation, caplog.text) == []

    # The ServiceAccount goes first (as in a namespace being deleted), and is seen gone
    # (the credentials' cache lives 5 s): revocation still authenticates, with the token
    # minted while it existed.
    assertion = minted(ns, "billing", keycloak.issuer)  # for introspecting afterwards
    ns.core.delete_namespaced_service_account("billing", ns.name)
    time.sleep(6)
    for name in ("first", "second"):
        ns.delete("accesstokenrequests", name)
    wait_for("the requests to go", lambda: not json_object(ns.custom.list_namespaced_custom_object(
        GROUP, VERSION, ns.name, "accesstokenrequests"))["items"], timeout=60)  # fmt: skip
    assert introspect(keycloak, ns, client_id, "billing", renewed, assertion)["active"] is False
    assert tokens.mints == 2
    # The last holder of the shared token revoked it.
    assert "Revoked" in {reason for name in ("first", "second") for reason, _ in ns.events(name)}


def test_refusals_give_a_clear_condition_and_no_token(
    kube_cluster: KubeCluster,
    ns: Namespace,
    operator_factory: Callable[..., OperatorThread],
    keycloak: Keycloak,
    federation: str,
) -> None:
    operator = operator_factory(
        retry_base_delay=1.0,
        retry_max_delay=2.0,
        client_retry_interval=2.0,
        kubernetes_api_audiences=(*DEFAULT_API_AUDIENCES, federation),
    )
    tokens = operator.ctx.credentials.service_accounts
    for account, usable in (("deployer", False), ("billing", True), ("stranger", True)):
        service_account(ns, account, usable=usable)
    for account in ("deployer", "billing", "ghost"):
        federated_client(keycloak, f"fed-{ns.name}-{account}", ns.name, account)

    # The attacker: a tenant of the namespace who may create clients and requests only.
    tenant = kube_cluster.service_account(unique_name("tenant"), ns.name, rules=TENANT_RULES)
    cases = {
        # name: (ServiceAccount, extra authentication fields, client condition reason)
        "unlabelled": ("deployer", {}, "ServiceAccountNotUsable"),
        "kube-audience": ("billing", {"audience": "https://KUBERNETES.default.svc/"},
                          "AudienceNotAllowed"),
        "own-audience": ("billing", {"audience": f"{federation}/"}, "AudienceNotAllowed"),
        "ghost": ("ghost", {}, "ServiceAccountNotFound"),
        "stranger": ("stranger", {}, None),
    }  # fmt: skip
    with tenant.client() as api:
        custom = k8s.CustomObjectsApi(api)
        for name, (account, auth, _) in cases.items():
            for plural, kind, spec in (
                ("oauth2clients", "OAuth2Client",
                 secretless(keycloak, f"fed-{ns.name}-{account}", account, **auth)),
                ("accesstokenrequests", "AccessTokenRequest", {"clientRef": {"name": name}}),
            ):  # fmt: skip
                custom.create_namespaced_custom_object(GROUP, VERSION, ns.name, plural, {
                    "apiVersion": f"{GROUP}/{VERSION}", "kind": kind,
                    "metadata": {"name": name}, "spec": spec,
                })  # fmt: skip

    for name, (_, _, reason) in cases.items():
        if reason is not None:
            condition = ns.wait_ready(name, "False", reason, timeout=30, plural="oauth2clients")
            assert reason in condition["reason"]
    assert (
        "kubectl label serviceaccount deployer"
        in (ns.condition("unlabelled", plural="oauth2clients") or {})["message"]
    )
    # Keycloak refuses a ServiceAccount no client trusts: the usual failure.
    ns.wait_ready("stranger", "False", "InvalidClient", timeout=60)
    for name in cases:
        assert ns.condition(name)["status"] != "True"  # type: ignore[index]
        assert ns.token_secret(name) is None
    assert tokens.minted_for() == {(ns.name, "stranger", keycloak.issuer)}

    # What the audience guard prevents: a token for the API server's own audience is a
    # credential for the cluster (authenticated, HTTP 403 for lack of rights, not 401).
    ca = kube_cluster.configuration().ssl_ca_cert
    for audience, status in ((federation, 403), (keycloak.issuer, 401)):
        answer = httpx.get(
            f"{kube_cluster.server}/api/v1/namespaces/{ns.name}/secrets",
            headers={"Authorization": f"Bearer {minted(ns, 'billing', audience)}"},
            verify=ssl.create_default_context(cafile=ca) if ca else True,
        )
        assert answer.status_code == status, audience

    # Recovery: the label given by whoever may write the ServiceAccount, the missing one
    # created: both become Ready without any change to their clients.
    ns.core.patch_namespaced_service_account("deployer", ns.name, {"metadata": {"labels": USABLE}})
    service_account(ns, "ghost")
    for name in ("unlabelled", "ghost"):
        ns.wait_ready(name, timeout=60)
        assert TOKEN_ANNOTATION in (
            ns.core.read_namespaced_secret(name, ns.name).metadata.annotations or {}  # type: ignore[union-attr]
        )
    assert ns.condition("kube-audience")["status"] != "True"  # type: ignore[index]
    assert cluster_tokens(ns, federation) == []
