"""`secretTemplate.data` (issue 25): extra Secret keys rendered from the token's values by
a template that can substitute and nothing else; a token is data, never template."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from oauth2_token_operator.api import AccessTokenRequestSpec
from oauth2_token_operator.api.secret_data import render_data, render_templates, template_problem
from tests.api.cases import INVALID_TEMPLATES, VALID_REQUEST

DATA = render_data(
    access_token="tok.en-1", token_type="Bearer", expires_at=1.8e9, scopes=frozenset({"b", "a"})
)


def test_a_netrc_and_a_json_file() -> None:
    rendered = render_templates(
        {
            ".netrc": "machine api.example.com login x password $access_token",
            "credentials.json": '{"token": ${access_token_json}, "expires": ${expires_at_json}}',
            "header": "Authorization: ${authorization} ($$ and ${scope})",
        },
        DATA,
    )
    assert rendered[".netrc"] == "machine api.example.com login x password tok.en-1"
    assert json.loads(rendered["credentials.json"]) == {
        "token": "tok.en-1",
        "expires": "2027-01-15T08:00:00Z",
    }
    assert rendered["header"] == "Authorization: Bearer tok.en-1 ($ and a b)"


@pytest.mark.parametrize(
    "token", ["${access_token}", "$scope", "$$", '"}, "admin": true, "x": {"', "${", "\\u0000$"]
)
def test_a_token_is_data_never_template(token: str) -> None:
    """A hostile server's token with template syntax in it lands as it is; in JSON, its
    `_json` form keeps the file's structure whatever the token holds."""
    data = render_data(access_token=token, token_type="Bearer", expires_at=None, scopes=frozenset())
    rendered = render_templates(
        {"raw": "[$access_token]", "file.json": '{"token": ${access_token_json}}'}, data
    )
    assert rendered["raw"] == f"[{token}]"
    assert json.loads(rendered["file.json"]) == {"token": token}


@pytest.mark.parametrize(
    ("key", "text", "problem"),
    [
        ("access_token", "x", "standard key"),
        ("has space", "x", "Secret keys"),
        ("", "x", "Secret keys"),
        ("netrc", "$client_secret", "names client_secret"),
        ("netrc", "${HOME}", "names HOME"),
        ("netrc", "${access_token.__class__}", "not a valid template"),
        ("netrc", "price: $5", "not a valid template"),
        ("netrc", "plain text", None),
        ("netrc", "$$HOME", None),  # a literal dollar
    ],
)
def test_what_a_template_may_be(key: str, text: str, problem: str | None) -> None:
    found = template_problem(key, text)
    assert (found is None) if problem is None else (found is not None and problem in found)


@pytest.mark.parametrize(("case_id", "data", "message"), INVALID_TEMPLATES)
def test_templates_the_crd_admits_are_refused_by_the_model(
    case_id: str, data: dict[str, str], message: str
) -> None:
    spec: dict[str, Any] = {**VALID_REQUEST, "secretTemplate": {"data": data}}
    with pytest.raises(ValidationError, match=message):
        AccessTokenRequestSpec.model_validate(spec)
