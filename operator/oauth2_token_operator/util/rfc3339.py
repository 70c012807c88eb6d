"""RFC 3339 timestamps as the Kubernetes API writes them: UTC, whole seconds, `Z`."""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(epoch: float) -> str:
    """`epoch` as e.g. `2026-11-28T09:00:00Z` (fractions of a second dropped)."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> float:
    """Seconds since the epoch; `ValueError` for text that is not a timestamp."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
