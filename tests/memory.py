"""A process's resident set size, as the kernel counts it (Linux's /proc)."""

from __future__ import annotations

import re
from pathlib import Path


def rss(pid: int | str = "self") -> int:
    """Resident set size of process `pid` (default: this one), in bytes."""
    match = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    assert match is not None, f"no VmRSS for {pid}"
    return int(match.group(1)) * 1024
