"""Tenants who do not trust each other, played for real: the attacker is a ServiceAccount
holding only its own namespace's RBAC, on the real API server (issue 22).

Adoption once trusted what any tenant can write: a Secret "owned" by the attacker's own
request (an ownerReference is the tenant's to write), whose annotation named the victim
namespace's OAuth2Client. The planted token entered the victim's partition of the shared
store; the victim's next renewal published it into the victim's Secret, and deleting the
attacker's request revoked it with the victim's client credentials.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime

from kubernetes import client as k8s

from oauth2_token_operator.api.annotations import RENEW_REQUESTED_AT
from oauth2_token_operator.api.crd import GROUP, VERSION
from oauth2_token_operator.api.token_secret import MANAGED_BY, MANAGED_BY_LABEL, TOKEN_ANNOTATION
from tests.cluster.harness import KubeCluster, unique_name
from tests.cluster.objects import json_object
from tests.integration.conftest import Counters
from tests.operator.conftest import USABLE, Namespace, settle, wait_for
from tests.operator.runner import OperatorThread

PLANTED = "planted-by-the-attacker"

TENANT_RULES = [
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "get", "patch", "list"]},
    {
        "apiGroups": [GROUP],
        "resources": ["accesstokenrequests", "oauth2clients"],
        "verbs": ["create", "get", "patch", "list"],
    },
]
"""What a namespace tenant may do in its own namespace (and nothing elsewhere)."""


def failed_attempts(ns: Namespace, name: str) -> int:
    return int(((ns.get("accesstokenrequests", name) or {}).get("status") or {}).get(
        "failedAttempts"
    ) or 0)  # fmt: skip


def test_a_tenant_cannot_plant_a_token_in_another_tenants_partition(
    kube_cluster: KubeCluster,
    ns: Namespace,
    operator_factory: Callable[..., OperatorThread],
    counters: Counters,
) -> None:
    operator_factory(retry_base_delay=1.0, retry_max_delay=2.0, min_renewal_lead=5.0)
    victim_client = ns.authserver.clients["client_secret_basic"]
    ns.client("idp", victim_client)
    ns.request("victim", "idp")
    ns.wait_ready("victim")
    genuine = (ns.token_secret("victim") or {})["access_token"]
    victim_secret = ns.core.read_namespaced_secret("victim", ns.name)
    assert victim_secret.metadata is not None
    victim_record = json.loads((victim_secret.metadata.annotations or {})[TOKEN_ANNOTATION])

    attacker_ns = ns.sibling("attacker")
    attacker = kube_cluster.service_account(
        unique_name("tenant"), attacker_ns.name, rules=TENANT_RULES
    )
    with attacker.client() as api:
        custom, core = k8s.CustomObjectsApi(api), k8s.CoreV1Api(api)
        # The attacker's own client (its credentials are wrong: no token is ever issued
        # for it, so adoption is what the operator falls back on) and request.
        core.create_namespaced_secret(
            attacker_ns.name,
            k8s.V1Secret.model_validate(
                {
                    "metadata": {"name": "idp-credentials", "labels": USABLE},
                    "stringData": {"client-secret": "x"},
                }
            ),
        )
        custom.create_namespaced_custom_object(
            GROUP, VERSION, attacker_ns.name, "oauth2clients",
            {
                "apiVersion": f"{GROUP}/{VERSION}", "kind": "OAuth2Client",
                "metadata": {"name": "idp"},
                "spec": {
                    "issuer": ns.authserver.issuer,
                    "clientId": victim_client.client_id,
                    "tls": {"caBundle": ns.authserver.ca_bundle.read_text()},
                    "authentication": {
                        "method": "client_secret_basic",
                        "clientSecretRef": {"name": "idp-credentials", "key": "client-secret"},
                    },
                },
            },
        )  # fmt: skip
        request = custom.create_namespaced_custom_object(
            GROUP, VERSION, attacker_ns.name, "accesstokenrequests",
            {
                "apiVersion": f"{GROUP}/{VERSION}", "kind": "AccessTokenRequest",
                "metadata": {"name": "evil"},
                "spec": {"clientRef": {"name": "idp"}, "scopes": ["read"],
                         "resources": [ns.authserver.resource]},
            },
        )  # fmt: skip
        uid = json_object(request)["metadata"]["uid"]
        attacker_ns.wait_ready("evil", status="False", reason="InvalidClient")
        failures = failed_attempts(attacker_ns, "evil")
        # A Secret "owned" by its request, recording the victim's partition.
        forged = {**victim_record, "issued_at": time.time(), "expires_at": 4102444800.0}
        core.create_namespaced_secret(
            attacker_ns.name,
            k8s.V1Secret.model_validate({
                "metadata": {
                    "name": "evil",
                    "labels": {MANAGED_BY_LABEL: MANAGED_BY},
                    "annotations": {TOKEN_ANNOTATION: json.dumps(forged)},
                    "ownerReferences": [
                        {
                            "apiVersion": f"{GROUP}/{VERSION}", "kind": "AccessTokenRequest",
                            "name": "evil", "uid": uid,
                            "controller": True,
                        }
                    ],
                },
                "stringData": {"access_token": PLANTED, "token_type": "Bearer",
                               "scope": "read"},
            }),
        )  # fmt: skip
    # Its request looks again (a backoff of a second or two): it adopts the planted token
    # (Ready) or, refused, tries its own client again (one more failure).
    wait_for(
        "the attacker's request to look again",
        lambda: (
            failed_attempts(attacker_ns, "evil") > failures
            or (attacker_ns.condition("evil") or {}).get("status") == "True"
        ),
        timeout=20,
    )

    # The victim asks for a newer token: the store offers whatever outlives its own.
    at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    ns.patch(
        "accesstokenrequests", "victim", {"metadata": {"annotations": {RENEW_REQUESTED_AT: at}}}
    )
    wait_for(
        "the victim's renewal",
        lambda: (ns.token_secret("victim") or {}).get("access_token") != genuine,
        timeout=15,
    )
    assert (ns.token_secret("victim") or {})["access_token"] != PLANTED
    assert ns.wait_ready("victim")["reason"] == "TokenValid"

    # Deleting the attacker's request revokes nothing with the victim's credentials.
    revocations = counters.delta(f"client={victim_client.client_id} /token/revocation")
    attacker_ns.delete("accesstokenrequests", "evil")
    wait_for("the request to go", lambda: attacker_ns.get("accesstokenrequests", "evil") is None)
    assert counters.delta(f"client={victim_client.client_id} /token/revocation") == revocations


def test_a_tenant_cannot_hand_its_own_token_to_those_sharing_its_partition(
    kube_cluster: KubeCluster, ns: Namespace, operator_factory: Callable[..., OperatorThread]
) -> None:
    """A client shared with the attacker's namespace: the attacker's request and the
    victim's share one partition of the store, rightly. The attacker rewrites its own
    token Secret (its to write: data and record) while the operator is away; the restarted
    operator must not adopt it, or the victim's request would be served the attacker's
    token from the store. Only a Secret the operator sealed is adopted."""
    attacker_ns = ns.sibling("attacker")
    attacker = kube_cluster.service_account(
        unique_name("tenant"), attacker_ns.name, rules=TENANT_RULES
    )
    ns.client("shared", ns.authserver.clients["client_secret_basic"],
              allowedNamespaces={"names": [attacker_ns.name]})  # fmt: skip
    spec = {"clientRef": {"name": "shared", "namespace": ns.name}, "scopes": ["read"],
            "resources": [ns.authserver.resource]}  # fmt: skip
    first = operator_factory()
    with attacker.client() as api:
        custom, core = k8s.CustomObjectsApi(api), k8s.CoreV1Api(api)
        custom.create_namespaced_custom_object(
            GROUP, VERSION, attacker_ns.name, "accesstokenrequests",
            {"apiVersion": f"{GROUP}/{VERSION}", "kind": "AccessTokenRequest",
             "metadata": {"name": "evil"}, "spec": spec},
        )  # fmt: skip
        attacker_ns.wait_ready("evil")
        first.stop()
        metadata = core.read_namespaced_secret("evil", attacker_ns.name).metadata
        assert metadata is not None
        record = json.loads((metadata.annotations or {})[TOKEN_ANNOTATION])
        outliving = {**record, "expires_at": 4102444800.0}
        core.patch_namespaced_secret(
            "evil", attacker_ns.name,
            {"metadata": {"annotations": {TOKEN_ANNOTATION: json.dumps(outliving)}},
             "stringData": {"access_token": PLANTED, "authorization": f"Bearer {PLANTED}",
                            "expires_at": "2100-01-01T00:00:00Z"}},
        )  # fmt: skip
    second = operator_factory()
    settle(second, attacker_ns, "evil")

    ns.create("accesstokenrequests", "victim", spec)
    ns.wait_ready("victim")
    assert (ns.token_secret("victim") or {})["access_token"] != PLANTED
    # The attacker's own request got a token of the operator's again, too.
    wait_for(
        "the attacker's Secret to be rewritten",
        lambda: (attacker_ns.token_secret("evil") or {}).get("access_token") != PLANTED,
    )


def test_the_seal_key_is_made_once_and_kept(
    kube_cluster: KubeCluster, ns: Namespace, operator_factory: Callable[..., OperatorThread]
) -> None:
    """Where there is none, the operator makes its seal key; restarted, it reads the same
    one back (and so still adopts the tokens it sealed before)."""
    where = {"seal_namespace": ns.name, "seal_name": "seal"}
    first = operator_factory(**where)
    made = ns.core.read_namespaced_secret("seal", ns.name).data
    assert made is not None
    assert len(base64.b64decode(made["key"])) == 32
    ns.client("idp", ns.authserver.clients["client_secret_basic"])
    ns.request("billing", "idp")
    ns.wait_ready("billing")
    issued = (ns.token_secret("billing") or {})["access_token"]
    first.stop()
    second = operator_factory(**where)
    settle(second, ns, "billing")
    assert ns.core.read_namespaced_secret("seal", ns.name).data == made
    assert (ns.token_secret("billing") or {})["access_token"] == issued  # adopted
