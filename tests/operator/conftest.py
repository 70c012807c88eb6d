"""Fixtures for the operator's end-to-end tests: the real control plane, the real
authorization server, and the operator running in a thread."""

from __future__ import annotations

import base64
import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from oauth2_token_operator.api.crd import GROUP, VERSION
from oauth2_token_operator.api.labels import USABLE_BY_OPERATOR, USABLE_VALUE
from tests.authserver.fixtures import AuthServer, TestClient, client_auth
from tests.cluster.harness import KubeCluster, unique_name
from tests.cluster.objects import json_object, unless_missing
from tests.gate import Gate, gate
from tests.integration.conftest import Counters
from tests.operator.process import OperatorProcess
from tests.operator.process import operator_processes as start_processes
from tests.operator.runner import OperatorThread, loopback_config, running_operator
from tests.polling import wait_for as wait_for  # the operator tests import it from here


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test here needs the control plane; those that use `ns` (or an operator) the
    authorization server too. (A `pytestmark` in a conftest marks nothing.)"""
    here = Path(__file__).parent
    for item in items:
        if here not in Path(str(item.fspath)).parents:
            continue
        item.add_marker(pytest.mark.cluster)
        fixtures = getattr(item, "fixturenames", ())
        if {"ns", "operator", "operator_factory", "authserver"} & set(fixtures):
            item.add_marker(pytest.mark.authserver)


RESOURCE_SCOPES = ["read"]
USABLE = {USABLE_BY_OPERATOR: USABLE_VALUE}
"""The label that grants the operator the use of a Secret a spec names."""


@dataclass
class Namespace:
    """Objects in one test namespace, through the admin client."""

    api: k8s.ApiClient
    name: str
    authserver: AuthServer
    siblings: list[Namespace] = field(default_factory=list)

    def sibling(self, suffix: str, labels: dict[str, str] | None = None) -> Namespace:
        """Another namespace, cleaned up with this one."""
        name = f"{self.name}-{suffix}"
        self.core.create_namespace(
            k8s.V1Namespace.model_validate({"metadata": {"name": name, "labels": labels or {}}})
        )
        other = Namespace(self.api, name, self.authserver)
        self.siblings.append(other)
        return other

    @property
    def core(self) -> k8s.CoreV1Api:
        return k8s.CoreV1Api(self.api)

    @property
    def custom(self) -> k8s.CustomObjectsApi:
        return k8s.CustomObjectsApi(self.api)

    def secret(
        self,
        name: str,
        data: dict[str, str],
        *,
        usable: bool = True,
        type_: str | None = None,
        **meta: Any,
    ) -> dict[str, Any]:
        """A Secret; `usable` (the default) grants the operator its use, as every Secret
        a client or request references must (issue 22, item 5)."""
        labels = {**(meta.pop("labels", None) or {}), **(USABLE if usable else {})}
        body = k8s.V1Secret.model_validate(
            {
                "metadata": {"name": name, "labels": labels, **meta},
                "stringData": data,
                **({"type": type_} if type_ else {}),
            }
        )
        return self.core.create_namespaced_secret(self.name, body).to_dict()

    def grant_use(self, secret: str) -> None:
        """`kubectl label secret SECRET oauth2.token-operator.io/usable-by-operator=true`."""
        self.core.patch_namespaced_secret(secret, self.name, {"metadata": {"labels": USABLE}})

    def client(
        self, name: str, test_client: TestClient, *, usable: bool = True, **spec: Any
    ) -> None:
        """OAuth2Client `name` for `test_client`, its secret in Secret `<name>-credentials`
        (granting the operator its use unless not `usable`)."""
        assert test_client.client_secret is not None
        self.secret(
            f"{name}-credentials", {"client-secret": test_client.client_secret}, usable=usable
        )
        full_spec = {
            "issuer": self.authserver.issuer,
            "clientId": test_client.client_id,
            "authentication": {
                "method": "client_secret_basic",
                "clientSecretRef": {"name": f"{name}-credentials", "key": "client-secret"},
            },
            "tls": {"caBundle": self.authserver.ca_bundle.read_text()},
            **spec,
        }
        self.create("oauth2clients", name, full_spec)

    def stalled_client(self, name: str, url: str, endpoint: str = "token") -> None:
        """Client `name` (the `client_secret_basic` test client) whose `endpoint` is `url`,
        one that accepts and never answers (`tests.faults.stalled_server`)."""
        self.client(
            name,
            self.authserver.clients["client_secret_basic"],
            endpoints={endpoint: url},
            allowInsecureHTTP=True,  # the stalled endpoint is plain http on loopback
        )

    def request(self, name: str, client: str, **spec: Any) -> dict[str, Any]:
        full_spec = {
            "clientRef": {"name": client},
            "scopes": RESOURCE_SCOPES,
            "resources": [self.authserver.resource],
            **spec,
        }
        full_spec = {k: v for k, v in full_spec.items() if v is not None}
        return self.create("accesstokenrequests", name, full_spec)

    def refresh_request(self, name: str, client: str, secret: str) -> dict[str, Any]:
        """A refresh_token request reading key `refresh_token` of Secret `secret`."""
        ref = {"name": secret, "key": "refresh_token"}
        return self.request(name, client, grant="refresh_token", refreshTokenSecretRef=ref)

    def user_grant(self, client: str) -> str:
        """Alice's grant through the `client` test client (the password grant, scope read):
        its refresh token in Secret `user-grant`, the client as OAuth2Client `idp`. Returns
        the refresh token."""
        test_client = self.authserver.clients[client]
        granted = self.authserver.password_grant(
            test_client, ["read"], resource=self.authserver.resource
        )
        self.secret("user-grant", {"refresh_token": granted["refresh_token"]})
        self.client("idp", test_client)
        return str(granted["refresh_token"])

    def external_token(self, test_client: TestClient) -> str:
        """An access token (scope read) obtained outside the operator, e.g. to register."""
        server = self.authserver
        form = {"grant_type": "client_credentials", "scope": "read", "resource": server.resource}
        return str(server.token_request(test_client, form)["access_token"])

    def register_request(self, name: str, client: str, secret: str) -> dict[str, Any]:
        """A register request for the token in key `token` of Secret `secret` (any scopes)."""
        ref = {"name": secret, "key": "token"}
        return self.request(
            name, client, grant="register", tokenSecretRef=ref, scopes=None, resources=None
        )

    def create(self, plural: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        kind = {"oauth2clients": "OAuth2Client", "accesstokenrequests": "AccessTokenRequest"}
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": kind[plural],
            "metadata": {"name": name},
            "spec": spec,
        }
        return json_object(
            self.custom.create_namespaced_custom_object(GROUP, VERSION, self.name, plural, body)
        )

    def get(self, plural: str, name: str) -> dict[str, Any] | None:
        found = unless_missing(
            lambda: self.custom.get_namespaced_custom_object(
                GROUP, VERSION, self.name, plural, name
            )
        )
        return None if found is None else json_object(found)

    def patch(self, plural: str, name: str, patch: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.name, plural, name, patch)

    def delete(self, plural: str, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.name, plural, name)

    def condition(
        self, name: str, type_: str = "Ready", plural: str = "accesstokenrequests"
    ) -> dict[str, Any] | None:
        body = self.get(plural, name) or {}
        for entry in (body.get("status") or {}).get("conditions") or ():
            if entry["type"] == type_:
                return entry  # type: ignore[no-any-return]
        return None

    def wait_ready(
        self,
        name: str,
        status: str = "True",
        reason: str | None = None,
        timeout: float = 30.0,
        plural: str = "accesstokenrequests",
    ) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            found = self.condition(name, plural=plural)
            if (
                found
                and found["status"] == status
                and (reason is None or found["reason"] == reason)
            ):
                return found
            return None

        try:
            return wait_for(f"{plural}/{name} Ready={status} {reason or ''}", check, timeout)  # type: ignore[no-any-return]
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}; status: {(self.get(plural, name) or {}).get('status')}"
            ) from None

    def token_secret(self, name: str) -> dict[str, str] | None:
        secret = unless_missing(lambda: self.core.read_namespaced_secret(name, self.name))
        if secret is None:
            return None
        return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}

    def events(self, name: str) -> list[tuple[str, str]]:
        events = self.core.list_namespaced_event(
            self.name, field_selector=f"involvedObject.name={name}"
        )
        return [(e.reason or "", e.message or "") for e in events.items]


@pytest.fixture
def ns(
    kube_admin: k8s.ApiClient,
    authserver: AuthServer,
    operator_factory: Callable[..., OperatorThread],
) -> Iterator[Namespace]:
    """A fresh namespace, emptied of our objects at the end while the test's operator still
    runs (it depends on `operator_factory` for that order), so every finalizer is handled
    and nothing is left for a later test's operator."""
    name = unique_name("op")
    core = k8s.CoreV1Api(kube_admin)
    core.create_namespace(k8s.V1Namespace.model_validate({"metadata": {"name": name}}))
    namespace = Namespace(kube_admin, name, authserver)
    yield namespace
    for each in (*namespace.siblings, namespace):
        _empty_and_delete(each)


def _empty_and_delete(namespace: Namespace) -> None:
    """Our objects first (their finalizers run now, requests before clients), then the
    namespace: the rest needs no operator, the namespace controller removes it."""
    custom = namespace.custom
    for plural in ("accesstokenrequests", "oauth2clients"):
        custom.delete_collection_namespaced_custom_object(GROUP, VERSION, namespace.name, plural)

        def emptied(plural: str = plural) -> bool:
            found = custom.list_namespaced_custom_object(GROUP, VERSION, namespace.name, plural)
            return not json_object(found)["items"]

        wait_for(f"{plural} in {namespace.name} to be deleted", emptied, timeout=60)
    try:
        namespace.core.delete_namespace(namespace.name)
    except ApiException as exc:
        if exc.status not in (404, 409):  # already going
            raise


@pytest.fixture
def operator_factory(kube_cluster: KubeCluster) -> Iterator[Callable[..., OperatorThread]]:
    """Start operators (each `with`-free: stopped at the end of the test, in reverse)."""
    started: list[Any] = []

    def start(
        *, wait: bool = True, configuration: k8s.Configuration | None = None, **config: Any
    ) -> OperatorThread:
        """`configuration`: how the operator reaches the API server (default: directly,
        as the admin)."""
        context = running_operator(
            configuration or kube_cluster.configuration(),
            loopback_config(**{"metrics_port": None, "health_port": None, **config}),
            wait=wait,
        )
        operator = context.__enter__()
        started.append(context)
        return operator

    yield start
    for context in reversed(started):
        context.__exit__(None, None, None)


@pytest.fixture
def operator_processes(
    kube_cluster: KubeCluster, tmp_path: Path
) -> Iterator[Callable[..., OperatorProcess]]:
    """Start `oauth2-token-operator run` processes (`start(*args)`, waits until healthy);
    those still running are stopped at the end. Ask for it before `ns` so the namespace is
    emptied while the last one still runs (its finalizers are the operator's job)."""
    yield from start_processes(kube_cluster, tmp_path)


@pytest.fixture
def operator(operator_factory: Callable[..., OperatorThread]) -> OperatorThread:
    return operator_factory(min_renewal_lead=5.0, revocation_deadline=5.0)


QUIET_WINDOW = 2.0
"""How long a "nothing more happens" check watches once the operator has settled (see
`settle`). The echoes of the operator's own writes come back within milliseconds, so what
they would cause happens well within it; the check proves nothing beyond it."""


def settle(
    operator: OperatorThread, ns: Namespace, name: str, *, window: float = QUIET_WINDOW
) -> None:
    """Until the operator is done with request `name` by its own account (not reconciling
    it, and nothing planned for it within `window`), then for `window`: a check after it
    sees whatever the operator would still do in that window."""
    key = (ns.name, name)
    scheduler = operator.ctx.request_scheduler
    locks = operator.memo.requests._locks._locks  # held while a reconcile runs

    def idle() -> bool:
        planned = scheduler.when(key) if scheduler is not None else None
        return key not in locks and (planned is None or planned > time.time() + window)

    wait_for(f"the operator to settle {ns.name}/{name}", idle, timeout=30, every=0.05)
    time.sleep(window)


def credentials(
    client: TestClient, secret: str, alg: str = "ES256"
) -> tuple[dict[str, Any], dict[str, str], str | None]:
    """An OAuth2Client's `authentication` for `client` with its credential in Secret
    `secret`, the data of that Secret, and its type (private_key_jwt signs with `alg`,
    or with the client's only key)."""
    method = client.auth_method
    if method == "private_key_jwt":
        alg = alg if alg in client.private_keys else next(iter(client.private_keys))
        authentication = {
            "method": method,
            "privateKeyRef": {"name": secret, "key": "private-key"},
            "signingAlgorithm": alg,
            "keyId": client.kids[alg],
        }
        return authentication, {"private-key": client.private_keys[alg]}, None
    if method == "tls_client_auth":
        assert client.cert_file is not None
        assert client.key_file is not None
        data = {"tls.crt": client.cert_file.read_text(), "tls.key": client.key_file.read_text()}
        return {"method": method, "tlsSecretRef": {"name": secret}}, data, "kubernetes.io/tls"
    assert client.client_secret is not None
    authentication = {"method": method, "clientSecretRef": {"name": secret, "key": "secret"}}
    return authentication, {"secret": client.client_secret}, None


def introspect(authserver: AuthServer, token: str, client: TestClient) -> dict[str, Any]:
    """Ask the authorization server itself whether `token` is active (as `client`)."""
    headers, auth_data = client_auth(client, audience=authserver.issuer)
    response = httpx.post(
        authserver.introspection_endpoint,
        data={"token": token, **auth_data},
        headers=headers,
        verify=authserver.ssl_context(),
    )
    response.raise_for_status()
    return response.json()  # type: ignore[no-any-return]


@pytest.fixture
def revocation_gate(ns: Namespace) -> Iterator[Gate]:
    """A gate in front of oidc-provider, used as the revocation endpoint only of client
    `idp` (the `client_secret_basic` test client): every connection through it is a
    revocation call."""
    server = ns.authserver
    port = urlsplit(server.issuer).port
    assert port is not None
    with gate(port) as opened:
        path = urlsplit(server.revocation_endpoint).path
        ns.client(
            "idp",
            server.clients["client_secret_basic"],
            endpoints={"revocation": f"https://127.0.0.1:{opened.port}{path}"},
        )
        yield opened


@contextlib.contextmanager
def token_endpoint_down(ns: Namespace, names: list[str]) -> Iterator[Gate]:
    """Client `idp` (the `renewal_ttl` test client: 20 s tokens) whose token endpoint is a
    closed gate in front of oidc-provider (open it for the server to come back), and a
    request per name, each with scopes of its own (no two share a token)."""
    server = ns.authserver
    port = urlsplit(server.issuer).port
    assert port is not None
    with gate(port) as outage:
        outage.open = False
        ns.client(
            "idp",
            server.clients["renewal_ttl"],
            endpoints={"token": f"https://127.0.0.1:{outage.port}/token"},
        )
        for i, name in enumerate(names):
            ns.request(name, "idp", scopes=["read", f"x{i}"])
        yield outage


def recovers_with_one_call_each(
    ns: Namespace, outage: Gate, counters: Counters, names: list[str], timeout: float
) -> None:
    """The server behind `outage` (see `token_endpoint_down`) comes back: each request is
    Ready within `timeout`, after one token request each (no burst). Each token request
    that succeeds is one revision of its request; a request Ready early may renew its
    20 s token before the last is Ready (seen under load), so the calls are compared
    with the revisions, not with the number of requests."""
    before = counters.delta("client=renewal-ttl /token")
    outage.open = True
    for name in names:
        ns.wait_ready(name, timeout=timeout)
    time.sleep(2)

    def revisions() -> list[int]:
        return [int(((ns.get("accesstokenrequests", n) or {}).get("status") or {})["revision"])
                for n in names]  # fmt: skip

    # Polled: a renewal in flight is counted by the server before its revision is written.
    wait_for(
        "one token request per token issued",
        lambda: counters.delta("client=renewal-ttl /token") - before == sum(revisions()),
        timeout=10,
    )


@pytest.fixture
def counters(authserver: AuthServer) -> Counters:
    """Deltas of the authorization server's request counters."""
    return Counters(authserver)
