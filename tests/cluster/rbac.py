"""ServiceAccounts that hold only the RBAC a test gives them, and their removal."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from tests.cluster.errors import ClusterError
from tests.cluster.kubeconfig import bearer_configuration, closing

Rule = Mapping[str, Any]  # a PolicyRule as in YAML: {"apiGroups": [...], "resources": ...}
#: What was created for an identity: (kind, "namespace/name" or "name"), in order.
Created = list[tuple[str, str]]


@dataclass
class ServiceAccountIdentity:
    """A ServiceAccount holding only the RBAC it was given, with a bound token."""

    name: str
    namespace: str
    token: str
    kubeconfig: Path
    _base: k8s.Configuration = field(repr=False)

    @property
    def username(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.name}"

    def configuration(self) -> k8s.Configuration:
        return bearer_configuration(self._base, self.token)

    def api_client(self) -> k8s.ApiClient:
        """A new client acting as the ServiceAccount (the caller closes it)."""
        return k8s.ApiClient(self.configuration())

    def client(self) -> contextlib.AbstractContextManager[k8s.ApiClient]:
        return closing(self.api_client())


def create_service_account(
    api: k8s.ApiClient,
    name: str,
    namespace: str,
    *,
    rules: list[Rule],
    cluster_rules: list[Rule],
    cluster_roles: list[str],
    namespaces: list[str],
    token_seconds: int,
) -> tuple[str, Created]:
    """Create the ServiceAccount, its Roles/ClusterRoles and bindings; return a bound token
    and what was created (see ``KubeCluster.service_account`` for the meaning)."""
    subject = {"kind": "ServiceAccount", "name": name, "namespace": namespace}
    created: Created = []
    core, rbac = k8s.CoreV1Api(api), k8s.RbacAuthorizationV1Api(api)
    _ignore_conflict(
        lambda: core.create_namespaced_service_account(
            namespace, k8s.V1ServiceAccount.model_validate({"metadata": {"name": name}})
        )
    )
    created.append(("ServiceAccount", f"{namespace}/{name}"))
    role_name = f"{name}-harness"
    if rules:
        for ns in namespaces:
            rbac.create_namespaced_role(
                ns, k8s.V1Role.model_validate({"metadata": {"name": role_name}, "rules": rules})
            )
            rbac.create_namespaced_role_binding(
                ns,
                k8s.V1RoleBinding.model_validate(
                    {
                        "metadata": {"name": role_name},
                        "roleRef": _role_ref("Role", role_name),
                        "subjects": [subject],
                    }
                ),
            )
            created.append(("Role", f"{ns}/{role_name}"))
    cluster_role_name = f"{namespace}-{name}-harness"
    cluster_roles = list(cluster_roles)
    if cluster_rules:
        rbac.create_cluster_role(
            k8s.V1ClusterRole.model_validate(
                {"metadata": {"name": cluster_role_name}, "rules": cluster_rules}
            )
        )
        cluster_roles.append(cluster_role_name)
        created.append(("ClusterRole", cluster_role_name))
    for i, role in enumerate(cluster_roles):
        binding = f"{cluster_role_name}-{i}"
        rbac.create_cluster_role_binding(
            k8s.V1ClusterRoleBinding.model_validate(
                {
                    "metadata": {"name": binding},
                    "roleRef": _role_ref("ClusterRole", role),
                    "subjects": [subject],
                }
            )
        )
        created.append(("ClusterRoleBinding", binding))
    issued = core.create_namespaced_service_account_token(
        name,
        namespace,
        k8s.AuthenticationV1TokenRequest.model_validate(
            {"spec": {"expirationSeconds": token_seconds}}
        ),
    )
    if issued.status is None or not issued.status.token:
        raise ClusterError(f"TokenRequest for {namespace}/{name} returned no token")
    return issued.status.token, created


def delete_created(api: k8s.ApiClient, created: Iterable[tuple[str, str]]) -> None:
    """Remove what create_service_account() made, the last first (errors ignored)."""
    core, rbac = k8s.CoreV1Api(api), k8s.RbacAuthorizationV1Api(api)
    for kind, ref in reversed(list(created)):
        with contextlib.suppress(ApiException):
            if kind == "ServiceAccount":
                ns, n = ref.split("/")
                core.delete_namespaced_service_account(n, ns)
            elif kind == "Role":
                ns, n = ref.split("/")
                rbac.delete_namespaced_role_binding(n, ns)
                rbac.delete_namespaced_role(n, ns)
            elif kind == "ClusterRole":
                rbac.delete_cluster_role(ref)
            elif kind == "ClusterRoleBinding":
                rbac.delete_cluster_role_binding(ref)


def _ignore_conflict(call: Callable[[], object]) -> None:
    try:
        call()
    except ApiException as exc:
        if exc.status != 409:
            raise


def _role_ref(kind: str, name: str) -> dict[str, str]:
    return {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name}
