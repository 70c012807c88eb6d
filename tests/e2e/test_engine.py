"""Where no container engine can be had, the kind tests skip with the reason.

No engine is needed here: DOCKER_HOST names a socket that nothing serves, which
engine.sh must report (exit 3) instead of starting a dockerd of its own.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.kind import KindUnavailable, ensure_engine


def test_unreachable_docker_host_is_reported_not_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    socket = tmp_path / "nothing.sock"
    monkeypatch.setenv("DOCKER_HOST", f"unix://{socket}")
    monkeypatch.setenv("KIND_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(KindUnavailable, match=f"DOCKER_HOST=unix://{socket} does not answer"):
        ensure_engine()
    assert not (tmp_path / "cache").exists(), "nothing may be set up for another engine"
