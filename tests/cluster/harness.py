"""A real Kubernetes control plane for tests: etcd, kube-apiserver, kube-controller-manager.

Importable without pytest (the demo command uses it too)::

    from tests.cluster.harness import kube_cluster_context

    with kube_cluster_context() as cluster:
        print(cluster.kubeconfig)  # KUBECONFIG=... kubectl get ns
        with cluster.admin_client() as api:
            ...

Which cluster is used is chosen by environment (see ``tests/cluster/README.md``):

* ``USE_EXISTING_CLUSTER=true`` and ``KUBECONFIG``: that cluster, nothing is started;
* ``KUBEBUILDER_ASSETS``: a directory with ``etcd`` and ``kube-apiserver`` (and, if there,
  ``kube-controller-manager``; else the built one is used when present);
* otherwise the binaries that ``tests/cluster/build.sh`` builds into its version-keyed cache
  (built on first use unless ``CLUSTER_AUTO_BUILD=0``).

Started processes run in their own process groups with ``PR_SET_PDEATHSIG``; they are stopped
on exit of the context manager, at interpreter exit, and on SIGTERM/SIGHUP, and a later start
removes what a killed run left behind.
"""

from __future__ import annotations

import abc
import atexit
import base64
import contextlib
import ctypes
import datetime
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from tests.cluster.objects import metadata

HERE = Path(__file__).resolve().parent
BUILD_SCRIPT = HERE / "build.sh"
LOOPBACK = "127.0.0.1"
WORKDIR_PREFIX = "oauth2-cp-"
SERVICE_CIDR = "10.0.0.0/24"

#: Controllers of kube-controller-manager that the tests need.
CONTROLLERS = (
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
)

Rule = Mapping[str, Any]  # a PolicyRule as in YAML: {"apiGroups": [...], "resources": ...}
CrdSource = Mapping[str, Any] | str | Path  # a CRD manifest, or a YAML file holding CRDs


class ClusterError(RuntimeError):
    """The control plane could not be found, built or started."""


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


# --------------------------------------------------------------------------- binaries


@dataclass(frozen=True)
class Binaries:
    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path | None
    source: str  # "KUBEBUILDER_ASSETS" or "cache"


def cache_dirs() -> tuple[Path, Path]:
    """(etcd dir, kubernetes dir) of the build cache, as build.sh computes them."""
    out = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "--print-dirs"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split("\n")
    return Path(out[0]), Path(out[1])


def build(*, quiet: bool = False) -> None:
    """Run build.sh (seconds when built; 10-20 minutes on a new machine)."""
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT)],
        stdout=subprocess.PIPE if quiet else None,
        stderr=subprocess.STDOUT if quiet else None,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise ClusterError(f"{BUILD_SCRIPT} failed ({result.returncode}):\n{result.stdout or ''}")


def find_binaries(*, auto_build: bool | None = None) -> Binaries:
    """Locate etcd, kube-apiserver and kube-controller-manager (see the module docstring)."""
    if auto_build is None:
        auto_build = os.environ.get("CLUSTER_AUTO_BUILD", "1") != "0"
    etcd_dir, kube_dir = cache_dirs()
    cached_kcm = kube_dir / "kube-controller-manager"
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets:
        root = Path(assets)
        etcd, apiserver = root / "etcd", root / "kube-apiserver"
        for binary in (etcd, apiserver):
            if not os.access(binary, os.X_OK):
                raise ClusterError(f"KUBEBUILDER_ASSETS={assets}: no executable {binary.name}")
        kcm: Path | None = None
        for candidate in (root / "kube-controller-manager", cached_kcm):
            if os.access(candidate, os.X_OK):
                kcm = candidate
                break
        return Binaries(etcd, apiserver, kcm, "KUBEBUILDER_ASSETS")
    wanted = (etcd_dir / "etcd", kube_dir / "kube-apiserver", cached_kcm)
    if not all(os.access(p, os.X_OK) for p in wanted):
        if not auto_build:
            raise ClusterError(
                f"control-plane binaries missing in {etcd_dir.parent}: run `make cluster`"
            )
        build()
    return Binaries(*wanted, source="cache")


# --------------------------------------------------------------------------- processes

_PR_SET_PDEATHSIG = 1
_live: set[ControlPlane] = set()
_live_lock = threading.RLock()  # re-entered from signal handlers
_handlers_installed = False


def _pdeathsig() -> None:  # pragma: no cover - runs in the child between fork and exec
    # The kernel kills the child when the thread that started it dies (even by SIGKILL).
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _stop_all() -> None:
    with _live_lock:
        planes = list(_live)
    for plane in planes:
        plane.stop()


def _on_signal(signum: int, frame: FrameType | None) -> None:
    _stop_all()
    previous = _previous_handlers.get(signum, signal.SIG_DFL)
    if callable(previous):
        previous(signum, frame)
        return
    signal.signal(signum, previous)
    os.kill(os.getpid(), signum)


_previous_handlers: dict[int, Any] = {}


def _install_safety_net() -> None:
    global _handlers_installed
    if _handlers_installed:
        return
    _handlers_installed = True
    atexit.register(_stop_all)
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGHUP):
        previous = signal.getsignal(signum)
        if previous is signal.SIG_IGN:
            continue
        _previous_handlers[signum] = previous
        signal.signal(signum, _on_signal)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_workdirs() -> list[Path]:
    """Remove work dirs (and kill processes) left by runs that were killed with SIGKILL."""
    removed = []
    for workdir in Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*"):
        try:
            owner = int((workdir / "owner.pid").read_text())
        except (OSError, ValueError):
            continue
        if _pid_alive(owner):
            continue
        with contextlib.suppress(OSError, ValueError):
            for line in (workdir / "pids").read_text().split():
                pid = int(line)
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                if str(workdir).encode() in cmdline:  # not a recycled pid
                    os.killpg(pid, signal.SIGKILL)
        shutil.rmtree(workdir, ignore_errors=True)
        removed.append(workdir)
    return removed


def processes_using(path: str | Path) -> list[int]:
    """Pids whose command line mentions path (every started process names its work dir)."""
    needle = str(path).encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if needle in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


@dataclass
class _Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout)
        # The group too: nothing it forked may outlive it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait()


# --------------------------------------------------------------------------- identities


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
        return _bearer_configuration(self._base, self.token)

    def api_client(self) -> k8s.ApiClient:
        """A new client acting as the ServiceAccount (the caller closes it)."""
        return k8s.ApiClient(self.configuration())

    def client(self) -> contextlib.AbstractContextManager[k8s.ApiClient]:
        return _closing(self.api_client())


@contextlib.contextmanager
def _closing(api: k8s.ApiClient) -> Iterator[k8s.ApiClient]:
    try:
        yield api
    finally:
        api.close()  # type: ignore[no-untyped-call]  # the kubernetes client leaves it unannotated


def _bearer_configuration(base: k8s.Configuration, token: str) -> k8s.Configuration:
    cfg = k8s.Configuration()
    cfg.host = base.host
    cfg.ssl_ca_cert = base.ssl_ca_cert
    cfg.verify_ssl = base.verify_ssl
    cfg.tls_server_name = getattr(base, "tls_server_name", None)
    cfg.api_key = {"authorization": token}
    cfg.api_key_prefix = {"authorization": "Bearer"}
    return cfg


def _ignore_conflict(call: Callable[[], object]) -> None:
    try:
        call()
    except ApiException as exc:
        if exc.status != 409:
            raise


# --------------------------------------------------------------------------- clusters


class KubeCluster(abc.ABC):
    """What tests use, whichever backend runs the API server."""

    kubeconfig: Path
    server: str
    #: True when this harness started the control plane (False for an existing cluster).
    started: bool = False
    #: True when garbage collection, namespace deletion and SA controllers run.
    has_controller_manager: bool = True

    def __init__(self) -> None:
        self._identities: list[tuple[str, str, list[tuple[str, str]]]] = []
        self._identity_dir: Path | None = None

    # -- admin access
    @abc.abstractmethod
    def configuration(self) -> k8s.Configuration:
        """How to reach the API server as the admin identity."""

    def api_client(self) -> k8s.ApiClient:
        """A new admin client (the caller closes it)."""
        return k8s.ApiClient(self.configuration())

    def admin_client(self) -> contextlib.AbstractContextManager[k8s.ApiClient]:
        return _closing(self.api_client())

    def version(self) -> dict[str, str]:
        with self.admin_client() as api:
            info = k8s.VersionApi(api).get_code()
        return {k: v for k, v in info.to_dict().items() if isinstance(v, str)}

    # -- CRDs
    def apply_crds(self, crds: Iterable[CrdSource], timeout: float = 30.0) -> list[str]:
        """Create or replace CustomResourceDefinitions and wait until they are Established.

        Each item is a manifest dict or a YAML file (other kinds in it are ignored).
        Returns the CRD names.
        """
        docs = [doc for source in crds for doc in _crd_documents(source)]
        names: list[str] = []
        with self.admin_client() as api:
            ext = k8s.ApiextensionsV1Api(api)
            for doc in docs:
                name = doc["metadata"]["name"]
                try:
                    ext.create_custom_resource_definition(_crd(doc))
                except ApiException as exc:
                    if exc.status != 409:
                        raise
                    current = ext.read_custom_resource_definition(name)
                    body = {**doc, "metadata": {**doc["metadata"]}}
                    body["metadata"]["resourceVersion"] = metadata(current).resource_version
                    ext.replace_custom_resource_definition(name, _crd(body))
                names.append(name)
            deadline = time.monotonic() + timeout
            for name in names:
                while not _established(ext.read_custom_resource_definition(name)):
                    if time.monotonic() > deadline:
                        raise ClusterError(f"CRD {name} not Established in {timeout}s")
                    time.sleep(0.1)
        return names

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
        rules, cluster_rules = list(rules), list(cluster_rules)
        cluster_roles = list(cluster_roles)
        namespaces = [namespace] if role_namespaces is None else list(role_namespaces)
        subject = {"kind": "ServiceAccount", "name": name, "namespace": namespace}
        created: list[tuple[str, str]] = []
        with self.admin_client() as api:
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
                        ns,
                        k8s.V1Role.model_validate(
                            {"metadata": {"name": role_name}, "rules": rules}
                        ),
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
            token = issued.status.token
        self._identities.append((namespace, name, created))
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
            core, rbac = k8s.CoreV1Api(api), k8s.RbacAuthorizationV1Api(api)
            for _namespace, _name, created in self._identities:
                for kind, ref in reversed(created):
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
        self._identities.clear()

    def close(self) -> None:
        if self._identity_dir is not None:
            shutil.rmtree(self._identity_dir, ignore_errors=True)
            self._identity_dir = None

    def __enter__(self) -> KubeCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _crd_documents(source: CrdSource) -> list[dict[str, Any]]:
    if isinstance(source, Mapping):
        return [dict(source)]
    with open(source) as stream:
        return [
            doc
            for doc in yaml.safe_load_all(stream)
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition"
        ]


def _crd(manifest: Mapping[str, Any]) -> k8s.V1CustomResourceDefinition:
    return k8s.V1CustomResourceDefinition.model_validate(manifest)


def _established(crd: k8s.V1CustomResourceDefinition) -> bool:
    conditions = (crd.status.conditions if crd.status else None) or []
    return any(c.type == "Established" and c.status == "True" for c in conditions)


def _role_ref(kind: str, name: str) -> dict[str, str]:
    return {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name}


def write_kubeconfig(
    path: Path,
    *,
    server: str,
    ca_file: str | Path | None,
    user: str,
    token: str | None = None,
    cert_file: Path | None = None,
    key_file: Path | None = None,
    insecure: bool = False,
) -> Path:
    """Write a self-contained kubeconfig (certificates embedded). JSON is valid YAML."""
    cluster: dict[str, Any] = {"server": server}
    if insecure:
        cluster["insecure-skip-tls-verify"] = True
    elif ca_file:
        cluster["certificate-authority-data"] = _b64(Path(ca_file))
    creds: dict[str, Any] = {}
    if token:
        creds["token"] = token
    if cert_file and key_file:
        creds["client-certificate-data"] = _b64(cert_file)
        creds["client-key-data"] = _b64(key_file)
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "harness", "cluster": cluster}],
        "users": [{"name": user, "user": creds}],
        "contexts": [{"name": user, "context": {"cluster": "harness", "user": user}}],
        "current-context": user,
    }
    path.write_text(json.dumps(doc, indent=2))
    path.chmod(0o600)
    return path


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


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


class ControlPlane(KubeCluster):
    """etcd + kube-apiserver (+ kube-controller-manager) on loopback, in a temp dir."""

    started = True

    def __init__(
        self,
        binaries: Binaries | None = None,
        *,
        controller_manager: bool = True,
        log_dir: str | Path | None = None,
        start_timeout: float = 60.0,
        extra_apiserver_flags: Sequence[str] = (),
        crds: Iterable[CrdSource] = (),
    ) -> None:
        """``crds`` are applied before kube-controller-manager starts, so its garbage
        collector watches them from the start (it discovers later CRDs only every 30 s)."""
        super().__init__()
        self.binaries = binaries or find_binaries()
        self.want_controller_manager = controller_manager
        self.has_controller_manager = False
        self.log_dir = Path(log_dir) if log_dir else _env_log_dir()
        self.start_timeout = start_timeout
        self.extra_apiserver_flags = list(extra_apiserver_flags)
        self.crds = list(crds)
        self.workdir: Path | None = None
        self.procs: list[_Proc] = []
        self.server = ""
        self.etcd_url = ""
        self.startup_seconds: dict[str, float] = {}
        self._stop_lock = threading.RLock()

    # -- lifecycle
    def start(self) -> ControlPlane:
        _install_safety_net()
        sweep_stale_workdirs()
        t0 = time.monotonic()
        self.workdir = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
        (self.workdir / "owner.pid").write_text(str(os.getpid()))
        with _live_lock:
            _live.add(self)
        try:
            self._make_credentials()
            self._start_etcd()
            self.startup_seconds["etcd"] = time.monotonic() - t0
            self._start_apiserver()
            self.startup_seconds["kube-apiserver"] = time.monotonic() - t0
            if self.crds:
                self.apply_crds(self.crds)
                self.startup_seconds["crds"] = time.monotonic() - t0
            if self.want_controller_manager and self.binaries.kube_controller_manager:
                self._start_controller_manager()
                self.has_controller_manager = True
                self.startup_seconds["kube-controller-manager"] = time.monotonic() - t0
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every process (reverse order) and remove the work dir. Idempotent."""
        with self._stop_lock:
            for proc in reversed(self.procs):
                proc.stop(timeout)
            self.procs.clear()
            self.close()
            if self.workdir is not None:
                shutil.rmtree(self.workdir, ignore_errors=True)
                self.workdir = None
            with _live_lock:
                _live.discard(self)

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pids(self) -> list[int]:
        return [p.popen.pid for p in self.procs]

    # -- admin access
    def configuration(self) -> k8s.Configuration:
        assert self.workdir is not None, "control plane not started"
        cfg = k8s.Configuration()
        cfg.host = self.server
        cfg.ssl_ca_cert = str(self.workdir / "ca.crt")
        cfg.cert_file = str(self.workdir / "admin.crt")
        cfg.key_file = str(self.workdir / "admin.key")
        cfg.verify_ssl = True
        return cfg

    def _kubeconfig_dir(self) -> Path:
        assert self.workdir is not None
        return self.workdir

    # -- internals
    def _path(self, name: str) -> Path:
        assert self.workdir is not None
        return self.workdir / name

    def _make_credentials(self) -> None:
        ca = _Pki("oauth2-token-operator test cluster CA")
        ca.write_ca(self._path("ca.crt"))
        ca.issue(
            self._path("apiserver"),
            common_name="kube-apiserver",
            hosts=[
                LOOPBACK,
                "localhost",
                "10.0.0.1",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ],
        )
        # kube-apiserver takes CN as the user name and O as the groups.
        ca.issue(self._path("admin"), common_name="harness-admin", groups=["system:masters"])
        ca.issue(
            self._path("kcm"),
            common_name="system:kube-controller-manager",
            groups=["system:masters"],
        )
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._path("sa.key").write_bytes(_key_pem(key))
        self._path("sa.pub").write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def _spawn(self, name: str, argv: list[str]) -> _Proc:
        log_path = self._path(f"{name}.log")
        if self.log_dir:  # kept after the work dir is gone
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log_path = self.log_dir / f"{name}-{os.getpid()}-{int(time.time())}.log"
        with open(log_path, "wb") as log:
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,  # own process group, killed as a whole
                preexec_fn=(
                    _pdeathsig if threading.current_thread() is threading.main_thread() else None
                ),
            )
        proc = _Proc(name, popen, log_path)
        self.procs.append(proc)
        with open(self._path("pids"), "a") as pids:
            pids.write(f"{popen.pid}\n")
        return proc

    def _wait(self, proc: _Proc, what: str, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.start_timeout
        delay = 0.05
        while time.monotonic() < deadline:
            if proc.popen.poll() is not None:
                raise _Exited(proc)
            if ready():
                return
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)
        raise ClusterError(f"{proc.name}: {what} not ready in {self.start_timeout}s\n{proc.tail()}")

    def _retrying(self, start: Callable[[], None]) -> None:
        """Start again on fresh ports when a process died (a free port got taken)."""
        for attempt in range(3):
            try:
                start()
                return
            except _Exited as exc:
                proc = exc.proc
                self.procs.remove(proc)
                proc.stop(1)
                if attempt == 2:
                    raise ClusterError(
                        f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail()}"
                    ) from None

    def _start_etcd(self) -> None:
        def start() -> None:
            client, peer = free_port(), free_port()
            self.etcd_url = f"http://{LOOPBACK}:{client}"
            peer_url = f"http://{LOOPBACK}:{peer}"
            proc = self._spawn(
                "etcd",
                [
                    str(self.binaries.etcd),
                    "--name=harness",
                    f"--data-dir={self._path('etcd')}",
                    f"--listen-client-urls={self.etcd_url}",
                    f"--advertise-client-urls={self.etcd_url}",
                    f"--listen-peer-urls={peer_url}",
                    f"--initial-advertise-peer-urls={peer_url}",
                    f"--initial-cluster=harness={peer_url}",
                    "--unsafe-no-fsync",
                    "--log-level=warn",
                ],
            )
            self._wait(proc, "/health", lambda: _http_ok(f"{self.etcd_url}/health"))

        self._retrying(start)

    def _start_apiserver(self) -> None:
        def start() -> None:
            port = free_port()
            self.server = f"https://{LOOPBACK}:{port}"
            argv = [
                str(self.binaries.kube_apiserver),
                f"--etcd-servers={self.etcd_url}",
                f"--bind-address={LOOPBACK}",
                f"--advertise-address={LOOPBACK}",
                f"--secure-port={port}",
                f"--cert-dir={self._path('apiserver-certs')}",
                f"--tls-cert-file={self._path('apiserver.crt')}",
                f"--tls-private-key-file={self._path('apiserver.key')}",
                f"--client-ca-file={self._path('ca.crt')}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                f"--service-account-issuer={self.server}",
                f"--service-account-key-file={self._path('sa.pub')}",
                f"--service-account-signing-key-file={self._path('sa.key')}",
                "--authorization-mode=RBAC",
                # As envtest does: no Pods here, and no token controller race on create.
                "--disable-admission-plugins=ServiceAccount",
                # Loopback may not be an Endpoints address; nothing here needs that Service.
                "--endpoint-reconciler-type=none",
                "--allow-privileged=true",
                "--profiling=false",
                *self.extra_apiserver_flags,
            ]
            proc = self._spawn("kube-apiserver", argv)
            self._wait(proc, "/readyz", self._apiserver_ready)

        self._retrying(start)
        kubeconfig = write_kubeconfig(
            self._path("admin.kubeconfig"),
            server=self.server,
            ca_file=self._path("ca.crt"),
            user="harness-admin",
            cert_file=self._path("admin.crt"),
            key_file=self._path("admin.key"),
        )
        self.kubeconfig = kubeconfig

    def _apiserver_ready(self) -> bool:
        ctx = ssl.create_default_context(cafile=str(self._path("ca.crt")))
        ctx.load_cert_chain(str(self._path("admin.crt")), str(self._path("admin.key")))
        return _http_ok(f"{self.server}/readyz", ctx)

    def _start_controller_manager(self) -> None:
        assert self.binaries.kube_controller_manager is not None
        kubeconfig = write_kubeconfig(
            self._path("kcm.kubeconfig"),
            server=self.server,
            ca_file=self._path("ca.crt"),
            user="kube-controller-manager",
            cert_file=self._path("kcm.crt"),
            key_file=self._path("kcm.key"),
        )
        proc = self._spawn(
            "kube-controller-manager",
            [
                str(self.binaries.kube_controller_manager),
                f"--kubeconfig={kubeconfig}",
                f"--controllers={','.join(CONTROLLERS)}",
                "--leader-elect=false",
                "--secure-port=0",  # no listener: nothing to bind or collide
                f"--service-account-private-key-file={self._path('sa.key')}",
                f"--root-ca-file={self._path('ca.crt')}",
                "--use-service-account-credentials=false",
                "--profiling=false",
            ],
        )

        # Ready when its serviceaccount controller made the default ServiceAccount.
        def default_sa() -> bool:
            with self.admin_client() as api:
                try:
                    k8s.CoreV1Api(api).read_namespaced_service_account("default", "default")
                except ApiException as exc:
                    if exc.status == 404:
                        return False
                    raise
            return True

        try:
            self._wait(proc, "default ServiceAccount", default_sa)
        except _Exited as exc:
            raise ClusterError(
                f"kube-controller-manager exited with {exc.proc.popen.returncode}:\n"
                f"{exc.proc.tail()}"
            ) from None


def _key_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class _Pki:
    """A throw-away CA issuing serving and client certificates (ECDSA P-256)."""

    def __init__(self, name: str) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(self.name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )

    def write_ca(self, path: Path) -> None:
        path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(
        self,
        stem: Path,
        *,
        common_name: str,
        groups: Sequence[str] = (),
        hosts: Sequence[str] = (),
    ) -> None:
        """Write stem.crt and stem.key."""
        key = ec.generate_private_key(ec.SECP256R1())
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attrs))
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        if hosts:
            names: list[x509.GeneralName] = []
            for host in hosts:
                try:
                    names.append(x509.IPAddress(ipaddress.ip_address(host)))
                except ValueError:
                    names.append(x509.DNSName(host))
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        crt, pem = stem.with_suffix(".crt"), stem.with_suffix(".key")
        crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        pem.write_bytes(_key_pem(key))
        pem.chmod(0o600)


class _Exited(Exception):
    def __init__(self, proc: _Proc) -> None:
        super().__init__(proc.name)
        self.proc = proc


def _http_ok(url: str, ctx: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=ctx) as resp:  # noqa: S310
            return int(resp.status) == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _env_log_dir() -> Path | None:
    value = os.environ.get("CLUSTER_LOG_DIR")
    return Path(value) if value else None


def use_existing_cluster() -> bool:
    return _truthy(os.environ.get("USE_EXISTING_CLUSTER"))


@contextlib.contextmanager
def kube_cluster_context(
    crds: Iterable[CrdSource] = (), **control_plane_kwargs: Any
) -> Iterator[KubeCluster]:
    """The cluster the environment asks for, started if needed, torn down on exit.

    Plain context manager (no pytest): the demo command and the fixtures use it alike.
    ``crds`` are applied before anything else (on an existing cluster too, where they stay).
    ``control_plane_kwargs`` go to ControlPlane and are ignored for an existing cluster.
    """
    cluster: KubeCluster
    if use_existing_cluster():
        kubeconfig = os.environ.get("KUBECONFIG")
        if not kubeconfig:
            raise ClusterError("USE_EXISTING_CLUSTER is set but KUBECONFIG is not")
        cluster = ExistingCluster(kubeconfig.split(os.pathsep)[0])
        if crds:
            try:
                cluster.apply_crds(crds)
            except BaseException:
                cluster.close()
                raise
    else:
        cluster = ControlPlane(crds=crds, **control_plane_kwargs).start()
    try:
        yield cluster
    finally:
        if isinstance(cluster, ControlPlane):
            cluster.stop()
        else:
            cluster.close()


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m tests.cluster.harness [--no-controller-manager]`: run until Ctrl-C."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tests.cluster.harness")
    parser.add_argument("--no-controller-manager", action="store_true")
    parser.add_argument("--crds", nargs="*", default=[], help="CRD YAML files to apply")
    args = parser.parse_args(argv)
    # Ctrl-C stops it even when started in the background (where SIGINT comes ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with kube_cluster_context(
        crds=args.crds, controller_manager=not args.no_controller_manager
    ) as cluster:
        print(f"export KUBECONFIG={cluster.kubeconfig}", flush=True)
        if isinstance(cluster, ControlPlane):
            print(f"# started in {cluster.startup_seconds}", file=sys.stderr, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(main())
