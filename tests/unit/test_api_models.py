"""The CRD models: defaults, refusals (shared table with the API-server tests) and the
generated CRD files."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from oauth2_token_operator.api import (
    AccessTokenRequestSpec,
    OAuth2ClientSpec,
    format_duration,
    parse_duration,
)
from oauth2_token_operator.api.crd import KINDS, Kind, file_name, render, structural_schema
from tests.api.cases import (
    ACCEPTED_TEMPLATE_TYPES,
    INVALID_CLIENTS,
    INVALID_REQUESTS,
    VALID_CLIENT,
    VALID_REQUEST,
    Invalid,
)

CRDS = Path(__file__).resolve().parents[2] / "crds"


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_crd_files_are_generated_from_the_models(kind: Kind) -> None:
    on_disk = (CRDS / file_name(kind)).read_text(encoding="utf-8")
    assert on_disk == render(kind), "crds/ is stale: run `make crds`"


def test_minimal_client_gets_the_documented_defaults() -> None:
    spec = OAuth2ClientSpec.model_validate(VALID_CLIENT)
    assert spec.allow_insecure_http is False
    assert spec.revoke_on_delete is True
    assert spec.introspection.min_interval == timedelta(seconds=30)
    assert spec.allowed_namespaces is None
    assert spec.model_dump(by_alias=True, exclude_none=True)["allowInsecureHTTP"] is False


def test_minimal_request_gets_the_documented_defaults() -> None:
    spec = AccessTokenRequestSpec.model_validate(VALID_REQUEST)
    assert spec.grant == "client_credentials"
    assert spec.secret_name is None
    assert spec.secret_template.type == "Opaque"
    assert spec.renew_before is None
    assert spec.revoke_on_delete is None


def _refused(model: type[BaseModel], case: Invalid) -> str:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(case.spec)
    return str(caught.value)


@pytest.mark.parametrize("case", INVALID_CLIENTS, ids=lambda c: c.id)
def test_pydantic_refuses_invalid_clients(case: Invalid) -> None:
    assert case.message in _refused(OAuth2ClientSpec, case)


@pytest.mark.parametrize("case", INVALID_REQUESTS, ids=lambda c: c.id)
def test_pydantic_refuses_invalid_requests(case: Invalid) -> None:
    assert case.message in _refused(AccessTokenRequestSpec, case)


@pytest.mark.parametrize("secret_type", ACCEPTED_TEMPLATE_TYPES)
def test_a_token_secret_may_be_opaque_or_of_a_type_of_ones_own(secret_type: str) -> None:
    spec = dict(VALID_REQUEST, secretTemplate={"type": secret_type})
    assert AccessTokenRequestSpec.model_validate(spec).secret_template.type == secret_type


def test_plain_http_is_accepted_only_with_the_opt_in() -> None:
    spec = dict(VALID_CLIENT, issuer="http://127.0.0.1:8080", allowInsecureHTTP=True)
    assert OAuth2ClientSpec.model_validate(spec).issuer == "http://127.0.0.1:8080"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("5m", 300), ("1h30m", 5400), ("1.5h", 5400), ("250ms", 0.25), ("2h0m0s", 7200)],
)
def test_durations_are_read_as_go_spells_them(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "5", "-5m", "1d", "m", "5 m", "PT5M"])
def test_malformed_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


@given(st.integers(min_value=0, max_value=10**9))
def test_formatted_durations_read_back(milliseconds: int) -> None:
    value = timedelta(milliseconds=milliseconds)
    assert parse_duration(format_duration(value)) == value


def test_schemas_are_structural() -> None:
    """No $ref, anyOf or null types survive: the API server would refuse the CRD."""

    def walk(node: object) -> None:
        if isinstance(node, dict):
            assert not {"$ref", "anyOf", "oneOf", "allOf", "title"} & node.keys()
            assert node.get("type") != "null"
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for kind in KINDS:
        walk(structural_schema(kind.spec))
        walk(structural_schema(kind.status))
