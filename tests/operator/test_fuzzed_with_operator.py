"""Fuzzed specs with the operator running: every spec the API server accepts ends up
with a `Ready` condition that has a reason, no handler fails with an exception, the
operator stays healthy, and no secret value shows in a log, status or Event.

The cases are those of `tests/api/test_fuzzed_specs.py` (one field of a valid spec set
to an arbitrary JSON value, or removed), 1000 per kind, built on a client of the real
authorization server so that accepted specs go the whole way: discovery, token
requests, Secrets. Test traffic stays on loopback: a client case whose URL field names
another host is not sent (see `loopback_only`)."""

from __future__ import annotations

import base64
import itertools
import json
import logging
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from oauth2_token_operator.api.crd import (
    ACCESS_TOKEN_REQUEST,
    GROUP,
    OAUTH2_CLIENT,
    VERSION,
    Kind,
    structural_schema,
)
from tests.api.test_fuzzed_specs import REMOVE, field_paths, json_values, mutate
from tests.operator.conftest import RESOURCE_SCOPES, Namespace, wait_for
from tests.operator.runner import OperatorThread

CASES = 1000

_names = st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True)
plausible = st.one_of(
    _names,
    st.lists(_names, max_size=3),
    st.fixed_dictionaries({"name": _names, "key": _names}),
    st.sampled_from(["idp", "read", "30s", "90s", "2h", "register", "refresh_token", "none"]),
    st.integers(min_value=0, max_value=100),
)
"""Values of the shapes the schema wants, so that more cases get past it to the operator."""
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


def loopback_only(value: object) -> bool:
    """No string in `value` is an http(s) URL naming a host off this machine."""
    if isinstance(value, str):
        try:
            url = httpx.URL(value.strip())
        except (httpx.InvalidURL, ValueError):
            return True
        return url.scheme not in ("http", "https") or not url.host or url.host in LOOPBACK_HOSTS
    if isinstance(value, dict):
        return all(loopback_only(v) for v in value.values())
    if isinstance(value, list):
        return all(loopback_only(v) for v in value)
    return True


def create_fuzzed(ns: Namespace, kind: Kind, valid: dict[str, Any]) -> list[str]:
    """Send `CASES` fuzzed specs; return the names of those the API server stored."""
    paths = field_paths(structural_schema(kind.spec))
    stored: list[str] = []
    sent = itertools.count()

    @settings(
        max_examples=CASES,
        deadline=None,
        database=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.filter_too_much,
        ],
    )
    @given(path=st.sampled_from(paths), value=st.just(REMOVE) | json_values | plausible)
    def send(path: tuple[str, ...], value: object) -> None:
        spec = mutate(valid, path, value)
        if kind is OAUTH2_CLIENT:  # a request's URLs (resources) are names, never contacted
            assume(loopback_only(spec))
        name = f"{kind.short_name}-fuzz-{next(sent)}"  # no `random` inside a hypothesis test
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": kind.kind,
            "metadata": {"name": name},
            "spec": spec,
        }
        refusal: ApiException | None = None
        try:
            ns.custom.create_namespaced_custom_object(GROUP, VERSION, ns.name, kind.plural, body)
        except ApiException as exc:
            refusal = exc
        if refusal is None:
            stored.append(name)
        else:
            assert refusal.status == 422, (refusal.status, refusal.body)

    send()
    return stored


def conditions_by_name(ns: Namespace, plural: str) -> dict[str, dict[str, Any] | None]:
    listed = ns.custom.list_namespaced_custom_object(GROUP, VERSION, ns.name, plural)
    items: list[dict[str, Any]] = listed["items"]  # type: ignore[index]
    result: dict[str, dict[str, Any] | None] = {}
    for item in items:
        ready = [
            c for c in (item.get("status") or {}).get("conditions") or () if c["type"] == "Ready"
        ]
        result[item["metadata"]["name"]] = ready[0] if ready else None
    return result


# The operator runs in a thread of this process and draws from `random` (kopf, the HTTP
# stack) while hypothesis generates a case; hypothesis sees the global state move.
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")
def test_fuzzed_specs_end_as_conditions_never_as_failures(
    ns: Namespace,
    operator: OperatorThread,
    kube_admin: k8s.ApiClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    basic = ns.authserver.clients["client_secret_basic"]
    assert basic.client_secret is not None
    ns.client("idp", basic)
    ns.wait_ready("idp", plural="oauth2clients")
    valid_client = (ns.get("oauth2clients", "idp") or {})["spec"]
    valid_request = {
        "clientRef": {"name": "idp"},
        "scopes": RESOURCE_SCOPES,
        "resources": [ns.authserver.resource],
    }

    stored = {
        "oauth2clients": create_fuzzed(ns, OAUTH2_CLIENT, valid_client),
        "accesstokenrequests": create_fuzzed(ns, ACCESS_TOKEN_REQUEST, valid_request),
    }
    # Most cases are refused by the schema; enough are stored to exercise the operator.
    assert len(stored["oauth2clients"]) >= 10, stored
    assert len(stored["accesstokenrequests"]) >= 10, stored

    def every_one_has_a_reason() -> bool:
        for plural, names in stored.items():
            found = conditions_by_name(ns, plural)
            if any(not (found.get(name) or {}).get("reason") for name in names):
                return False
        return True

    wait_for(
        "a Ready condition with a reason on every stored object", every_one_has_a_reason, 600, 2
    )
    assert operator.ready, "the operator is still healthy"

    failures = [
        record.getMessage()
        for record in caplog.records
        if record.levelno >= logging.ERROR or record.exc_info is not None
    ]
    assert not failures, f"{len(failures)} handler failures, first: {failures[:3]}"

    secrets = {basic.client_secret}
    for secret in k8s.CoreV1Api(kube_admin).list_namespaced_secret(ns.name).items:
        for key, value in (secret.data or {}).items():
            if key == "access_token":
                secrets.add(base64.b64decode(value).decode())
    assert len(secrets) > 1, "tokens were issued for the accepted requests"
    visible = [record.getMessage() for record in caplog.records]
    for plural in stored:
        visible.append(
            json.dumps(ns.custom.list_namespaced_custom_object(GROUP, VERSION, ns.name, plural))
        )
    events = k8s.CoreV1Api(kube_admin).list_namespaced_event(ns.name)
    visible += [f"{e.reason} {e.message}" for e in events.items]
    everything = "\n".join(visible)
    leaked = [value[:6] + "…" for value in secrets if value and value in everything]
    assert not leaked, f"secret values found in logs, status or events: {leaked}"
