"""Refresh tokens the manager has seen used up, so it never sends one again.

With rotation (RFC 9700 §4.14.2) a refresh token works once: the server answers with a
successor, and a second use of the predecessor is a replay that servers such as
oidc-provider and Keycloak punish by revoking the whole grant. A copy of the
predecessor can come back from outside the manager (a Secret read from a cache, a
Secret written back late), and it must then be ignored, not stored as a "new" refresh
token. The same holds for a refresh token the server refused: sending it again cannot
help.

Only digests are kept, never the tokens, and only the last few per subject: a stale
copy is at most a rotation or two old.
"""

from __future__ import annotations

import hashlib
from collections import deque

from oauth2_token_operator.manager.model import TokenKey

KEPT_PER_SUBJECT = 16


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:32]


class SpentRefreshTokens:
    def __init__(self, kept_per_subject: int = KEPT_PER_SUBJECT) -> None:
        self._kept = kept_per_subject
        self._by_key: dict[TokenKey, deque[str]] = {}

    def add(self, key: TokenKey, value: str) -> None:
        spent = self._by_key.setdefault(key, deque(maxlen=self._kept))
        digest = _digest(value)
        if digest not in spent:
            spent.append(digest)

    def __contains__(self, item: tuple[TokenKey, str]) -> bool:
        key, value = item
        spent = self._by_key.get(key)
        return spent is not None and _digest(value) in spent

    def forget(self, key: TokenKey) -> None:
        self._by_key.pop(key, None)

    def __len__(self) -> int:
        return len(self._by_key)
