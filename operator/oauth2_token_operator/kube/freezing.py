"""How the informers keep the objects they hold: compact JSON, compressed against a
preset dictionary of what such objects always say.

A decoded Kubernetes object is some 20 dicts, lists and strings, 3.5 KB for an
AccessTokenRequest and 2.9 KB for its Secret; its JSON is a third of that, one
allocation instead of twenty that outlive the burst of garbage around them (which kept
pymalloc's arenas from being freed). Compressed at zlib's fastest level, a request's
1160 bytes of JSON became 576 and a Secret's 1147 became 715 (BENCHMARKS.md, "Fifth
round"); most of what is left is what every such object repeats (field names, the API
group, the finalizer, the label, the token record's keys, the conditions' wording),
which a lone object cannot compress against. zlib's preset dictionary (RFC 1950
§2.2) supplies it: 208 and 387 bytes ("Seventh round"), under pymalloc's 512-byte limit
for small objects, and no slower to compress or to decode.

The frozen bytes never leave the process, so the dictionary may change between
versions; an object unlike the samples only compresses less.
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Mapping
from typing import Any

from oauth2_token_operator.api.crd import API_VERSION, GROUP
from oauth2_token_operator.api.token_secret import MANAGED_BY, MANAGED_BY_LABEL, TOKEN_ANNOTATION

_UID = "00000000-0000-0000-0000-000000000000"
_TIME = "2026-01-01T00:00:00Z"


def _compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def _base64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _condition(kind: str, status: str, reason: str, message: str) -> dict[str, Any]:
    return {
        "lastTransitionTime": _TIME,
        "message": message,
        "observedGeneration": 1,
        "reason": reason,
        "status": status,
        "type": kind,
    }


_METADATA = {
    "creationTimestamp": _TIME,
    "finalizers": [f"{GROUP}/revoke-tokens"],
    "generation": 1,
    "name": "",
    "namespace": "",
    "resourceVersion": "1",
    "uid": _UID,
}

_CLIENT = {
    "apiVersion": API_VERSION,
    "kind": "OAuth2Client",
    "metadata": _METADATA,
    "spec": {
        "allowInsecureHTTP": False,
        "authentication": {
            "clientSecretRef": {"key": "client-secret", "name": ""},
            "method": "client_secret_basic",
        },
        "clientId": "",
        "introspection": {"minInterval": "30s"},
        "issuer": "https://",
        "revokeOnDelete": True,
    },
    "status": {
        "conditions": [_condition("Ready", "True", "Ready", "discovered https://")],
        "endpoints": {"introspection": "", "revocation": "", "token": ""},
        "metadataFetchedAt": _TIME,
        "observedGeneration": 1,
    },
}

_REQUEST = {
    "apiVersion": API_VERSION,
    "kind": "AccessTokenRequest",
    "metadata": _METADATA,
    "spec": {
        "clientRef": {"name": ""},
        "grant": "client_credentials",
        "renewBefore": "60s",
        "resources": ["https://"],
        "scopes": ["read"],
        "secretTemplate": {"type": "Opaque"},
    },
    "status": {
        "conditions": [
            _condition(
                "Ready",
                "True",
                "TokenValid",
                f"the Secret holds a valid token, expiring at {_TIME}; the server did not grant: ",
            ),
            _condition("Issuing", "False", "UpToDate", f"next renewal at {_TIME}"),
        ],
        "expiresAt": _TIME,
        "failedAttempts": 0,
        "grantedScopes": ["read"],
        "issuedAt": _TIME,
        "observedGeneration": 1,
        "renewalTime": _TIME,
        "revision": 1,
        "secretName": "",
        "tokenType": "Bearer",
    },
}

_RECORD = {
    "audience": None,
    "client": "",
    "client_id": "",
    "expires_at": 1.5,
    "issued_at": 1.5,
    "issued_for": "",
    "issuer": "https://",
    "requested_scopes": ["read"],
    "resources": ["https://"],
    "revision": 1,
    "subject": None,
}

_SECRET = {
    "kind": "Secret",
    "apiVersion": "v1",
    "metadata": {
        "name": "",
        "namespace": "",
        "uid": _UID,
        "resourceVersion": "1",
        "creationTimestamp": _TIME,
        "labels": {MANAGED_BY_LABEL: MANAGED_BY},
        "annotations": {TOKEN_ANNOTATION: _compact(_RECORD)},
        "ownerReferences": [
            {
                "apiVersion": API_VERSION,
                "kind": "AccessTokenRequest",
                "name": "",
                "uid": _UID,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    },
    "data": {  # base64 of how its values usually begin
        "access_token": "",
        "authorization": _base64("Bearer"),
        "expires_at": _base64("202"),
        "scope": _base64("read"),
        "token_type": _base64("Bearer"),
    },
    "type": "Opaque",
}

PRESET = "".join(_compact(sample) for sample in (_CLIENT, _SECRET, _REQUEST)).encode()
"""zlib's preset dictionary: what the operator's objects say, the most common last
(zlib finds near matches more cheaply than far ones)."""


def freeze(body: Mapping[str, Any]) -> bytes:
    """An object as an informer keeps it: its compact JSON, compressed against `PRESET`.
    A freeze costs some tens of microseconds, once per watch event."""
    packer = zlib.compressobj(1, zdict=PRESET)
    return packer.compress(_compact(body).encode()) + packer.flush()


def thawed(value: Any) -> Any:
    """`value` thawed if it is frozen, else as it is (an index's values may be either)."""
    return thaw(value) if isinstance(value, bytes) else value


def thaw(frozen: bytes) -> Any:
    """An object `freeze` kept, decoded: a dict of the caller's own (a few microseconds,
    a few times per reconcile)."""
    unpacker = zlib.decompressobj(zdict=PRESET)
    return json.loads(unpacker.decompress(frozen) + unpacker.flush())
