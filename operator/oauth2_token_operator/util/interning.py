"""One shared copy of the small values that thousands of stored tokens repeat.

Every stored token carries its key (issuer, subject, client, partition), its granted and
requested scopes and its resources. Tokens of one client repeat the same few values,
but each token arrives with copies of its own (parsed from a response, decoded from a
Secret's annotation), and a `frozenset` costs 216 bytes however small. Handing each
stored token the copy already seen (with slotted dataclasses and lone holders kept as
themselves) took the ledger and the store from 2.5 to 1.3 KB per token (BENCHMARKS.md,
"Seventh round").

`interned` remembers the most recently used `CAPACITY` distinct values, so values that
stop being used are eventually forgotten rather than kept forever; a value that is not
remembered (never seen, or forgotten) is simply kept as given.
"""

from __future__ import annotations

import functools
from collections.abc import Hashable
from typing import TypeVar

H = TypeVar("H", bound=Hashable)

CAPACITY = 4096
"""Distinct values remembered: far more than the distinct keys and scope sets of any
realistic installation, a few hundred kilobytes at most."""


@functools.lru_cache(maxsize=CAPACITY, typed=True)
def _canonical(value: Hashable) -> Hashable:
    return value


def interned(value: H) -> H:
    """An equal value seen recently, the same object each time; `value` itself if none.
    Equal values of different types (``1`` and ``1.0``) are kept apart, but not equal
    values inside equal containers: only strings, and containers of strings, are given."""
    return _canonical(value)  # type: ignore[return-value]


def intern_fields(instance: object, *names: str) -> None:
    """Replace each named field of a frozen dataclass `instance` by its `interned` value
    (from its `__post_init__`)."""
    for name in names:
        object.__setattr__(instance, name, interned(getattr(instance, name)))
