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

This module is the entry point; each job lives in a module of its own:

* ``binaries``: find or build etcd, kube-apiserver, kube-controller-manager;
* ``processes``: start, stop and find again the control plane's processes;
* ``safety``: stop what was started at exit and on SIGTERM/SIGHUP;
* ``pki``: the throw-away CA and certificates;
* ``kubeconfig``: kubeconfig files and client configurations;
* ``crds``: apply CRDs and wait until Established;
* ``rbac``: ServiceAccounts holding only given RBAC;
* ``clusters``: ``KubeCluster`` (what tests use) and ``ExistingCluster``;
* ``control_plane``: ``ControlPlane``, the started one.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from tests.cluster.binaries import BUILD_SCRIPT, Binaries, build, cache_dirs, find_binaries
from tests.cluster.clusters import ExistingCluster, KubeCluster, unique_name
from tests.cluster.control_plane import CONTROLLERS, SERVICE_CIDR, ControlPlane
from tests.cluster.crds import CrdSource
from tests.cluster.errors import ClusterError
from tests.cluster.kubeconfig import write_kubeconfig
from tests.cluster.processes import (
    LOOPBACK,
    WORKDIR_PREFIX,
    free_port,
    processes_using,
    sweep_stale_workdirs,
)
from tests.cluster.rbac import Rule, ServiceAccountIdentity

__all__ = [
    "BUILD_SCRIPT",
    "CONTROLLERS",
    "LOOPBACK",
    "SERVICE_CIDR",
    "WORKDIR_PREFIX",
    "Binaries",
    "ClusterError",
    "ControlPlane",
    "CrdSource",
    "ExistingCluster",
    "KubeCluster",
    "Rule",
    "ServiceAccountIdentity",
    "build",
    "cache_dirs",
    "find_binaries",
    "free_port",
    "kube_cluster_context",
    "main",
    "processes_using",
    "sweep_stale_workdirs",
    "unique_name",
    "use_existing_cluster",
    "write_kubeconfig",
]


def use_existing_cluster() -> bool:
    value = os.environ.get("USE_EXISTING_CLUSTER") or ""
    return value.strip().lower() in {"1", "true", "yes", "on"}


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
