"""Which request holds which token: shared tokens are revoked only when their last
holder lets go. In memory; rebuilt from the Secrets at start (adoption)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from oauth2_token_operator.api.token_secret import TokenRecord
from oauth2_token_operator.kube.api import ObjectKey
from oauth2_token_operator.manager import AccessToken, TokenKey
from oauth2_token_operator.util.one_or_many import OneOrMany

RequestKey = ObjectKey
"""`(namespace, name)` of an AccessTokenRequest."""


@dataclass(frozen=True, slots=True)
class Held:
    token: AccessToken
    record: TokenRecord


class TokenLedger:
    def __init__(self) -> None:
        self._current: dict[RequestKey, Held] = {}
        self._holders: OneOrMany[tuple[str, str], RequestKey] = OneOrMany()
        """Who holds each token (most tokens: one request)."""

    def current(self, key: RequestKey) -> Held | None:
        return self._current.get(key)

    def hold(self, key: RequestKey, held: Held) -> Held | None:
        """Make `held` the request's token; return the one it held before, if any."""
        previous = self._current.get(key)
        self._current[key] = held
        token_id = _token_id(held)
        self._holders.add(token_id, key)
        if previous is not None and _token_id(previous) != token_id:
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

    def holds_subject(self, key: TokenKey) -> bool:
        """Does any request hold a token of this subject (say, of one refresh token)?"""
        return any(held.token.key == key for held in self._current.values())

    def is_held(self, held: Held) -> bool:
        """Does any request still hold this token?"""
        return _token_id(held) in self._holders

    def holders(self, held: Held) -> int:
        return self._holders.count(_token_id(held))

    def holders_of(self, held: Held) -> list[RequestKey]:
        """The requests holding this token."""
        return self._holders.items_of(_token_id(held))

    def __len__(self) -> int:
        return len(self._current)

    def _drop_holder(self, held: Held, key: RequestKey) -> None:
        self._holders.discard(_token_id(held), key)


def _token_id(held: Held) -> tuple[str, str]:
    return (held.token.key.issuer, held.token.value)
