"""A key → items mapping that keeps a lone item as itself.

Most of the operator's per-token entries name one item: the one request holding a
token, the one token under a request's own requested scopes. A set or dict costs some
200 bytes however small, so an entry holds its item itself until a second one comes,
and an insertion-ordered dict of them from then on (and its item again once only one is
left). Items must be hashable and never dicts themselves.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V", bound=Hashable)


class OneOrMany(Generic[K, V]):
    def __init__(self) -> None:
        self._entries: dict[K, V | dict[V, None]] = {}

    def add(self, key: K, item: V) -> None:
        entry = self._entries.setdefault(key, item)
        if isinstance(entry, dict):
            entry[item] = None
        elif entry != item:
            self._entries[key] = {entry: None, item: None}

    def discard(self, key: K, item: V) -> None:
        entry = self._entries.get(key)
        if isinstance(entry, dict):
            entry.pop(item, None)
            if len(entry) == 1:
                self._entries[key] = next(iter(entry))
        elif entry == item:
            del self._entries[key]

    def items_of(self, key: K) -> list[V]:
        """The items under `key`, in the order they came."""
        entry = self._entries.get(key)
        if entry is None:
            return []
        return list(entry) if isinstance(entry, dict) else [entry]

    def count(self, key: K) -> int:
        entry = self._entries.get(key)
        if entry is None:
            return 0
        return len(entry) if isinstance(entry, dict) else 1

    def __contains__(self, key: object) -> bool:
        return key in self._entries
