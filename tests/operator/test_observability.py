"""What the operator shows the world: metrics, Events, status and logs, and that no
token, refresh token or client secret is ever in any of them."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Callable

import httpx
import pytest
from kubernetes import client as k8s

from oauth2_token_operator.api.crd import GROUP, VERSION
from oauth2_token_operator.util.rfc3339 import parse_rfc3339
from tests.operator.conftest import Namespace, wait_for
from tests.operator.runner import OperatorThread


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def metric(text: str, name: str, /, **labels: str) -> float | None:
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            return float(value)
    return None


def test_metrics(ns: Namespace, operator_factory: Callable[..., OperatorThread]) -> None:
    port = free_port()
    operator_factory(metrics_port=port)
    ns.client("idp", ns.authserver.clients["client_secret_basic"])
    ns.request("billing", "idp")
    ns.wait_ready("billing")
    data = ns.token_secret("billing") or {}
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    prefix = "oauth2_token_operator"
    expiry = metric(text, f"{prefix}_token_expiry_timestamp_seconds", namespace=ns.name)
    expected = time.mktime(time.strptime(data["expires_at"], "%Y-%m-%dT%H:%M:%SZ"))
    assert expiry is not None
    assert abs(expiry - (expected - time.timezone)) < 1
    calls = metric(text, f"{prefix}_oauth2_requests_total", endpoint="token_endpoint", outcome="ok")
    assert calls is not None
    assert calls >= 1
    assert metric(text, f"{prefix}_issuances_total", kind="issued", outcome="ok") == 1
    assert metric(text, f"{prefix}_time_to_ready_seconds_count") == 1
    # What a platform team alerts on (issue 25): readiness with its reason, the renewal
    # schedule, the client's readiness; a request that cannot be served shows 0.
    status = (ns.get("accesstokenrequests", "billing") or {})["status"]
    renewal = metric(text, f"{prefix}_token_renewal_timestamp_seconds", namespace=ns.name)
    assert renewal == parse_rfc3339(status["renewalTime"])
    ready = {"namespace": ns.name, "name": "billing", "reason": "TokenValid"}
    assert metric(text, f"{prefix}_request_ready", **ready) == 1
    assert metric(text, f"{prefix}_client_ready", namespace=ns.name, reason="Ready") == 1
    ns.request("orphan", "no-such-client")
    ns.wait_ready("orphan", status="False", reason="ClientNotFound")
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    orphan = {"namespace": ns.name, "name": "orphan", "reason": "ClientNotFound"}
    assert metric(text, f"{prefix}_request_ready", **orphan) == 0

    ns.delete("accesstokenrequests", "billing")
    wait_for("deletion", lambda: ns.get("accesstokenrequests", "billing") is None)
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    assert metric(text, f"{prefix}_token_expiry_timestamp_seconds", namespace=ns.name) is None
    assert metric(text, f"{prefix}_request_ready", name="billing") is None
    revocations = metric(
        text, f"{prefix}_oauth2_requests_total", endpoint="revocation_endpoint", outcome="ok"
    )
    assert revocations == 1


def test_no_secret_anywhere_after_a_full_run(
    ns: Namespace,
    operator: OperatorThread,
    kube_admin: k8s.ApiClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every grant, a failure, a renewal and deletions at DEBUG; then every log record
    (kopf's, httpx's and ours), Event, status and annotation is searched for every
    secret value the run used."""
    caplog.set_level(logging.DEBUG)
    server = ns.authserver
    basic = server.clients["client_secret_basic"]
    renewing = server.clients["renewal_ttl"]
    assert basic.client_secret is not None
    assert renewing.client_secret is not None
    secrets = {basic.client_secret, renewing.client_secret, "wrong-secret-value-1234"}

    ns.client("idp", basic)
    ns.client("renewing", renewing)
    from tests.authserver.fixtures import TestClient

    ns.client("broken", TestClient("cs-basic", "client_secret_basic", "wrong-secret-value-1234"))
    grant = server.password_grant(renewing, ["read"], resource=server.resource)
    secrets.add(grant["refresh_token"])
    secrets.add(grant["access_token"])
    ns.secret("user-grant", {"refresh_token": grant["refresh_token"]})
    external = ns.external_token(basic)
    secrets.add(external)
    ns.secret("external", {"token": external})

    ns.request("cc", "idp")
    ns.refresh_request("rt", "renewing", "user-grant")
    ns.register_request("reg", "idp", "external")
    ns.request("fails", "broken")
    for name in ("cc", "rt", "reg"):
        ns.wait_ready(name)
    ns.wait_ready("fails", status="False", reason="InvalidClient")
    # Collect every token the operator handled, including the renewal of the 20 s one.
    first_rt_token = (ns.token_secret("rt") or {})["access_token"]
    wait_for(
        "a renewal",
        lambda: (ns.token_secret("rt") or {}).get("access_token") not in (None, first_rt_token),
        timeout=30,
    )
    for name in ("cc", "rt", "reg"):
        secrets.add((ns.token_secret(name) or {})["access_token"])
    secrets.add(first_rt_token)
    secrets.add((ns.token_secret("user-grant") or {})["refresh_token"])
    for name in ("cc", "reg"):
        ns.delete("accesstokenrequests", name)
    wait_for("deletions", lambda: ns.get("accesstokenrequests", "cc") is None)

    visible: list[str] = [record.getMessage() for record in caplog.records]
    visible += [str(record.args) for record in caplog.records]
    for plural in ("accesstokenrequests", "oauth2clients"):
        items = k8s.CustomObjectsApi(kube_admin).list_namespaced_custom_object(
            GROUP, VERSION, ns.name, plural
        )
        visible.append(json.dumps(items))
    events = k8s.CoreV1Api(kube_admin).list_namespaced_event(ns.name)
    visible += [f"{e.reason} {e.message}" for e in events.items]
    for secret in k8s.CoreV1Api(kube_admin).list_namespaced_secret(ns.name).items:
        visible.append(json.dumps((secret.metadata.annotations or {}) if secret.metadata else {}))
    assert len(caplog.records) > 100, "the run should have logged plenty at DEBUG"
    everything = "\n".join(visible)
    leaked = [s[:6] + "…" for s in secrets if s and s in everything]
    assert not leaked, f"secret values found in logs, status, events or annotations: {leaked}"
