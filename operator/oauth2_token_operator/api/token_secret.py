"""The token Secret's format, rendered and inspected as plain data (no API calls).

Keys (all always present, so a pod can project any of them into an env var):

| key | value |
|---|---|
| `access_token` | the token |
| `token_type` | as the server said it, e.g. `Bearer` |
| `expires_at` | RFC 3339 UTC, e.g. `2026-11-28T09:00:00Z`; empty when the server gave no expiry |
| `scope` | granted scopes, space-separated and sorted |
| `authorization` | `<token_type> <access_token>`, ready for an `Authorization` header |

`spec.secretTemplate.data` adds keys of its own, rendered from the same values (see
`secret_data`), e.g. a `.netrc` or a JSON credentials file.

The Secret also carries the `app.kubernetes.io/managed-by` label, an ownerReference
to its AccessTokenRequest (so it is garbage-collected with it), one annotation
holding the token's non-secret facts (issuer, client, scopes asked for, times,
revision) and one holding its seal: after a restart the operator adopts the token from
the Secret instead of requesting a new one, if the seal shows that the operator wrote it.

Why a seal. Everything on a Secret is the namespace tenant's to write: its labels, the
ownerReference, the annotation, the data, and even `managedFields` (the field manager's
name is whatever the writer sends). A forged record would put the tenant's chosen token
into the partition of the shared store that it names, for every request sharing it.
So the record and the data are sealed with an HMAC-SHA256 under a key only the operator
holds (`controller/shared/seal.py`: a Secret in the operator's own namespace, so a restarted
or second replica verifies what the first wrote), bound to the Secret's namespace and
name and to the request's UID: a seal copied to another Secret, or kept over data or a
record changed by anyone else, does not verify, and such a token is never adopted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from oauth2_token_operator.api.crd import API_VERSION, GROUP
from oauth2_token_operator.util.interning import intern_fields

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "oauth2-token-operator"
TOKEN_ANNOTATION = f"{GROUP}/token"
SEAL_ANNOTATION = f"{GROUP}/seal"
SEAL_VERSION = "v1"


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """The non-secret facts of the token in a Secret (its annotation)."""

    issuer: str
    client_id: str
    client: str
    """`namespace/name` of the OAuth2Client that obtained it (to revoke it later)."""
    subject: str | None
    """`None` for the client-credentials flow."""
    requested_scopes: tuple[str, ...] | None
    """What was asked for (`None`: any); the granted ones are the `scope` key."""
    resources: tuple[str, ...]
    audience: str | None
    issued_at: float
    expires_at: float | None
    issued_for: str
    """Fingerprint of the spec the token was issued for."""
    revision: int

    def __post_init__(self) -> None:
        # The operator keeps one record per token: share the values its tokens repeat.
        intern_fields(self, "issuer", "client_id", "client", "requested_scopes", "resources")

    def to_annotation(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_annotation(cls, text: str) -> TokenRecord | None:
        """`None` when the annotation is not ours or is damaged (the token is then re-issued)."""
        try:
            fields = json.loads(text)
            requested = fields["requested_scopes"]
            fields["requested_scopes"] = None if requested is None else _strings(requested)
            fields["resources"] = _strings(fields["resources"])
            record = cls(**fields)
        except (ValueError, TypeError, KeyError):
            return None
        return record


def _strings(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError("not a list of strings")
    return tuple(value)


@dataclass(frozen=True)
class Owner:
    """The AccessTokenRequest a Secret belongs to."""

    kind: str
    name: str
    uid: str


@dataclass(frozen=True)
class Template:
    type: str = "Opaque"
    labels: Mapping[str, str] | None = None
    annotations: Mapping[str, str] | None = None


def desired_secret(
    *,
    name: str,
    namespace: str,
    owner: Owner,
    template: Template,
    data: Mapping[str, str],
    record: TokenRecord,
    seal_key: bytes,
) -> dict[str, Any]:
    """The whole Secret object as the operator writes it, sealed with `seal_key`."""
    labels = {**(template.labels or {}), MANAGED_BY_LABEL: MANAGED_BY}
    record_text = record.to_annotation()
    annotations = {
        **(template.annotations or {}),
        TOKEN_ANNOTATION: record_text,
        SEAL_ANNOTATION: seal(
            seal_key, namespace=namespace, name=name, owner_uid=owner.uid,
            record=record_text, data=data,
        ),
    }  # fmt: skip
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": template.type,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": owner.kind,
                    "name": owner.name,
                    "uid": owner.uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "data": encode_data(data),
    }


def seal(
    key: bytes, *, namespace: str, name: str, owner_uid: str, record: str, data: Mapping[str, str]
) -> str:
    """The seal of a token Secret's record and (unencoded) data, bound to where it is and
    whose it is."""
    if len(key) < 32:
        raise ValueError("a seal key has at least 32 bytes")
    message = json.dumps(
        [SEAL_VERSION, namespace, name, owner_uid, record, sorted(data.items())],
        separators=(",", ":"),
    ).encode()
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return f"{SEAL_VERSION}.{base64.urlsafe_b64encode(digest).decode('ascii').rstrip('=')}"


def is_sealed(secret: Mapping[str, Any], key: bytes, owner_uid: str) -> bool:
    """Did the operator write this Secret's record and data, for the request `owner_uid`,
    where the Secret is now? (Anything else about it may have been written by anyone.)"""
    metadata = secret.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    record, stated = annotations.get(TOKEN_ANNOTATION), annotations.get(SEAL_ANNOTATION)
    data = decode_data(secret.get("data"))
    if not isinstance(record, str) or not isinstance(stated, str) or data is None:
        return False
    expected = seal(
        key,
        namespace=str(metadata.get("namespace") or ""),
        name=str(metadata.get("name") or ""),
        owner_uid=owner_uid,
        record=record,
        data=data,
    )
    return hmac.compare_digest(expected.encode(), stated.encode())


def encode_data(data: Mapping[str, str]) -> dict[str, str]:
    return {key: base64.b64encode(value.encode()).decode("ascii") for key, value in data.items()}


def decode_data(data: Mapping[str, str] | None) -> dict[str, str] | None:
    """Base64-decoded data; `None` when any value is not valid base64 UTF-8."""
    try:
        return {k: base64.b64decode(v, validate=True).decode() for k, v in (data or {}).items()}
    except (ValueError, UnicodeDecodeError):
        return None


def is_owned_by(secret: Mapping[str, Any], owner_uid: str) -> bool:
    refs = secret.get("metadata", {}).get("ownerReferences") or []
    return any(ref.get("uid") == owner_uid and ref.get("controller") for ref in refs)
