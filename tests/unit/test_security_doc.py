"""SECURITY.md names, for each promise, the tests that hold it, and
docs/authorization-servers.md the tests behind each "tested here": those files exist and
are collected, so a renamed or deleted test cannot leave a promise with nothing behind it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("doc", "at_least"), [("SECURITY.md", 6), ("docs/authorization-servers.md", 2)]
)
def test_every_test_a_document_cites_exists(doc: str, at_least: int) -> None:
    text = (ROOT / doc).read_text()
    cited = set(re.findall(r"`(tests/[\w/]+\.py)`", text))
    assert len(cited) >= at_least, cited
    for path in sorted(cited):
        file = ROOT / path
        assert file.is_file(), f"{doc} cites {path}, which does not exist"
        assert re.search(r"^(async )?def test_", file.read_text(), re.M), path


def test_the_readme_points_to_it() -> None:
    assert "[`SECURITY.md`](SECURITY.md)" in (ROOT / "README.md").read_text()
