"""The operator benchmarks run the operator with the image's environment (what ships)."""

from __future__ import annotations

from pathlib import Path

from bench.operator_env import image_environment


def test_the_last_stage_env_without_the_image_paths(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        "FROM base AS build\n"
        "ENV BUILD_ONLY=1\n"
        "FROM base\n"
        'LABEL description="it\'s the image"\n'
        "# Why the allocator setting:\n"
        "ENV PATH=/opt/venv/bin:$PATH \\\n"
        "    MALLOC_ARENA_MAX=2 \\\n"
        "    HOME=/tmp\n"
        'ENV GREETING="a b" LEGACY\n'
    )
    assert image_environment(dockerfile) == {"MALLOC_ARENA_MAX": "2", "GREETING": "a b"}


def test_the_project_image() -> None:
    assert image_environment()["PYTHONUNBUFFERED"] == "1"
