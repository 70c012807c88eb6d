"""What tests use of a cluster, whichever backend runs its API server."""

from __future__ import annotations

import abc
import contextlib
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from tests.cluster.crds import CrdSource
from tests.cluster.crds import apply_crds as _apply_crds
from tests.cluster.kubeconfig import closing, write_kubeconfig
from tests.cluster.processes import WORKDIR_PREFIX
from tests.cluster.rbac import (
    Created,
    Rule,
    ServiceAccountIdentity,
    create_service_account,
    delete_created,
)


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class KubeCluster(abc.ABC):
    """What tests use, whichever backend runs the API server."""

    kubeconfig: Path
    server: str
    #: True when this harness started the control plane (False for an existing cluster).
    started: bool = False
    #: True when garbage collection, namespace deletion and SA controllers run.
    has_controller_manager: bool = True

    def __init__(self) -> None:
        self._identities: list[Created] = []
        self._identity_dir: Path | None = None

    # -- admin access
    @abc.abstractmethod
    def configuration(self) -> k8s.Configuration:
        """How to reach the API server as the admin identity."""

    def api_client(self) -> k8s.ApiClient:
        """A new admin client (the caller closes it)."""
        return k8s.ApiClient(self.configuration())

    def admin_client(self) -> contextlib.AbstractContextManager[k8s.ApiClient]:
        return closing(self.api_client())

    def version(self) -> dict[str, str]:
        with self.admin_client() as api:
            info = k8s.VersionApi(api).get_code()
        return {k: v for k, v in info.to_dict().items() if isinstance(v, str)}

    @contextlib.contextmanager
    def temporary_namespace(self, prefix: str = "test") -> Iterator[str]:
        """A fresh namespace, deleted (without waiting for it to go) on exit."""
        name = unique_name(prefix)
        with self.admin_client() as api:
            core = k8s.CoreV1Api(api)
            core.create_namespace(k8s.V1Namespace.model_validate({"metadata": {"name": name}}))
            try:
                yield name
            finally:
                try:
                    core.delete_namespace(name)
                except ApiException as exc:
                    if exc.status != 404:
                        raise

    # -- CRDs
    def apply_crds(self, crds: Iterable[CrdSource], timeout: float = 30.0) -> list[str]:
        """Create or replace CustomResourceDefinitions and wait until they are Established.

        Each item is a manifest dict or a YAML file (other kinds in it are ignored).
        Returns the CRD names.
        """
        with self.admin_client() as api:
            return _apply_crds(api, crds, timeout)

    # -- identities
    def _kubeconfig_dir(self) -> Path:
        if self._identity_dir is None:
            self._identity_dir = Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}identities-"))
        return self._identity_dir

    def service_account(
        self,
        name: str,
        namespace: str,
        *,
        rules: Iterable[Rule] = (),
        cluster_rules: Iterable[Rule] = (),
        cluster_roles: Iterable[str] = (),
        role_namespaces: Iterable[str] | None = None,
        token_seconds: int = 3600,
    ) -> ServiceAccountIdentity:
        """Create a ServiceAccount holding only the given RBAC and return its identity.

        ``rules`` become a Role bound in ``namespace`` (and in each of ``role_namespaces``
        if given); ``cluster_rules`` a ClusterRole bound cluster-wide; ``cluster_roles``
        names existing ClusterRoles (e.g. the operator's) to bind cluster-wide.
        Rules are dicts as in YAML (``apiGroups``, ``resources``, ``verbs``, ...).
        The namespace must exist. The token comes from the TokenRequest API.
        """
        namespaces = [namespace] if role_namespaces is None else list(role_namespaces)
        with self.admin_client() as api:
            token, created = create_service_account(
                api,
                name,
                namespace,
                rules=list(rules),
                cluster_rules=list(cluster_rules),
                cluster_roles=list(cluster_roles),
                namespaces=namespaces,
                token_seconds=token_seconds,
            )
        self._identities.append(created)
        base = self.configuration()
        path = self._kubeconfig_dir() / f"{namespace}.{name}.kubeconfig"
        write_kubeconfig(
            path,
            server=base.host,
            ca_file=base.ssl_ca_cert,
            user=f"{namespace}.{name}",
            token=token,
            insecure=not base.verify_ssl,
        )
        return ServiceAccountIdentity(name, namespace, token, path, base)

    def _delete_identities(self) -> None:
        """Remove what service_account() created (matters on a cluster that outlives us)."""
        if not self._identities:
            return
        with self.admin_client() as api:
            for created in self._identities:
                delete_created(api, created)
        self._identities.clear()

    def close(self) -> None:
        if self._identity_dir is not None:
            shutil.rmtree(self._identity_dir, ignore_errors=True)
            self._identity_dir = None

    def __enter__(self) -> KubeCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ExistingCluster(KubeCluster):
    """A cluster named by KUBECONFIG (kind, k3d, a real one); nothing is started."""

    def __init__(self, kubeconfig: str | Path, context: str | None = None) -> None:
        super().__init__()
        self.kubeconfig = Path(kubeconfig)
        self.context = context
        self.has_controller_manager = True
        self.server = self.configuration().host

    def configuration(self) -> k8s.Configuration:
        cfg = k8s.Configuration()
        k8s_config.load_kube_config(  # type: ignore[no-untyped-call]  # unannotated upstream
            config_file=str(self.kubeconfig), context=self.context, client_configuration=cfg
        )
        return cfg

    def close(self) -> None:
        self._delete_identities()
        super().close()
