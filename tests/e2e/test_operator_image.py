"""The operator image (Dockerfile, built by deploy/image/build.sh with plain `docker
build`): what its final stage holds and how it runs."""

from __future__ import annotations

import json
import subprocess
import tomllib

import pytest

from tests.e2e.ship import ROOT, run_tool

pytestmark = pytest.mark.kind  # needs the container engine of the kind tests


def _run(
    image: str, *argv: str, entrypoint: str = "python3", user: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the image as Kubernetes will: read-only root, no capabilities, its own user."""
    as_user = [f"--user={user}"] if user else []
    return subprocess.run(
        ["docker", "run", "--rm", "--read-only", "--cap-drop=ALL", "--network=none",
         "--security-opt=no-new-privileges", *as_user, f"--entrypoint={entrypoint}", image,
         *argv],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_image_metadata(operator_image: str, capsys: pytest.CaptureFixture[str]) -> None:
    (info,) = json.loads(run_tool(["docker", "image", "inspect", operator_image]))
    config = info["Config"]
    assert config["Entrypoint"] == ["oauth2-token-operator", "run"]
    assert config["User"] == "65532:65532"
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    labels = config["Labels"]
    assert labels["org.opencontainers.image.title"] == "oauth2-token-operator"
    assert labels["org.opencontainers.image.version"] == version
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert labels["org.opencontainers.image.base.name"]
    with capsys.disabled():
        print(f"\n[image] {operator_image}: {info['Size'] / 2**20:.0f} MiB "
              f"(base {labels['org.opencontainers.image.base.name']})")  # fmt: skip


def test_image_runs_read_only_as_its_numeric_user(operator_image: str) -> None:
    result = _run(operator_image, "--version", entrypoint="oauth2-token-operator")
    assert result.returncode == 0, result.stderr
    ids = _run(operator_image, "-c", "import os; print(os.getuid(), os.getgid())")
    assert ids.stdout.split() == ["65532", "65532"]


def test_final_stage_has_no_build_tools(operator_image: str) -> None:
    """Only the venv came from the build stage: no pip, wheel files, caches or compilers."""
    probe = (
        "import importlib.util, pathlib, shutil, sys\n"
        "found = [m for m in ('pip', 'setuptools', 'wheel') if importlib.util.find_spec(m)]\n"
        "found += [t for t in ('gcc', 'cc', 'make') if shutil.which(t)]\n"
        "found += [str(p) for p in map(pathlib.Path, ('/wheels', '/src', '/root/.cache'))"
        " if p.exists()]\n"
        "print(' '.join(found))"
    )
    result = _run(operator_image, "-c", probe, user="0")  # root: sees /root too
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == []
