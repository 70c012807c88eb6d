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


def build_image(context: Path, tag: str, build_args: dict[str, str] | None = None) -> str:
    """``docker build`` the directory ``context`` (with its Dockerfile) as ``tag``."""
    args = [f"--build-arg={name}={value}" for name, value in (build_args or {}).items()]
    result = subprocess.run(
        ["docker", "build", "-q", *args, "-t", tag, str(context)],
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


ROOT = HERE.parent.parent
AUTHSERVER_SOURCE = ROOT / "tests" / "authserver"
AUTHSERVER_DOCKERFILE = HERE / "authserver-image" / "Dockerfile"
#: The authorization server image's base: any Debian trixie image. Where no registry
#: answers, the operator image's Debian-made Python base (trixie) serves.
DEBIAN_IMAGE = "debian:trixie-slim"


def _run_script(script: Path, *args: str) -> str:
    """Run one of the project's build scripts; its last stdout line (a tag or path)."""
    result = subprocess.run(
        ["bash", str(script), *args], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise ImageError(f"{script} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result.stdout.strip().splitlines()[-1]


def build_operator_image() -> str:
    """The operator image (deploy/image/build.sh: the Dockerfile at the root); its tag."""
    return _run_script(ROOT / "deploy" / "image" / "build.sh")


def debian_base() -> str:
    """A Debian trixie image in the engine: debian:trixie-slim if it is there or can be
    pulled, else the one deploy/image/base.sh makes from Debian packages."""
    if image_exists(DEBIAN_IMAGE):
        return DEBIAN_IMAGE
    pulled = subprocess.run(
        ["timeout", "300", "docker", "pull", "-q", DEBIAN_IMAGE], capture_output=True, check=False
    )
    if pulled.returncode == 0:
        return DEBIAN_IMAGE
    return _run_script(ROOT / "deploy" / "image" / "base.sh")


def build_authserver_image(workdir: Path) -> str:
    """tests/authserver (server.mjs and its installed npm packages) on Debian's nodejs;
    its tag (by the hash of what goes in)."""
    modules = AUTHSERVER_SOURCE / "node_modules"
    if not (modules / "oidc-provider").is_dir():
        raise ImageError(f"{modules} has no oidc-provider: run `make setup`")
    digest = hashlib.sha256()
    for path in (
        AUTHSERVER_DOCKERFILE,
        AUTHSERVER_SOURCE / "server.mjs",
        AUTHSERVER_SOURCE / "package-lock.json",
    ):
        digest.update(path.read_bytes())
    tag = f"{IMAGE_REPOSITORY}/authserver:{digest.hexdigest()[:12]}"
    if image_exists(tag):
        return tag
    context = workdir / "authserver-image"
    app = context / "app"
    app.mkdir(parents=True)
    shutil.copy(AUTHSERVER_DOCKERFILE, context / "Dockerfile")
    for name in ("server.mjs", "package.json", "package-lock.json"):
        shutil.copy(AUTHSERVER_SOURCE / name, app / name)
    shutil.copytree(modules, app / "node_modules", symlinks=True)
    try:
        return build_image(context, tag, {"BASE": debian_base()})
    finally:
        shutil.rmtree(context, ignore_errors=True)
