"""The operator image installs exactly the runtime lock (requirements/runtime.txt), checked
against its hashes, every package named by it (none resolved at build time): two builds
from the same commit, the second without the engine's cache, hold the same distributions
at the same versions, and a lock whose hash does not match the file fails the build. The
image records what its base was."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.markers import Marker

from tests.e2e.fixtures import engine_unavailable
from tests.e2e.images import ImageError, build_image
from tests.e2e.kind import KindUnavailable, ensure_engine
from tests.packaging.locks import ROOT, RUNTIME_LOCK, read_lock

pytestmark = pytest.mark.kind  # needs the container engine of the kind tests

VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
BUILD_SCRIPT = ROOT / "deploy" / "image" / "build.sh"
BASE_RECORD = "/usr/share/oauth2-token-operator/base.txt"
#: Prints the venv's distributions and the PEP 508 marker environment, in the image.
PROBE = """
import importlib.metadata, json, os, platform, sys
venv = [p for p in sys.path if p.startswith("/opt/oauth2-token-operator/")]
v = sys.implementation.version
print(json.dumps({
    "installed": {
        d.metadata["Name"]: d.version for d in importlib.metadata.distributions(path=venv)
    },
    "requested": {  # pip's REQUESTED marker: named by the command line or a -r file
        d.metadata["Name"]: "" for d in importlib.metadata.distributions(path=venv)
        if d.read_text("REQUESTED") is not None
    },
    "environment": {
        "implementation_name": sys.implementation.name,
        "implementation_version": f"{v.major}.{v.minor}.{v.micro}",
        "os_name": os.name, "platform_machine": platform.machine(),
        "platform_release": platform.release(), "platform_system": platform.system(),
        "platform_version": platform.version(), "python_full_version": platform.python_version(),
        "platform_python_implementation": platform.python_implementation(),
        "python_version": ".".join(platform.python_version_tuple()[:2]),
        "sys_platform": sys.platform,
    },
}))
"""


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _docker(*argv: str) -> str:
    result = subprocess.run(["docker", *argv], capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"docker {argv[0]}: {result.stderr[-2000:]}"
    return result.stdout


def _probe(image: str) -> dict[str, dict[str, str]]:
    out = _docker("run", "--rm", "--network=none", "--entrypoint=python3", image, "-c", PROBE)
    loaded: dict[str, dict[str, str]] = json.loads(out)
    return loaded


def _labels(image: str) -> dict[str, str]:
    labels: dict[str, str] = json.loads(
        _docker("image", "inspect", "-f", "{{json .Config.Labels}}", image)
    )
    return labels


def _build(tag: str, *, no_cache: bool) -> str:
    """deploy/image/build.sh (what `make image` runs) of this tree, as ``tag``."""
    env = {**os.environ, "NO_CACHE": "1" if no_cache else "0"}
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT), tag], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return tag


@pytest.fixture(scope="module")
def images() -> Iterator[tuple[str, str]]:
    """Two builds of this tree (tags of their own: other trees build the usual tag): one
    as `make image` does (the engine's cache allowed), one with every step run again."""
    try:
        ensure_engine()
    except KindUnavailable as exc:
        engine_unavailable(exc)
    tags = [f"oauth2-token-operator.local/reproducible-{n}:{os.getpid()}" for n in (1, 2)]
    try:
        yield _build(tags[0], no_cache=False), _build(tags[1], no_cache=True)
    finally:
        subprocess.run(["docker", "image", "rm", "-f", *tags], capture_output=True, check=False)


def test_two_builds_install_the_runtime_lock_exactly(images: tuple[str, str]) -> None:
    first, second = map(_probe, images)
    assert first["installed"] == second["installed"]
    assert first["environment"] == second["environment"]
    expected = {
        name: pin.version
        for name, pin in read_lock(RUNTIME_LOCK).items()
        if pin.marker is None or Marker(pin.marker).evaluate(first["environment"])
    }
    expected["oauth2-token-operator"] = VERSION
    installed = {_canonical(name): version for name, version in first["installed"].items()}
    assert installed == expected
    # Each one named by the lock (or the wheel's own install), none pulled in by a resolver.
    assert first["requested"].keys() == first["installed"].keys()


def test_the_image_records_its_base(images: tuple[str, str]) -> None:
    first, second = map(_labels, images)
    base = first["org.opencontainers.image.base.name"]
    assert base == second["org.opencontainers.image.base.name"]
    if "@sha256:" in base:  # pulled by digest: the reference says it all
        assert first["org.opencontainers.image.base.digest"] == ""
        return
    # The Debian-made base (deploy/image/base.sh): its image ID, its package list.
    assert (
        first["org.opencontainers.image.base.digest"]
        == _docker("image", "inspect", "-f", "{{.Id}}", base).strip()
    )
    record = _docker("run", "--rm", "--network=none", "--entrypoint=cat", images[0], BASE_RECORD)
    assert record == _docker(
        "run", "--rm", "--network=none", "--entrypoint=cat", images[1], BASE_RECORD
    )
    packages = record.split("packages:\n", 1)[1]
    assert any(line.startswith("python3=") for line in packages.splitlines()), record
    assert "suite: trixie" in record, record
    assert "release-Date:" in record, record
    digest = hashlib.sha256(packages.encode()).hexdigest()[:16]
    assert first["oauth2-token-operator.base-packages"] == digest


def test_a_file_that_does_not_match_its_hash_fails_the_build(
    images: tuple[str, str], tmp_path: Path
) -> None:
    """sniffio's hashes in the lock replaced: pip must refuse the file it downloads."""
    context = tmp_path / "context"
    context.mkdir()
    for name in ("Dockerfile", "pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, context / name)
    shutil.copytree(ROOT / "requirements", context / "requirements")
    shutil.copytree(ROOT / "operator", context / "operator",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))  # fmt: skip
    lock = context / "requirements" / "runtime.txt"
    text, count = re.subn(
        r"^(sniffio==.*\n)((?: +--hash=sha256:[0-9a-f]{64}.*\n)+)",
        lambda m: m[1] + re.sub("[0-9a-f]{64}", "0" * 64, m[2]),
        lock.read_text(),
        flags=re.M,
    )
    assert count == 1
    lock.write_text(text)
    base = _labels(images[0])["org.opencontainers.image.base.name"]
    with pytest.raises(ImageError, match="DO NOT MATCH THE HASHES"):
        build_image(
            context, f"oauth2-token-operator.local/tampered:{os.getpid()}", {"PYTHON_IMAGE": base}
        )
