"""When an on-demand annotation (`renew-requested-at`, `revoke-all-requested-at`) asks
for something. Pure: the annotation's text, the token's issue time and the clock.

The annotation holds a time, not a flag, so the request is stateless and idempotent: it
asks for a token issued after that time, and a token issued since answers it. A time in
the future asks for nothing until it comes (acting on it earlier would issue a token
that is already too old, again and again until then); unreadable text asks for nothing.
"""

from __future__ import annotations

from oauth2_token_operator.util.rfc3339 import parse_rfc3339


def requested_at(value: str | None, now: float) -> float | None:
    """The time the annotation asks from, once that time has come; else `None`."""
    when = _parse(value)
    return when if when is not None and when <= now else None


def pending_at(value: str | None, now: float) -> float | None:
    """The annotation's time while it is still in the future (a time to wake up at)."""
    when = _parse(value)
    return when if when is not None and when > now else None


def asks_for_newer(value: str | None, issued_at: float, now: float) -> bool:
    """Does the annotation ask for a token newer than one issued at `issued_at`?"""
    when = requested_at(value, now)
    return when is not None and when > issued_at


def _parse(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return parse_rfc3339(value.strip())
    except ValueError:
        return None
