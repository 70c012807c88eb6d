"""promtool, built from the Prometheus Go module by `build.sh` (seconds when cached)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def promtool() -> Path:
    out = subprocess.run(
        ["bash", str(HERE / "build.sh")], check=True, capture_output=True, text=True
    )
    return Path(out.stdout.strip().splitlines()[-1])


def run(promtool: Path, *args: str, cwd: Path) -> str:
    """promtool's output; the test fails with it when promtool does."""
    result = subprocess.run(
        [str(promtool), *args], cwd=cwd, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"promtool {' '.join(args)}:\n{result.stdout}{result.stderr}"
    return result.stdout


def refuses(promtool: Path, *args: str, cwd: Path) -> bool:
    """Whether promtool fails (a check that can fail must be seen failing)."""
    result = subprocess.run(
        [str(promtool), *args], cwd=cwd, capture_output=True, text=True, check=False
    )
    return result.returncode != 0
