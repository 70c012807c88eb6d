"""Reads the hashed locks of requirements/ (made by `make lock` with uv)."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = ROOT / "requirements"
DEV_LOCK = REQUIREMENTS / "dev.txt"
RUNTIME_LOCK = REQUIREMENTS / "runtime.txt"
BUILD_LOCK = REQUIREMENTS / "build.txt"
#: What uv writes as the source of a dependency that pyproject.toml declares.
FROM_PYPROJECT = "oauth2-token-operator (pyproject.toml)"

_PIN = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+)(?: ; (?P<marker>.+?))? \\$"
)
_HASH = re.compile(r"^ +--hash=sha256:[0-9a-f]{64}(?: \\)?$")
_VIA = re.compile(r"^ +# +(?:via )?(?P<source>\S.*)$")


@dataclass
class Pin:
    """One package of a lock: its version, environment marker, hashes and sources."""

    version: str
    marker: str | None
    hashes: int = 0
    via: tuple[str, ...] = ()


def read_lock(path: Path) -> dict[str, Pin]:
    """The pins of a lock by canonical name; ValueError on a line it does not expect."""
    pins: dict[str, Pin] = {}
    current: Pin | None = None
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if (pin := _PIN.match(line)) is not None:
            current = Pin(pin["version"], pin["marker"])
            pins[canonicalize_name(pin["name"])] = current
        elif current is not None and _HASH.match(line):
            current.hashes += 1
        elif current is not None and (via := _VIA.match(line)):
            if via["source"] != "via":  # "# via" alone heads a list of sources
                current.via += (via["source"],)
        elif not line.startswith("#"):
            raise ValueError(f"{path.name}:{number}: unexpected line {line!r}")
    return pins


def pyproject_dependencies() -> list[Requirement]:
    """pyproject.toml's [project] dependencies (the runtime ones, no extra)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(text) for text in project["dependencies"]]
