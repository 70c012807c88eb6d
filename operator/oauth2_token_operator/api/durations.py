"""Durations as Kubernetes users write them: Go's `time.ParseDuration` syntax.

cert-manager, kubelet flags and most of the ecosystem spell durations as
`90s`, `5m` or `1h30m`; so do our CRDs. Negative and zero-unit forms
(`-5m`, a bare `0`) are refused: no field of ours means a negative span.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,  # Go accepts the micro sign (U+00B5)
    "μs": 1e-6,  # and the Greek mu (U+03BC)
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_PART = r"[0-9]+(?:\.[0-9]*)?(?:ns|us|µs|μs|ms|s|m|h)"
DURATION_PATTERN = rf"^(?:{_PART})+$"
"""The CRD schema's pattern for a duration: one or more `<number><unit>` parts."""
_PART_RE = re.compile(r"([0-9]+(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")
_WHOLE_RE = re.compile(DURATION_PATTERN)


def parse_duration(text: str) -> timedelta:
    """`"1h30m"` → 90 minutes. Raises `ValueError` with the accepted form."""
    if not _WHOLE_RE.fullmatch(text):
        raise ValueError(
            f"{text!r} is not a duration: use a number and a unit (ns, us, ms, s, m, h), "
            "e.g. 90s, 5m or 1h30m"
        )
    seconds = sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _PART_RE.findall(text))
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """Shortest Go-style spelling of whole seconds and milliseconds: `1h30m`, `90ms`."""
    total_ms = round(value.total_seconds() * 1000)
    if total_ms == 0:
        return "0s"
    hours, rest = divmod(total_ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else ""]
    if seconds and millis:
        parts.append(f"{seconds}.{millis:03d}".rstrip("0") + "s")
    elif seconds:
        parts.append(f"{seconds}s")
    elif millis:
        parts.append(f"{millis}ms")
    return "".join(parts)


def _coerce(value: Any) -> Any:
    if isinstance(value, str):
        return parse_duration(value)
    return value


Duration = Annotated[
    timedelta,
    BeforeValidator(_coerce),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN}),
]
"""A `timedelta` read from and written as a Go-style duration string."""
