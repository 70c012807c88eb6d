"""The real API server refusing writes: a ValidatingAdmissionPolicy and its binding
(admissionregistration.k8s.io/v1, on by default since Kubernetes 1.30) that deny
CREATE and UPDATE of one Secret in one namespace, for everyone.

The policy takes effect, and stops, a moment after it is created or deleted (the API
server's informer); both ends wait for that with a dry-run write of the Secret, so a
test sees the refusal exactly while inside the `with`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from tests.cluster.harness import unique_name
from tests.polling import wait_for

REFUSED = 403
"""What the policy answers (its validation's `reason`: Forbidden)."""


@contextlib.contextmanager
def refusing_secret_writes(api: k8s.ApiClient, namespace: str, name: str) -> Iterator[str]:
    """While inside: every create or update of Secret `namespace/name` is denied by the
    API server. Yields the message the API server gives."""
    admission = k8s.AdmissionregistrationV1Api(api)
    policy = unique_name("refuse-secret")
    message = f"test: writes of Secret {name} are refused"
    admission.create_validating_admission_policy(
        k8s.V1ValidatingAdmissionPolicy.model_validate(
            {
                "metadata": {"name": policy},
                "spec": {
                    "failurePolicy": "Fail",
                    "matchConstraints": {
                        "resourceRules": [
                            {
                                "apiGroups": [""],
                                "apiVersions": ["v1"],
                                "operations": ["CREATE", "UPDATE"],
                                "resources": ["secrets"],
                            }
                        ]
                    },
                    "validations": [
                        {
                            "expression": f"object.metadata.name != '{name}'",
                            "message": message,
                            "reason": "Forbidden",
                        }
                    ],
                },
            }
        )
    )
    try:
        admission.create_validating_admission_policy_binding(
            k8s.V1ValidatingAdmissionPolicyBinding.model_validate(
                {
                    "metadata": {"name": policy},
                    "spec": {
                        "policyName": policy,
                        "validationActions": ["Deny"],
                        "matchResources": {
                            "namespaceSelector": {
                                "matchLabels": {"kubernetes.io/metadata.name": namespace}
                            }
                        },
                    },
                }
            )
        )
        try:
            wait_for(
                f"writes of Secret {namespace}/{name} to be refused",
                lambda: _refused(api, namespace, name),
                timeout=30,
            )
            yield message
        finally:
            admission.delete_validating_admission_policy_binding(policy)
    finally:
        admission.delete_validating_admission_policy(policy)
    wait_for(
        f"writes of Secret {namespace}/{name} to be allowed again",
        lambda: not _refused(api, namespace, name),
        timeout=30,
    )


def _refused(api: k8s.ApiClient, namespace: str, name: str) -> bool:
    """Whether a dry-run create of the Secret is denied by admission (a create of one
    that exists still reaches admission first: 409 means it was let through)."""
    body = k8s.V1Secret.model_validate({"metadata": {"name": name}})
    try:
        k8s.CoreV1Api(api).create_namespaced_secret(namespace, body, dry_run="All")
    except ApiException as exc:
        if exc.status == REFUSED:
            return True
        if exc.status == 409:
            return False
        raise
    return False
