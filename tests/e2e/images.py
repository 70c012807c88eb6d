"""Container images for the kind tests, built from local directories (no registry).

``build_image`` runs ``docker build`` without BuildKit (the engines these tests start,
Debian's docker.io, have none installed), so a Dockerfile may only start ``FROM scratch``
or from an image already in the engine. Images are tagged by the hash of their
directory: a second session reuses them, and ``KindCluster.load_image`` then puts them
on the node (pods use them with ``imagePullPolicy: Never``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROBE_SOURCE = HERE / "probe"
IMAGE_REPOSITORY = "oauth2-token-operator.local"


class ImageError(RuntimeError):
    """docker build or go build failed."""


def directory_digest(directory: Path) -> str:
    """A short hash of every file under ``directory`` (names and contents)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(directory)).encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def image_exists(tag: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0


def build_image(context: Path, tag: str) -> str:
    """``docker build`` the directory ``context`` (with its Dockerfile) as ``tag``."""
    result = subprocess.run(
        ["docker", "build", "-q", "-t", tag, str(context)],
        capture_output=True,
        text=True,
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
        check=False,
    )
    if result.returncode != 0:
        raise ImageError(f"docker build {context} failed:\n{result.stdout}{result.stderr}")
    return tag


def build_probe_image(workdir: Path) -> str:
    """The image of tests/e2e/probe (a static Go program, ``FROM scratch``); its tag."""
    tag = f"{IMAGE_REPOSITORY}/probe:{directory_digest(PROBE_SOURCE)}"
    if image_exists(tag):
        return tag
    context = workdir / "probe-image"
    context.mkdir(parents=True)
    go = shutil.which("go") or "/usr/local/go/bin/go"
    env = {**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"}
    result = subprocess.run(
        [go, "build", "-trimpath", "-ldflags=-s -w", "-o", str(context / "probe"), "."],
        cwd=PROBE_SOURCE,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if result.returncode != 0:
        raise ImageError(f"go build {PROBE_SOURCE} failed:\n{result.stderr}")
    (context / "Dockerfile").write_text(
        'FROM scratch\nCOPY probe /probe\nUSER 65534:65534\nENTRYPOINT ["/probe"]\n'
    )
    try:
        return build_image(context, tag)
    finally:
        shutil.rmtree(context, ignore_errors=True)
