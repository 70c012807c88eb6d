"""Fuzzed specs against the real API server: whatever it accepts, the operator's models
accept too (so a stored object can never crash the operator), and whatever the models
refuse, the API server refused first or the operator reports as a condition.

Each case takes a valid spec and puts an arbitrary JSON value at one field path the
schema knows (or removes that field): 1000 cases per kind."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from pydantic import BaseModel, ValidationError

from oauth2_token_operator.api import AccessTokenRequestSpec, OAuth2ClientSpec
from oauth2_token_operator.api.crd import (
    ACCESS_TOKEN_REQUEST,
    GROUP,
    OAUTH2_CLIENT,
    VERSION,
    Kind,
    structural_schema,
)
from tests.api.cases import VALID_CLIENT, VALID_REQUEST
from tests.cluster.harness import unique_name

pytestmark = pytest.mark.cluster

REMOVE = object()

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**40), max_value=2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | st.sampled_from(["https://x", "http://x", "5m", "0s", "-1s", "client_secret_jwt", ""]),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=12), children, max_size=3)
    ),
    max_leaves=6,
)


def field_paths(schema: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = []
    for name, sub in (schema.get("properties") or {}).items():
        path = (*prefix, name)
        paths.append(path)
        paths += field_paths(sub, path)
    return paths


def mutate(spec: dict[str, Any], path: tuple[str, ...], value: object) -> dict[str, Any]:
    result = copy.deepcopy(spec)
    node = result
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    if value is REMOVE:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value
    return result


def fuzz(kind: Kind, model: type[BaseModel], valid: dict[str, Any]) -> Any:
    paths = field_paths(structural_schema(kind.spec))

    @settings(
        max_examples=1000,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(path=st.sampled_from(paths), value=st.just(REMOVE) | json_values)
    def check(
        api: k8s.CustomObjectsApi, namespace: str, path: tuple[str, ...], value: object
    ) -> None:
        spec = mutate(valid, path, value)
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": kind.kind,
            "metadata": {"name": unique_name(kind.short_name)},
            "spec": spec,
        }
        refusal: ApiException | None = None
        try:
            stored = api.create_namespaced_custom_object(
                GROUP, VERSION, namespace, kind.plural, body
            )
        except ApiException as exc:
            refusal = exc
        if refusal is not None:
            assert refusal.status == 422, (refusal.status, refusal.body)
            assert json.loads(refusal.body or "{}").get("message"), "a refusal says why"
            return
        assert isinstance(stored, dict)
        try:
            model.model_validate(stored["spec"])
        except ValidationError as exc:
            raise AssertionError(
                f"the API server accepted a spec the model refuses: {json.dumps(spec)}\n{exc}"
            ) from None
        api.delete_namespaced_custom_object(
            GROUP, VERSION, namespace, kind.plural, stored["metadata"]["name"]
        )

    return check


def test_fuzzed_clients(kube_admin: k8s.ApiClient, kube_namespace: str) -> None:
    fuzz(OAUTH2_CLIENT, OAuth2ClientSpec, VALID_CLIENT)(
        k8s.CustomObjectsApi(kube_admin), kube_namespace
    )


def test_fuzzed_requests(kube_admin: k8s.ApiClient, kube_namespace: str) -> None:
    fuzz(ACCESS_TOKEN_REQUEST, AccessTokenRequestSpec, VALID_REQUEST)(
        k8s.CustomObjectsApi(kube_admin), kube_namespace
    )
