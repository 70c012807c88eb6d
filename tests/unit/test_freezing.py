"""`kube.freezing`: what the informers keep decodes to what they were given, and an
object like the operator's own costs a fraction of its JSON."""

from __future__ import annotations

import json
import zlib
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from oauth2_token_operator.api.token_secret import TOKEN_ANNOTATION
from oauth2_token_operator.kube.freezing import freeze, thaw

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(st.text(), json_values, max_size=6))
def test_a_frozen_object_thaws_to_an_equal_one(body: dict[str, Any]) -> None:
    assert thaw(freeze(body)) == body


def test_each_thaw_is_a_dict_of_the_callers_own() -> None:
    frozen = freeze({"metadata": {"labels": {"a": "b"}}})
    first = thaw(frozen)
    first["metadata"]["labels"]["a"] = "changed"
    assert thaw(frozen) == {"metadata": {"labels": {"a": "b"}}}


REQUEST = {
    "apiVersion": "oauth2.token-operator.io/v1alpha1",
    "kind": "AccessTokenRequest",
    "metadata": {
        "creationTimestamp": "2026-11-29T01:15:43Z",
        "finalizers": ["oauth2.token-operator.io/revoke-tokens"],
        "generation": 2,
        "name": "billing-reader",
        "namespace": "billing",
        "resourceVersion": "48213",
        "uid": "59ffc7c6-735e-43f9-af0e-49c180c50e35",
    },
    "spec": {
        "clientRef": {"name": "keycloak"},
        "grant": "client_credentials",
        "scopes": ["invoices:read", "read"],
        "secretTemplate": {"type": "Opaque"},
    },
    "status": {
        "conditions": [
            {
                "lastTransitionTime": "2026-11-29T01:15:43Z",
                "message": "the Secret holds a valid token, expiring at 2026-11-29T01:25:43Z",
                "observedGeneration": 2,
                "reason": "TokenValid",
                "status": "True",
                "type": "Ready",
            },
            {
                "lastTransitionTime": "2026-11-29T01:15:43Z",
                "message": "next renewal at 2026-11-29T01:24:43Z",
                "observedGeneration": 2,
                "reason": "UpToDate",
                "status": "False",
                "type": "Issuing",
            },
        ],
        "expiresAt": "2026-11-29T01:25:43Z",
        "failedAttempts": 0,
        "grantedScopes": ["invoices:read", "read"],
        "issuedAt": "2026-11-29T01:15:43Z",
        "observedGeneration": 2,
        "renewalTime": "2026-11-29T01:24:43Z",
        "revision": 3,
        "secretName": "billing-reader-token",
        "tokenType": "Bearer",
    },
}

SECRET = {
    "kind": "Secret",
    "apiVersion": "v1",
    "metadata": {
        "name": "billing-reader-token",
        "namespace": "billing",
        "uid": "d40235cb-20fd-4377-8fa5-180e455a425c",
        "resourceVersion": "48214",
        "creationTimestamp": "2026-11-29T01:15:43Z",
        "labels": {"app.kubernetes.io/managed-by": "oauth2-token-operator"},
        "annotations": {
            TOKEN_ANNOTATION: json.dumps(
                {
                    "audience": None,
                    "client": "billing/keycloak",
                    "client_id": "billing-service",
                    "expires_at": 1795915543.5643537,
                    "issued_at": 1795914943.5643537,
                    "issued_for": "a06850fff757d34dc338410b223bdd55",
                    "issuer": "https://login.example.com/realms/billing",
                    "requested_scopes": ["invoices:read", "read"],
                    "resources": [],
                    "revision": 3,
                    "subject": None,
                },
                separators=(",", ":"),
            )
        },
        "ownerReferences": [
            {
                "apiVersion": "oauth2.token-operator.io/v1alpha1",
                "kind": "AccessTokenRequest",
                "name": "billing-reader",
                "uid": "59ffc7c6-735e-43f9-af0e-49c180c50e35",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    },
    "data": {
        "access_token": "ODVqTnJRVzdOdENYWFQwM19HVXZjUjBRbUpDXzRxLUNTVmJLTVNDRW1yXw==",
        "authorization": "QmVhcmVyIDg1ak5yUVc3TnRDWFhUMDNfR1V2Y1IwUW1KQ180cS1DU1ZiS01TQ0Vtcl8=",
        "expires_at": "MjAyNi0xMS0yOVQwMToyNTo0M1o=",
        "scope": "aW52b2ljZXM6cmVhZCByZWFk",
        "token_type": "QmVhcmVy",
    },
    "type": "Opaque",
}


def test_the_operators_objects_compress_against_what_they_all_say() -> None:
    """The preset dictionary holds what every request and token Secret repeats: each
    keeps well under what zlib alone makes of it (and under pymalloc's 512 bytes)."""
    for body in (REQUEST, SECRET):
        alone = len(zlib.compress(json.dumps(body, separators=(",", ":")).encode(), 1))
        frozen = len(freeze(body))
        assert frozen < 0.7 * alone, (body["kind"], frozen, alone)
        assert frozen < 512, (body["kind"], frozen)
        assert thaw(freeze(body)) == body
