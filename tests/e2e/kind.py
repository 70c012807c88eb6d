"""A kind cluster for end-to-end tests: created for the session, or an existing one.

Importable without pytest (``python -m tests.e2e.kind`` runs one until Ctrl-C)::

    from tests.e2e.kind import kind_cluster_context

    with kind_cluster_context() as cluster:
        print(cluster.kubeconfig)  # KUBECONFIG=... kubectl get pods -A

* ``KIND_CLUSTER=<name>``: that existing kind cluster is used and left as it is;
* otherwise ``tests/e2e/build.sh`` (seconds when built) provides kind and a node image,
  and a cluster is created on a docker network of its own and deleted on exit, on
  failure, on Ctrl-C and on SIGTERM/SIGHUP: no container, docker network or kubeconfig
  entry is left (its kubeconfig is a private file, never ``~/.kube/config``). What a
  SIGKILL-ed run left is removed by the next one (names carry the owner's pid).

Created clusters keep every test's traffic on the networks they create: CoreDNS gets a
``resolv.conf`` whose only server is the host's address on the cluster's own docker
network, where no DNS server listens, so it never forwards a query off that network.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from tests.cluster import safety
from tests.cluster.harness import ExistingCluster
from tests.cluster.processes import pid_alive

HERE = Path(__file__).resolve().parent
BUILD_SCRIPT = HERE / "build.sh"
ENGINE_SCRIPT = HERE / "engine.sh"
#: Prefix of the clusters and docker networks this module creates; the owner's pid follows.
NAME_PREFIX = "oauth2-e2e-"
OWNER_LABEL = "oauth2-token-operator.e2e.owner-pid"
KIND_CLUSTER_LABEL = "io.x-k8s.kind.cluster"
POD_SUBNET = "10.244.0.0/16"
#: How often the kubelet resyncs pods, hence how soon a Secret update reaches a mounted
#: file (the default, 1 min, makes that take up to ~90 s).
SYNC_FREQUENCY = "5s"


class KindUnavailable(RuntimeError):
    """No container engine can be reached or started here (the tests skip, or fail in CI)."""


class KindError(RuntimeError):
    """kind or docker failed."""


@dataclass(frozen=True)
class Build:
    """What tests/e2e/build.sh provides (its build.json)."""

    kind: Path
    node_image: str
    source: str  # "standard" (kindest/node) or "offline" (built here)


def _run(argv: Sequence[str | Path]) -> str:
    """Run a command; its stdout, or KindError with everything it printed."""
    result = subprocess.run([str(a) for a in argv], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise KindError(
            f"{' '.join(map(str, argv))} failed ({result.returncode}):\n"
            f"{result.stdout}{result.stderr}"
        )
    return result.stdout


def in_ci() -> bool:
    """Whether CI is set (``CI=true``, as CI services set it; not "", 0, false or no).

    There the kind tests must run: no container engine fails them instead of skipping
    them (build.sh's ``in_ci`` is the same rule).
    """
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(os.environ.get("KIND_CACHE_DIR") or Path(base) / "oauth2-token-operator" / "kind")


def ensure_engine() -> None:
    """Make a Docker engine reachable (engine.sh) or raise KindUnavailable with why not."""
    result = subprocess.run(
        ["bash", str(ENGINE_SCRIPT)], capture_output=True, text=True, check=False
    )
    if result.returncode == 3:
        reason = (result.stderr.strip().splitlines() or ["no container engine"])[-1]
        raise KindUnavailable(re.sub(r"^\[[^]]*\] no container engine: ", "", reason))
    if result.returncode != 0:
        raise KindError(f"{ENGINE_SCRIPT} failed:\n{result.stderr}")


def build() -> Build:
    """Run build.sh (seconds when built) and return what it chose."""
    ensure_engine()
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise KindError(f"{BUILD_SCRIPT} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    info = json.loads((cache_dir() / "build.json").read_text())
    return Build(Path(info["kind"]), info["node_image"], info["source"])


def network_gateway(network: str) -> str:
    """The host's IPv4 address on a docker network."""
    out = _run(["docker", "network", "inspect", "-f", "{{json .IPAM.Config}}", network])
    for subnet in json.loads(out):
        gateway = subnet.get("Gateway", "")
        if gateway and ":" not in gateway:
            return str(gateway)
    raise KindError(f"docker network {network} has no IPv4 gateway")


def kind_config(build: Build, resolv_conf: Path) -> str:
    """The cluster config: one node, a fast kubelet resync, CoreDNS kept inside."""
    networking = f"  podSubnet: {POD_SUBNET}\n"
    if build.source == "offline":
        # No kindnetd image offline: the node image's bridge conflist is the pod network.
        networking += "  disableDefaultCNI: true\n"
    return f"""\
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
networking:
{networking}nodes:
- role: control-plane
  extraMounts:
  - hostPath: {resolv_conf}
    containerPath: /etc/kubernetes/pod-resolv.conf
    readOnly: true
kubeadmConfigPatches:
- |
  apiVersion: kubelet.config.k8s.io/v1beta1
  kind: KubeletConfiguration
  # kubelet >= 1.35 refuses cgroup v1 hosts (as this project's machines are) otherwise.
  failCgroupV1: false
  syncFrequency: {SYNC_FREQUENCY}
  resolvConf: /etc/kubernetes/pod-resolv.conf
"""


def _owner_pid(name: str) -> int | None:
    match = re.fullmatch(re.escape(NAME_PREFIX) + r"(\d+)", name)
    return int(match.group(1)) if match else None


class KindCluster(ExistingCluster):
    """A kind cluster: its kubeconfig (a private file), node container and docker network."""

    def __init__(self, kind: Path, name: str, kubeconfig: Path, *, created: bool) -> None:
        super().__init__(kubeconfig)
        self.kind = kind
        self.name = name
        #: True when this run created the cluster (and deletes it at the end).
        self.started = created
        #: Seconds ``kind create cluster`` took (0 for an existing cluster).
        self.create_seconds = 0.0
        #: "standard" (kindest/node), "offline" (built here) or "existing".
        self.image_source = "existing"

    @property
    def node_container(self) -> str:
        return f"{self.name}-control-plane"

    @property
    def network(self) -> str:
        """The docker network of the node container."""
        out = _run(
            ["docker", "inspect", "-f", "{{json .NetworkSettings.Networks}}", self.node_container]
        )
        networks = list(json.loads(out))
        if len(networks) != 1:
            raise KindError(f"{self.node_container} is on networks {networks}")
        return str(networks[0])

    def network_gateway(self) -> str:
        """The host's IPv4 address on the cluster's docker network (a server bound there
        is reachable from the node and its pods, and from no other network)."""
        return network_gateway(self.network)

    def node_address(self) -> str:
        """The node container's address on the cluster's docker network."""
        fmt = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"
        return _run(["docker", "inspect", "-f", fmt, self.node_container]).strip()

    def load_image(self, tag: str) -> None:
        """Put a local docker image into the node's containerd (pods use it with
        ``imagePullPolicy: Never``)."""
        _run([self.kind, "load", "docker-image", tag, "--name", self.name])

    def wait_for_service_account(self, namespace: str = "default", timeout: float = 60) -> None:
        """Wait for the namespace's ``default`` ServiceAccount: pods cannot be created
        before it exists, and kind's ``--wait`` only waits for the node."""
        deadline = time.monotonic() + timeout
        with self.admin_client() as api:
            core = k8s.CoreV1Api(api)
            while True:
                try:
                    core.read_namespaced_service_account("default", namespace)
                    return
                except ApiException as exc:
                    if exc.status != 404:
                        raise
                if time.monotonic() > deadline:
                    raise KindError(f"no default ServiceAccount in {namespace} after {timeout}s")
                time.sleep(0.2)


class _CreatedCluster:
    """One ``kind create cluster`` of this process, undone by ``stop()`` (idempotent,
    also from the SIGTERM handler while kind is still creating)."""

    def __init__(self, build: Build, name: str, workdir: Path) -> None:
        self.build = build
        self.name = name
        self.workdir = workdir
        self.kubeconfig = workdir / "kubeconfig"
        self._lock = threading.RLock()
        self._stopped = False
        self._creating: subprocess.Popen[bytes] | None = None

    def create(self) -> float:
        """Create the cluster on a docker network of its own; return the seconds it took."""
        safety.track(self)
        t0 = time.monotonic()
        _run(["docker", "network", "create", "--label", f"{OWNER_LABEL}={os.getpid()}", self.name])
        # The pods' upstream DNS server: the host's address on this network, where no
        # DNS server listens, so CoreDNS answers cluster names and forwards nothing.
        resolv_conf = self.workdir / "pod-resolv.conf"
        resolv_conf.write_text(f"nameserver {network_gateway(self.name)}\n")
        config = self.workdir / "kind.yaml"
        config.write_text(kind_config(self.build, resolv_conf))
        env = {**os.environ, "KIND_EXPERIMENTAL_DOCKER_NETWORK": self.name}
        log_path = self.workdir / "kind-create.log"
        argv = [
            str(self.build.kind), "create", "cluster", "--name", self.name,
            "--image", self.build.node_image, "--config", str(config),
            "--kubeconfig", str(self.kubeconfig), "--wait", "5m",
        ]  # fmt: skip
        with self._lock:
            if self._stopped:
                raise KindError("stopped before kind create cluster started")
            with open(log_path, "wb") as log:
                self._creating = subprocess.Popen(
                    argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                    preexec_fn=safety.child_preexec(),
                )  # fmt: skip
        returncode = self._creating.wait()
        if returncode != 0:
            raise KindError(
                f"kind create cluster failed ({returncode}):\n{log_path.read_text()[-4000:]}"
            )
        return time.monotonic() - t0

    def stop(self) -> None:
        """Delete the cluster, its docker network, its kubeconfig and work dir."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            creating = self._creating
            if creating is not None and creating.poll() is None:
                creating.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    creating.wait(10)
                creating.kill()
                creating.wait()
            delete_cluster(self.build.kind, self.name)
            shutil.rmtree(self.workdir, ignore_errors=True)
            safety.untrack(self)


def delete_cluster(kind: Path, name: str) -> None:
    """Delete a kind cluster and its docker network; tolerant of either being gone."""
    subprocess.run(
        [str(kind), "delete", "cluster", "--name", name, "--kubeconfig", os.devnull],
        capture_output=True,
        check=False,
    )
    # kind only removes the containers: the network is ours.
    subprocess.run(["docker", "network", "rm", name], capture_output=True, check=False)


def _docker_names(*args: str) -> list[str]:
    """The whitespace-separated words ``docker ARGS`` prints (names, one a line)."""
    return _run(["docker", *args]).split()


def sweep_stale(kind: Path) -> list[str]:
    """Delete clusters and networks this module created in runs that no longer live."""
    label_format = f'{{{{.Label "{KIND_CLUSTER_LABEL}"}}}}'
    names = set(_docker_names("ps", "-a", "--filter", f"label={KIND_CLUSTER_LABEL}",
                              "--format", label_format))  # fmt: skip
    names |= set(_docker_names("network", "ls", "--filter", f"label={OWNER_LABEL}",
                               "--format", "{{.Name}}"))  # fmt: skip
    removed = []
    for name in sorted(names):
        pid = _owner_pid(name)
        if pid is not None and not pid_alive(pid):
            delete_cluster(kind, name)
            removed.append(name)
    return removed


def leftovers(name: str) -> list[str]:
    """What of cluster ``name`` still exists (empty once it is fully deleted)."""
    containers = _docker_names("ps", "-a", "--filter", f"label={KIND_CLUSTER_LABEL}={name}",
                               "--format", "{{.Names}}")  # fmt: skip
    networks = _docker_names("network", "ls", "--filter", f"name=^{name}$",
                             "--format", "{{.Name}}")  # fmt: skip
    return [f"container {c}" for c in containers] + [f"network {n}" for n in networks]


def _find_kind() -> Path:
    """kind for an existing cluster: the one build.sh made, else the one on PATH."""
    with contextlib.suppress(OSError, ValueError, KeyError):
        kind = Path(json.loads((cache_dir() / "build.json").read_text())["kind"])
        if os.access(kind, os.X_OK):
            return kind
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(directory) / "kind"
        if os.access(candidate, os.X_OK):
            return candidate
    raise KindError("KIND_CLUSTER is set but no kind binary was found (run tests/e2e/build.sh)")


@contextlib.contextmanager
def kind_cluster_context() -> Iterator[KindCluster]:
    """The kind cluster the environment asks for (see the module docstring).

    Raises KindUnavailable when no container engine can be had here.
    """
    existing = os.environ.get("KIND_CLUSTER")
    workdir = Path(tempfile.mkdtemp(prefix=NAME_PREFIX))
    created: _CreatedCluster | None = None
    cluster: KindCluster | None = None
    try:
        if existing:
            kind = _find_kind()
            kubeconfig = workdir / "kubeconfig"
            kubeconfig.write_text(_run([kind, "get", "kubeconfig", "--name", existing]))
            kubeconfig.chmod(0o600)
            cluster = KindCluster(kind, existing, kubeconfig, created=False)
        else:
            info = build()
            sweep_stale(info.kind)
            created = _CreatedCluster(info, f"{NAME_PREFIX}{os.getpid()}", workdir)
            seconds = created.create()
            cluster = KindCluster(info.kind, created.name, created.kubeconfig, created=True)
            cluster.create_seconds = seconds
            cluster.image_source = info.source
        cluster.wait_for_service_account()
        yield cluster
    finally:
        if cluster is not None:
            cluster.close()
        if created is not None:
            created.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m tests.e2e.kind`: a kind cluster until Ctrl-C or SIGTERM."""
    import argparse

    argparse.ArgumentParser(prog="python -m tests.e2e.kind").parse_args(argv)
    # Ctrl-C stops it even when started in the background (where SIGINT comes ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with kind_cluster_context() as cluster:
        print(f"export KUBECONFIG={cluster.kubeconfig}", flush=True)
        if cluster.started:
            print(
                f"# {cluster.name} ({cluster.image_source} node image) "
                f"created in {cluster.create_seconds:.1f}s",
                file=sys.stderr,
                flush=True,
            )
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(main())
