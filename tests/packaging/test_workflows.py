"""The GitHub workflows (.github/workflows) cannot run here: actionlint (built from its Go
module by actionlint.sh, with Debian's shellcheck for the `run:` scripts where it can be
installed) checks all of them, and the release workflow is held to what it promises."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.packaging.locks import ROOT

WORKFLOWS = ROOT / ".github" / "workflows"
BUILD_SCRIPT = Path(__file__).resolve().parent / "actionlint.sh"


@pytest.fixture(scope="module")
def actionlint() -> str:
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1]


def _lint(actionlint: str, *files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [actionlint, "-no-color", *map(str, files)], capture_output=True, text=True, check=False
    )


def _workflow(name: str) -> dict[Any, Any]:
    loaded = yaml.safe_load((WORKFLOWS / name).read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_actionlint_passes_every_workflow(actionlint: str) -> None:
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert {f.name for f in files} >= {"ci.yml", "release.yml"}
    result = _lint(actionlint, *files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_finds_what_it_should(actionlint: str, tmp_path: Path) -> None:
    """Not a pass by default: an unknown expression and a bad permission are errors, and
    with shellcheck present, an unquoted variable in a `run:` script is one too."""
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\n"
        "permissions: {id-token: writes}\n"
        "jobs:\n"
        "  a:\n"
        "    runs-on: ubuntu-latest\n"
        "    steps:\n"
        "      - run: echo ${{ github.no_such_thing }}\n"
        "      - run: rm -rf $DIRECTORY/*\n"
    )
    output = _lint(actionlint, broken).stdout
    assert "id-token" in output, output
    assert "no_such_thing" in output, output
    if shutil.which("shellcheck"):
        assert "SC2086" in output, output


def test_the_release_workflow_signs_and_publishes_on_a_version_tag() -> None:
    release = _workflow("release.yml")
    assert release[True] == {"push": {"tags": ["v*"]}}  # YAML 1.1 reads `on` as true
    assert release["permissions"] == {"contents": "read"}
    (job,) = release["jobs"].values()
    assert job["permissions"] == {"contents": "write", "packages": "write", "id-token": "write"}
    uses = [step["uses"].split("@")[0] for step in job["steps"] if "uses" in step]
    for action in ("docker/build-push-action", "sigstore/cosign-installer",
                   "anchore/sbom-action"):  # fmt: skip
        assert action in uses
    runs = "\n".join(step.get("run", "") for step in job["steps"])
    assert 'cosign sign --yes "$IMAGE"' in runs
    assert 'cosign attest --yes --type spdxjson --predicate "$SBOM" "$IMAGE"' in runs
    assert '"$helm" push "dist/oauth2-token-operator-$VERSION.tgz" "oci://$CHARTS"' in runs
    assert 'cosign sign --yes "$CHARTS/oauth2-token-operator@$digest"' in runs
    assert "gh release create" in runs
    assert "twine check --strict" in runs


def test_every_workflow_pins_its_actions_by_commit() -> None:
    """A tag can be moved; a commit cannot. The version stays readable in a comment."""
    for path in sorted(WORKFLOWS.glob("*.yml")):
        for job in yaml.safe_load(path.read_text())["jobs"].values():
            for step in job["steps"]:
                if "uses" in step:
                    assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", step["uses"]), (
                        f"{path.name}: {step['uses']}"
                    )
        for line in re.findall(r"uses: \S+@[0-9a-f]{40}.*", path.read_text()):
            assert re.search(r" # v\d+\.\d+\.\d+$", line), f"{path.name}: no version: {line}"
