"""The token Secret's format: what is written, and how a found Secret is judged."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest

from oauth2_token_operator.token_secret import (
    DATA_KEYS,
    MANAGED_BY_LABEL,
    TOKEN_ANNOTATION,
    Owner,
    Template,
    TokenRecord,
    decode_data,
    desired_secret,
    inspect_secret,
    is_owned_by,
    render_data,
)

RECORD = TokenRecord(
    issuer="https://login.example.com",
    client_id="billing",
    client="idp/billing",
    subject=None,
    requested_scopes=("invoices:read",),
    resources=(),
    audience=None,
    issued_at=1_800_000_000.0,
    expires_at=1_800_003_600.0,
    issued_for="fp",
    revision=3,
)
OWNER = Owner(kind="AccessTokenRequest", name="billing", uid="uid-1")


def desired(template: Template | None = None) -> dict[str, Any]:
    data = render_data(
        access_token="tok-123",
        token_type="Bearer",
        expires_at=RECORD.expires_at,
        scopes=frozenset({"b", "a"}),
    )
    return desired_secret(
        name="billing-token",
        namespace="apps",
        owner=OWNER,
        template=template or Template(labels={"team": "billing"}),
        data=data,
        record=RECORD,
    )


def test_data_keys_and_values() -> None:
    data = decode_data(desired()["data"])
    assert data == {
        "access_token": "tok-123",
        "token_type": "Bearer",
        "expires_at": "2027-01-15T09:00:00Z",
        "scope": "a b",
        "authorization": "Bearer tok-123",
    }
    assert tuple(data) == DATA_KEYS


def test_unknown_expiry_is_an_empty_value_not_a_missing_key() -> None:
    data = render_data(access_token="t", token_type="Bearer", expires_at=None, scopes=frozenset())
    assert data["expires_at"] == ""
    assert data["scope"] == ""


def test_metadata_owner_label_and_record() -> None:
    secret = desired()
    meta = secret["metadata"]
    assert meta["labels"] == {"team": "billing", MANAGED_BY_LABEL: "oauth2-token-operator"}
    assert TokenRecord.from_annotation(meta["annotations"][TOKEN_ANNOTATION]) == RECORD
    (ref,) = meta["ownerReferences"]
    assert ref["uid"] == "uid-1"
    assert ref["controller"] is True
    assert is_owned_by(secret, "uid-1")
    assert not is_owned_by(secret, "uid-2")


def test_the_record_holds_no_token() -> None:
    assert "tok-123" not in desired()["metadata"]["annotations"][TOKEN_ANNOTATION]


def test_a_damaged_record_is_not_trusted() -> None:
    assert TokenRecord.from_annotation("{not json") is None
    assert TokenRecord.from_annotation('{"issuer": "x"}') is None


def test_intact_secret_with_extra_labels_from_others() -> None:
    found = copy.deepcopy(desired())
    found["metadata"]["labels"]["added-by"] = "someone-else"
    facts = inspect_secret(found, desired())
    assert facts.exists
    assert facts.data_intact
    assert facts.metadata_intact


def test_edited_data_is_detected() -> None:
    found = copy.deepcopy(desired())
    found["data"]["access_token"] = base64.b64encode(b"forged").decode()
    assert not inspect_secret(found, desired()).data_intact


def test_removed_key_is_detected() -> None:
    found = copy.deepcopy(desired())
    del found["data"]["authorization"]
    assert not inspect_secret(found, desired()).data_intact


def test_template_changes_are_detected() -> None:
    found = desired()
    want = desired(Template(type="Opaque", labels={"team": "payments"}))
    facts = inspect_secret(found, want)
    assert facts.data_intact
    assert not facts.metadata_intact


def test_missing_secret() -> None:
    assert not inspect_secret(None, desired()).exists


def test_invalid_base64_is_not_decoded() -> None:
    assert decode_data({"access_token": "***"}) is None


@pytest.mark.parametrize(
    "damage",
    [
        {"resources": "https://api.example"},
        {"resources": [1]},
        {"requested_scopes": "read"},
        {"requested_scopes": [None]},
    ],
)
def test_a_record_whose_lists_are_not_lists_of_strings_is_not_trusted(
    damage: dict[str, object],
) -> None:
    fields = json.loads(RECORD.to_annotation())
    assert TokenRecord.from_annotation(json.dumps({**fields, **damage})) is None


def test_records_read_back_share_the_values_their_tokens_repeat() -> None:
    """Thousands of records name one issuer, client and scope list: each read back holds
    the copy already seen, not one of its own (`manager.interning`)."""
    first, second = (TokenRecord.from_annotation(RECORD.to_annotation()) for _ in range(2))
    assert first == second == RECORD
    for name in ("issuer", "client_id", "client", "requested_scopes"):
        assert getattr(first, name) is getattr(second, name), name
