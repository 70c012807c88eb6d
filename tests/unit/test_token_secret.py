"""The token Secret's format: what is written, and how a found Secret is judged."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest

from oauth2_token_operator.api.secret_data import DATA_KEYS, render_data
from oauth2_token_operator.api.token_secret import (
    MANAGED_BY_LABEL,
    SEAL_ANNOTATION,
    TOKEN_ANNOTATION,
    Owner,
    Template,
    TokenRecord,
    decode_data,
    desired_secret,
    encode_data,
    is_owned_by,
    is_sealed,
    seal,
)
from oauth2_token_operator.controller.request.facts import inspect_secret

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
KEY = bytes(range(32))


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
        seal_key=KEY,
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


def test_the_operator_verifies_the_seal_of_what_it_wrote() -> None:
    secret = desired()
    assert is_sealed(secret, KEY, OWNER.uid)
    assert "tok-123" not in secret["metadata"]["annotations"][SEAL_ANNOTATION]


def forged(change: str) -> dict[str, Any]:
    """A sealed Secret with one thing changed as a tenant could change it."""
    secret = copy.deepcopy(desired())
    meta = secret["metadata"]
    if change == "data":
        data = decode_data(secret["data"]) or {}
        secret["data"] = encode_data({**data, "access_token": "planted"})
    elif change == "record":
        record = json.loads(meta["annotations"][TOKEN_ANNOTATION])
        meta["annotations"][TOKEN_ANNOTATION] = json.dumps({**record, "client": "victim/idp"})
    elif change == "name":
        meta["name"] = "another-secret"
    elif change == "namespace":
        meta["namespace"] = "another-namespace"
    elif change == "seal":
        del meta["annotations"][SEAL_ANNOTATION]
    elif change == "garbage seal":
        meta["annotations"][SEAL_ANNOTATION] = "v1.AAAA"
    elif change == "bad base64":
        secret["data"]["access_token"] = "%%%"
    return secret


@pytest.mark.parametrize(
    "change", ["data", "record", "name", "namespace", "seal", "garbage seal", "bad base64"]
)
def test_a_changed_or_moved_secret_does_not_verify(change: str) -> None:
    assert not is_sealed(forged(change), KEY, OWNER.uid)


def test_the_seal_binds_the_request_and_the_key() -> None:
    secret = desired()
    assert not is_sealed(secret, KEY, "another-request-uid")
    assert not is_sealed(secret, bytes(32), OWNER.uid)


def test_a_tenant_cannot_seal_with_what_it_can_read() -> None:
    """A seal made without the key (say with an empty one, or the data itself) fails."""
    secret = desired()
    data = decode_data(secret["data"]) or {}
    record = secret["metadata"]["annotations"][TOKEN_ANNOTATION]
    where = {"namespace": "apps", "name": "billing-token", "owner_uid": OWNER.uid}
    guess = seal(b"\0" * 32, record=record, data=data, **where)
    secret["metadata"]["annotations"][SEAL_ANNOTATION] = guess
    assert not is_sealed(secret, KEY, OWNER.uid)


def test_a_short_key_is_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        seal(b"short", namespace="a", name="b", owner_uid="c", record="{}", data={})
