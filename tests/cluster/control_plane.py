"""etcd + kube-apiserver (+ kube-controller-manager) on loopback, in a temp dir.

Started processes run in their own process groups with ``PR_SET_PDEATHSIG``; they are
stopped by ``stop()``, at interpreter exit and on SIGTERM/SIGHUP (``safety``), and a
later start removes what a killed run left behind.
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from tests.cluster import safety
from tests.cluster.binaries import Binaries, find_binaries
from tests.cluster.clusters import KubeCluster
from tests.cluster.crds import CrdSource
from tests.cluster.errors import ClusterError
from tests.cluster.kubeconfig import write_kubeconfig
from tests.cluster.pki import CertificateAuthority, key_pem
from tests.cluster.processes import (
    LOOPBACK,
    WORKDIR_PREFIX,
    Process,
    ProcessExited,
    free_port,
    http_ok,
    sweep_stale_workdirs,
)

SERVICE_CIDR = "10.0.0.0/24"

#: Controllers of kube-controller-manager that the tests need.
CONTROLLERS = (
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    # Fills the built-in view/edit/admin ClusterRoles from the ones aggregated into them.
    "clusterrole-aggregation-controller",
)


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
        self.procs: list[Process] = []
        self.server = ""
        self.etcd_url = ""
        self.startup_seconds: dict[str, float] = {}
        self._stop_lock = threading.RLock()

    # -- lifecycle
    def start(self) -> ControlPlane:
        sweep_stale_workdirs()
        t0 = time.monotonic()
        self.workdir = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
        (self.workdir / "owner.pid").write_text(str(os.getpid()))
        safety.track(self)
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
            safety.untrack(self)

    def restart_apiserver(
        self, downtime: float = 0.0, *, while_down: Callable[[], None] | None = None
    ) -> None:
        """Stop kube-apiserver (every watch drops), wait `downtime` (and run `while_down`),
        start it again on the same address with the same etcd: what clients see of an
        API server upgrade."""
        with self._stop_lock:
            old = next(p for p in self.procs if p.name == "kube-apiserver")
            old.stop(10)
            self.procs.remove(old)
            time.sleep(downtime)
            if while_down is not None:
                while_down()
            port = int(self.server.rsplit(":", 1)[1])
            self._start_apiserver(port=port)

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
        ca = CertificateAuthority("oauth2-token-operator test cluster CA")
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
        self._path("sa.key").write_bytes(key_pem(key))
        self._path("sa.pub").write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def _spawn(self, name: str, argv: list[str]) -> Process:
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
                preexec_fn=safety.child_preexec(),
            )
        proc = Process(name, popen, log_path)
        self.procs.append(proc)
        with open(self._path("pids"), "a") as pids:
            pids.write(f"{popen.pid}\n")
        return proc

    def _wait(self, proc: Process, what: str, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.start_timeout
        delay = 0.05
        while time.monotonic() < deadline:
            if proc.popen.poll() is not None:
                raise ProcessExited(proc)
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
            except ProcessExited as exc:
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
            self._wait(proc, "/health", lambda: http_ok(f"{self.etcd_url}/health"))

        self._retrying(start)

    def _start_apiserver(self, port: int | None = None) -> None:
        def start() -> None:
            chosen = port or free_port()
            self.server = f"https://{LOOPBACK}:{chosen}"
            argv = [
                str(self.binaries.kube_apiserver),
                f"--etcd-servers={self.etcd_url}",
                f"--bind-address={LOOPBACK}",
                f"--advertise-address={LOOPBACK}",
                f"--secure-port={chosen}",
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
        return http_ok(f"{self.server}/readyz", ctx)

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
        except ProcessExited as exc:
            raise ClusterError(
                f"kube-controller-manager exited with {exc.proc.popen.returncode}:\n"
                f"{exc.proc.tail()}"
            ) from None


def _env_log_dir() -> Path | None:
    value = os.environ.get("CLUSTER_LOG_DIR")
    return Path(value) if value else None
