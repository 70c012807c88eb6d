"""The generated CRDs on a real kube-apiserver: bad input is refused there with a clear
message, defaults match the models', and the status keeps kopf's bookkeeping."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from pydantic import BaseModel

from oauth2_token_operator.api import AccessTokenRequestSpec, OAuth2ClientSpec
from oauth2_token_operator.api.crd import ACCESS_TOKEN_REQUEST, GROUP, OAUTH2_CLIENT, VERSION, Kind
from tests.api.cases import (
    ACCEPTED_TEMPLATE_TYPES,
    INVALID_CLIENTS,
    INVALID_REQUESTS,
    VALID_CLIENT,
    VALID_REQUEST,
    Invalid,
)
from tests.cluster.harness import unique_name
from tests.cluster.objects import json_object

pytestmark = pytest.mark.cluster


def create(api: k8s.ApiClient, namespace: str, kind: Kind, spec: dict[str, Any]) -> Any:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": kind.kind,
        "metadata": {"name": unique_name(kind.short_name)},
        "spec": spec,
    }
    return k8s.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, kind.plural, body
    )


def refusal(api: k8s.ApiClient, namespace: str, kind: Kind, spec: dict[str, Any]) -> str:
    with pytest.raises(ApiException) as caught:
        create(api, namespace, kind, spec)
    assert caught.value.status == 422, caught.value.body
    return str(caught.value.body)


@pytest.mark.parametrize("case", INVALID_CLIENTS, ids=lambda c: c.id)
def test_invalid_clients_are_refused_by_the_api_server(
    kube_admin: k8s.ApiClient, kube_namespace: str, case: Invalid
) -> None:
    assert case.message in refusal(kube_admin, kube_namespace, OAUTH2_CLIENT, case.spec)


@pytest.mark.parametrize("case", INVALID_REQUESTS, ids=lambda c: c.id)
def test_invalid_requests_are_refused_by_the_api_server(
    kube_admin: k8s.ApiClient, kube_namespace: str, case: Invalid
) -> None:
    assert case.message in refusal(kube_admin, kube_namespace, ACCESS_TOKEN_REQUEST, case.spec)


@pytest.mark.parametrize(
    ("kind", "model", "spec"),
    [
        (OAUTH2_CLIENT, OAuth2ClientSpec, VALID_CLIENT),
        (ACCESS_TOKEN_REQUEST, AccessTokenRequestSpec, VALID_REQUEST),
    ],
    ids=["OAuth2Client", "AccessTokenRequest"],
)
def test_server_defaults_are_the_models_defaults(
    kube_admin: k8s.ApiClient,
    kube_namespace: str,
    kind: Kind,
    model: type[BaseModel],
    spec: dict[str, Any],
) -> None:
    stored = create(kube_admin, kube_namespace, kind, spec)["spec"]
    assert stored != spec, "the API server applied no default"
    assert model.model_validate(stored) == model.model_validate(spec)
    # What the model writes out is what the server stores (no field the server drops).
    assert model.model_validate(stored).model_dump(by_alias=True, exclude_none=True) == stored


def test_every_authentication_method_is_accepted(
    kube_admin: k8s.ApiClient, kube_namespace: str
) -> None:
    secret = {"name": "creds", "key": "value"}
    for authentication in (
        {"method": "client_secret_basic", "clientSecretRef": secret},
        {"method": "client_secret_post", "clientSecretRef": secret},
        {"method": "client_secret_jwt", "clientSecretRef": secret, "signingAlgorithm": "HS512"},
        {"method": "private_key_jwt", "privateKeyRef": secret, "signingAlgorithm": "ES256"},
        {"method": "tls_client_auth", "tlsSecretRef": {"name": "client-tls"}},
        {"method": "none"},
        {"method": "service_account_token", "serviceAccountRef": {"name": "billing"}},
        {
            "method": "service_account_token",
            "serviceAccountRef": {"name": "billing"},
            "audience": "api://AzureADTokenExchange",
        },
    ):
        spec = dict(VALID_CLIENT, authentication=authentication)
        OAuth2ClientSpec.model_validate(spec)
        create(kube_admin, kube_namespace, OAUTH2_CLIENT, spec)


def test_a_token_secret_of_opaque_or_a_type_of_ones_own_is_accepted(
    kube_admin: k8s.ApiClient, kube_namespace: str
) -> None:
    for secret_type in ACCEPTED_TEMPLATE_TYPES:
        spec = dict(VALID_REQUEST, secretTemplate={"type": secret_type, "labels": {"a": "b"}})
        AccessTokenRequestSpec.model_validate(spec)
        stored = create(kube_admin, kube_namespace, ACCESS_TOKEN_REQUEST, spec)["spec"]
        assert stored["secretTemplate"]["type"] == secret_type


def test_status_keeps_kopf_bookkeeping_and_refuses_unknown_fields(
    kube_admin: k8s.ApiClient, kube_namespace: str
) -> None:
    api = k8s.CustomObjectsApi(kube_admin)
    created = create(kube_admin, kube_namespace, ACCESS_TOKEN_REQUEST, VALID_REQUEST)
    name = created["metadata"]["name"]
    patch = {
        "status": {
            "revision": 1,
            "kopf": {"progress": {"issue": {"retries": 1}}},
            "notAField": "pruned",
        }
    }
    api.patch_namespaced_custom_object_status(
        GROUP, VERSION, kube_namespace, ACCESS_TOKEN_REQUEST.plural, name, patch
    )
    status = json_object(
        api.get_namespaced_custom_object(
            GROUP, VERSION, kube_namespace, ACCESS_TOKEN_REQUEST.plural, name
        )
    )["status"]
    assert status["kopf"] == {"progress": {"issue": {"retries": 1}}}
    assert status["revision"] == 1
    assert "notAField" not in status


def test_printer_columns(kube_admin: k8s.ApiClient, kube_namespace: str) -> None:
    create(kube_admin, kube_namespace, ACCESS_TOKEN_REQUEST, VALID_REQUEST)
    response = k8s.CustomObjectsApi(kube_admin).list_namespaced_custom_object(
        GROUP,
        VERSION,
        kube_namespace,
        ACCESS_TOKEN_REQUEST.plural,
        _headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"},
        _preload_content=False,
    )
    table = json.loads(response.data)  # type: ignore[attr-defined]  # raw urllib3 response
    columns = [(c["name"], c.get("priority", 0)) for c in table["columnDefinitions"]]
    assert columns == [
        ("Name", 0),
        ("Ready", 0),
        ("Reason", 0),
        ("Secret", 0),
        ("Expires", 0),
        ("Client", 1),
        ("Renewal", 1),
        ("Revision", 1),
        ("Age", 0),
    ]
