"""Which request holds which token: shared tokens are revoked only when their last
holder lets go. In memory; rebuilt from the Secrets at start (adoption)."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from dataclasses import dataclass

from oauth2_token_operator.manager import AccessToken
from oauth2_token_operator.token_secret import TokenRecord

RequestKey = tuple[str, str]
"""`(namespace, name)` of an AccessTokenRequest."""


@dataclass(frozen=True)
class Held:
    token: AccessToken
    record: TokenRecord


class TokenLedger:
    def __init__(self) -> None:
        self._current: dict[RequestKey, Held] = {}
        self._holders: defaultdict[tuple[str, str], set[RequestKey]] = defaultdict(set)

    def current(self, key: RequestKey) -> Held | None:
        return self._current.get(key)

    def hold(self, key: RequestKey, held: Held) -> Held | None:
        """Make `held` the request's token; return the one it held before, if any."""
        previous = self._current.get(key)
        self._current[key] = held
        self._holders[_token_id(held)].add(key)
        if previous is not None and _token_id(previous) != _token_id(held):
            self._drop_holder(previous, key)
            return previous
        return None

    def release(self, key: RequestKey) -> Held | None:
        """The request no longer holds a token (deleted); return what it held."""
        previous = self._current.pop(key, None)
        if previous is not None:
            self._drop_holder(previous, key)
        return previous

    def deactivate(self, held: Held) -> None:
        """The token was revoked: every request holding it now holds it as inactive
        (and so wants a new one), without revoking it again."""
        inactive = Held(token=dataclasses.replace(held.token, active=False), record=held.record)
        for key in self.holders_of(held):
            self._current[key] = inactive

    def is_held(self, held: Held) -> bool:
        """Does any request still hold this token?"""
        return bool(self._holders.get(_token_id(held)))

    def holders(self, held: Held) -> int:
        return len(self._holders.get(_token_id(held), ()))

    def holders_of(self, held: Held) -> list[RequestKey]:
        """The requests holding this token."""
        return list(self._holders.get(_token_id(held), ()))

    def __len__(self) -> int:
        return len(self._current)

    def _drop_holder(self, held: Held, key: RequestKey) -> None:
        token_id = _token_id(held)
        holders = self._holders.get(token_id)
        if holders is not None:
            holders.discard(key)
            if not holders:
                del self._holders[token_id]


def _token_id(held: Held) -> tuple[str, str]:
    return (held.token.key.issuer, held.token.value)
