"""SECURITY.md names, for each promise, the tests that hold it: those files exist and are
collected, so a renamed or deleted test cannot leave a promise with nothing behind it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_test_the_threat_model_cites_exists() -> None:
    text = (ROOT / "SECURITY.md").read_text()
    cited = set(re.findall(r"`(tests/[\w/]+\.py)`", text))
    assert len(cited) >= 6, cited
    for path in sorted(cited):
        file = ROOT / path
        assert file.is_file(), f"SECURITY.md cites {path}, which does not exist"
        assert re.search(r"^(async )?def test_", file.read_text(), re.M), path


def test_the_readme_points_to_it() -> None:
    assert "[`SECURITY.md`](SECURITY.md)" in (ROOT / "README.md").read_text()
