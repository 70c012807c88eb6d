"""Where the token manager keeps tokens: a protocol and an in-memory implementation.

The operator implements the same protocol over Kubernetes Secrets.
"""

from __future__ import annotations

from typing import Protocol

from oauth2_token_operator.manager.model import AccessToken, RefreshToken, TokenKey


class TokenStore(Protocol):
    async def put_access_token(self, token: AccessToken) -> None: ...

    async def get_access_token(self, issuer: str, value: str) -> AccessToken | None: ...

    async def find_access_tokens(self, key: TokenKey) -> list[AccessToken]: ...

    async def delete_access_token(self, issuer: str, value: str) -> bool: ...

    async def put_refresh_token(self, token: RefreshToken) -> None: ...

    async def find_refresh_tokens(self, key: TokenKey) -> list[RefreshToken]: ...

    async def delete_refresh_token(self, issuer: str, value: str) -> bool: ...


class InMemoryTokenStore:
    """A dictionary store: for tests, benchmarks and embedding the library."""

    def __init__(self) -> None:
        self._access: dict[tuple[str, str], AccessToken] = {}
        self._refresh: dict[tuple[str, str], RefreshToken] = {}

    async def put_access_token(self, token: AccessToken) -> None:
        self._access[(token.key.issuer, token.value)] = token

    async def get_access_token(self, issuer: str, value: str) -> AccessToken | None:
        return self._access.get((issuer, value))

    async def find_access_tokens(self, key: TokenKey) -> list[AccessToken]:
        return [token for token in self._access.values() if token.key == key]

    async def delete_access_token(self, issuer: str, value: str) -> bool:
        return self._access.pop((issuer, value), None) is not None

    async def put_refresh_token(self, token: RefreshToken) -> None:
        self._refresh[(token.key.issuer, token.value)] = token

    async def find_refresh_tokens(self, key: TokenKey) -> list[RefreshToken]:
        return [token for token in self._refresh.values() if token.key == key]

    async def delete_refresh_token(self, issuer: str, value: str) -> bool:
        return self._refresh.pop((issuer, value), None) is not None
