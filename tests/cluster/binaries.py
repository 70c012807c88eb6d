"""Where the control plane's binaries come from: KUBEBUILDER_ASSETS or build.sh's cache."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.cluster.errors import ClusterError

HERE = Path(__file__).resolve().parent
BUILD_SCRIPT = HERE / "build.sh"


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
    """Locate etcd, kube-apiserver and kube-controller-manager.

    ``KUBEBUILDER_ASSETS`` (a directory with ``etcd`` and ``kube-apiserver``, and maybe
    ``kube-controller-manager``, else the built one when present), otherwise build.sh's
    cache, built on first use unless ``auto_build`` is false (default: unless
    ``CLUSTER_AUTO_BUILD=0``).
    """
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
