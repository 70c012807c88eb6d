"""Where the token manager keeps tokens: the ``TokenStore`` protocol and an in-memory store.

The operator implements the same protocol over Kubernetes Secrets.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import Generic, Protocol, TypeVar

from oauth2_token_operator.manager.model import (
    AccessToken,
    RefreshToken,
    TokenKey,
    TokenSpec,
)
from oauth2_token_operator.util.one_or_many import OneOrMany


class TokenStore(Protocol):
    """Storage for access and refresh tokens, for one ``TokenManager``.

    **Identity.** A token is identified by ``(issuer, value)``: ``put_*`` inserts or
    replaces the whole token with that identity, ``get_*``/``delete_*`` address it.
    ``delete_*`` returns whether the token was there; deleting a missing token is not
    an error. Tokens are immutable values: a store returns what was put, never a
    partly updated token.

    **Lookups.** ``find_access_tokens(key, spec)`` returns every stored access token of
    ``key`` that may match ``spec`` (``model.matches``); it may return more, because the
    manager checks every candidate again (including validity, which changes with time).
    Returning all tokens of ``key`` is correct; an index makes it fast (``get`` answered
    from the store costs one lookup). ``spec=None`` asks for every token of ``key``.

    **Concurrency.** Methods are called from one event loop, concurrently: ``get`` for
    different requests, ``introspect``, ``delete`` and pruning interleave freely. Each
    call must be atomic on its own (a put is seen whole or not at all; a find returns
    tokens as they were at some instant); no call needs to be atomic with another, and
    the last ``put`` of an identity wins. The manager itself serialises what must not
    interleave: token requests for the same key and spec (one request, shared by every
    caller), and everything that reads, rotates or deletes a subject's refresh tokens
    (one refresh per ``TokenKey`` at a time; ``delete_all`` takes the same lock), so a
    store never sees two rotations of one refresh token. That serialisation is within
    one process: a store shared by several managers needs one active writer (the
    operator runs one leader).

    **Pruning.** The manager deletes dead access tokens (inactive, past their expiry)
    it meets in lookups, and sweeps ``all_access_tokens`` at most every
    ``TokenManagerConfig.prune_interval`` when it stores a new token.
    """

    async def put_access_token(self, token: AccessToken) -> None: ...

    async def get_access_token(self, issuer: str, value: str) -> AccessToken | None: ...

    async def find_access_tokens(
        self, key: TokenKey, spec: TokenSpec | None = None
    ) -> list[AccessToken]: ...

    async def all_access_tokens(self) -> list[AccessToken]: ...

    async def delete_access_token(self, issuer: str, value: str) -> bool: ...

    async def put_refresh_token(self, token: RefreshToken) -> None: ...

    async def find_refresh_tokens(self, key: TokenKey) -> list[RefreshToken]: ...

    async def delete_refresh_token(self, issuer: str, value: str) -> bool: ...


T = TypeVar("T", AccessToken, RefreshToken)
_Id = tuple[str, str]


class _Indexed(Generic[T]):
    """Tokens by identity ``(issuer, value)``, plus secondary indexes: ``index_keys``
    names every index entry a token belongs to. All operations are O(1) per entry (many
    entries name a single token, e.g. the requested scopes of one request: `OneOrMany`)."""

    def __init__(self, index_keys: Callable[[T], Iterable[Hashable]]) -> None:
        self._index_keys: Callable[[T], Iterable[Hashable]] = index_keys
        self._by_id: dict[_Id, T] = {}
        self._index: OneOrMany[Hashable, _Id] = OneOrMany()

    def put(self, token: T) -> None:
        identity = (token.key.issuer, token.value)
        self.delete(identity)
        self._by_id[identity] = token
        for index_key in self._index_keys(token):
            self._index.add(index_key, identity)

    def get(self, identity: _Id) -> T | None:
        return self._by_id.get(identity)

    def find(self, index_key: Hashable) -> list[T]:
        return [self._by_id[identity] for identity in self._index.items_of(index_key)]

    def all(self) -> list[T]:
        return list(self._by_id.values())

    def delete(self, identity: _Id) -> bool:
        token = self._by_id.pop(identity, None)
        if token is None:
            return False
        for index_key in self._index_keys(token):
            self._index.discard(index_key, identity)
        return True


def _access_index_keys(token: AccessToken) -> Iterable[Hashable]:
    """Entries for: every token of a key; of a key and target (any scopes); and of a key,
    target and scope set, for the granted and for the requested scopes."""
    target = (token.key, token.resources, token.audience)
    yield token.key
    yield target
    yield (*target, token.scopes)
    if token.requested_scopes is not None and token.requested_scopes != token.scopes:
        yield (*target, token.requested_scopes)


def _access_lookup(key: TokenKey, spec: TokenSpec | None) -> Hashable:
    if spec is None:
        return key
    target = (key, spec.resources, spec.audience)
    return target if spec.scopes is None else (*target, spec.scopes)


class InMemoryTokenStore:
    """A dictionary store, indexed so that ``get`` answered from it does not depend on
    how many tokens it holds: for tests, benchmarks and embedding the library.
    Every method completes without awaiting, so each is atomic on the event loop."""

    def __init__(self) -> None:
        self._access: _Indexed[AccessToken] = _Indexed(_access_index_keys)
        self._refresh: _Indexed[RefreshToken] = _Indexed(lambda token: (token.key,))

    async def put_access_token(self, token: AccessToken) -> None:
        self._access.put(token)

    async def get_access_token(self, issuer: str, value: str) -> AccessToken | None:
        return self._access.get((issuer, value))

    async def find_access_tokens(
        self, key: TokenKey, spec: TokenSpec | None = None
    ) -> list[AccessToken]:
        return self._access.find(_access_lookup(key, spec))

    async def all_access_tokens(self) -> list[AccessToken]:
        return self._access.all()

    async def delete_access_token(self, issuer: str, value: str) -> bool:
        return self._access.delete((issuer, value))

    async def put_refresh_token(self, token: RefreshToken) -> None:
        self._refresh.put(token)

    async def find_refresh_tokens(self, key: TokenKey) -> list[RefreshToken]:
        return self._refresh.find(key)

    async def delete_refresh_token(self, issuer: str, value: str) -> bool:
        return self._refresh.delete((issuer, value))
