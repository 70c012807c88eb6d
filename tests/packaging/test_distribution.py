"""The sdist and wheel, as `python -m build` makes them, pass `twine check --strict` and
carry the licence as PEP 639 says (SPDX expression, the full text in both).

Built without build isolation: with the build backend of the dev lock (setuptools, the
version the image's build stage uses too), so nothing is fetched, and `build` checks that
it satisfies pyproject.toml's [build-system] lower bound.
"""

from __future__ import annotations

import email
import email.message
import importlib
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.packaging.locks import ROOT

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
DIST_NAME = "oauth2_token_operator"
PREFIX = f"{DIST_NAME}-{PROJECT['version']}"


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sdist and wheel of a copy of the source (the worktree gets no build/ or egg-info);
    the wheel is built from the sdist, as `python -m build` does."""
    work = tmp_path_factory.mktemp("dist")
    source = work / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "operator",
        source / "operator",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"),
    )
    out = work / "out"
    result = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(source)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


def _wheel(dist: Path) -> Path:
    (wheel,) = dist.glob("*.whl")
    return wheel


def _sdist(dist: Path) -> Path:
    (sdist,) = dist.glob("*.tar.gz")
    return sdist


def _wheel_metadata(dist: Path) -> email.message.Message:
    with zipfile.ZipFile(_wheel(dist)) as wheel:
        return email.message_from_bytes(wheel.read(f"{PREFIX}.dist-info/METADATA"))


def test_twine_check_passes(dist: Path) -> None:
    files = [str(_sdist(dist)), str(_wheel(dist))]
    result = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *files],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("PASSED") == 2, result.stdout


def test_the_licence_is_an_spdx_expression_with_its_full_text(dist: Path) -> None:
    metadata = _wheel_metadata(dist)
    assert metadata["Metadata-Version"] == "2.4"
    assert metadata["License-Expression"] == "Apache-2.0"
    assert metadata.get_all("License-File") == ["LICENSE"]
    # PEP 639: no legacy License field, no licence classifier beside the expression.
    assert metadata["License"] is None
    classifiers = metadata.get_all("Classifier") or []
    assert classifiers == PROJECT["classifiers"]
    assert not [c for c in classifiers if c.startswith("License ::")]
    text = (ROOT / "LICENSE").read_bytes()
    assert b"Apache License\n                           Version 2.0, January 2004" in text
    assert b"END OF TERMS AND CONDITIONS" in text
    with zipfile.ZipFile(_wheel(dist)) as wheel:
        assert wheel.read(f"{PREFIX}.dist-info/licenses/LICENSE") == text
    with tarfile.open(_sdist(dist)) as sdist:
        member = sdist.extractfile(f"{PREFIX}/LICENSE")
        assert member is not None
        assert member.read() == text


def test_the_metadata_names_authors_urls_and_runtime_dependencies(dist: Path) -> None:
    metadata = _wheel_metadata(dist)
    assert metadata["Name"] == PROJECT["name"]
    assert metadata["Requires-Python"] == ">=3.11"
    assert metadata["Author"] == PROJECT["authors"][0]["name"]
    urls = dict(line.split(", ", 1) for line in metadata.get_all("Project-URL") or [])
    assert urls == PROJECT["urls"]
    requires = metadata.get_all("Requires-Dist") or []
    assert [r for r in requires if "extra ==" not in r] == PROJECT["dependencies"]
    assert metadata["Description-Content-Type"] == "text/markdown"


def test_the_wheel_holds_the_package_and_nothing_else(dist: Path) -> None:
    with zipfile.ZipFile(_wheel(dist)) as wheel:
        names = wheel.namelist()
        entry_points = wheel.read(f"{PREFIX}.dist-info/entry_points.txt").decode()
    tops = {name.split("/", 1)[0] for name in names}
    assert tops == {DIST_NAME, f"{PREFIX}.dist-info"}
    assert f"{DIST_NAME}/py.typed" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert "oauth2-token-operator = oauth2_token_operator.cli.main:main" in entry_points


def test_the_script_runs_the_cli() -> None:
    """The console script's target exists and is the CLI's `main` (the package `cli`
    itself has none: a target left at `oauth2_token_operator.cli:main` would install a
    script that fails at its first run)."""
    (target,) = PROJECT["scripts"].values()
    module, _, attribute = target.partition(":")
    from oauth2_token_operator.cli.main import main

    assert getattr(importlib.import_module(module), attribute) is main
