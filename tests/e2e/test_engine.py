"""Where no container engine can be had, the kind tests skip with the reason, except in
CI (``CI=true``), where they and ``tests/e2e/build.sh`` fail.

No engine is needed here: DOCKER_HOST names a socket that nothing serves, which
engine.sh must report (exit 3) instead of starting a dockerd of its own.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.e2e.fixtures import engine_unavailable
from tests.e2e.kind import BUILD_SCRIPT, KindUnavailable, ensure_engine


def test_unreachable_docker_host_is_reported_not_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    socket = tmp_path / "nothing.sock"
    monkeypatch.setenv("DOCKER_HOST", f"unix://{socket}")
    monkeypatch.setenv("KIND_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(KindUnavailable, match=f"DOCKER_HOST=unix://{socket} does not answer"):
        ensure_engine()
    assert not (tmp_path / "cache").exists(), "nothing may be set up for another engine"


@pytest.mark.parametrize(("ci", "fails"), [(None, False), ("false", False), ("true", True)])
def test_build_without_an_engine_fails_only_in_ci(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ci: str | None, fails: bool
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'nothing.sock'}")
    monkeypatch.setenv("KIND_CACHE_DIR", str(tmp_path / "cache"))
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=60, check=False
    )
    if fails:
        assert result.returncode == 1, result.stderr
        assert f"no container engine under CI={ci}" in result.stderr
        assert "will be skipped" not in result.stderr
    else:
        assert result.returncode == 0, result.stderr
        assert "the kind tests will be skipped (no container engine)" in result.stderr


@pytest.mark.parametrize(("ci", "outcome"), [(None, "skip"), ("0", "skip"), ("true", "fail")])
def test_kind_tests_skip_without_an_engine_but_fail_in_ci(
    monkeypatch: pytest.MonkeyPatch, ci: str | None, outcome: str
) -> None:
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    expected = pytest.fail.Exception if outcome == "fail" else pytest.skip.Exception
    with pytest.raises(expected, match="kind tests need a container engine: no engine here"):
        engine_unavailable(KindUnavailable("no engine here"))
