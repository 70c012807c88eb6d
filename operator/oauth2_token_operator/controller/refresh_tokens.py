"""Rotated refresh tokens go back into the user's Secret before anything else.

The token manager stores a rotated refresh token (`put_refresh_token`) before it
returns the new access token; this store writes it to the Secret the request names at
that moment, so the operator publishes the access token only after the refresh token
is safe. A write that conflicts with another writer is retried from a fresh read; one
that cannot be made keeps the token in memory, is tried again later, and shows as
`RefreshTokenNotPersisted` on the request.
"""

from __future__ import annotations

import logging

from oauth2_token_operator.controller.grants import parse_refresh_subject
from oauth2_token_operator.kube.api import Conflict, KubeApi, KubeApiError
from oauth2_token_operator.manager import InMemoryTokenStore, RefreshToken
from oauth2_token_operator.token_secret import decode_data, encode_data

log = logging.getLogger(__name__)


class RefreshTokenWriter:
    def __init__(self, kube: KubeApi, *, attempts: int = 5) -> None:
        self._kube = kube
        self._attempts = attempts
        self.unpersisted: dict[str, RefreshToken] = {}
        """Subject → a rotated refresh token not yet in its Secret."""

    async def persist(self, token: RefreshToken) -> bool:
        """Write `token` into its subject's Secret key; False if it could not be."""
        subject = str(token.key.subject)
        location = parse_refresh_subject(subject)
        if location is None:
            return True
        namespace, name, key = location
        try:
            for _ in range(self._attempts):
                secret = await self._kube.read_secret(namespace, name)
                if secret is None:
                    raise KubeApiError(f"Secret {namespace}/{name} not found")
                data = decode_data(secret.get("data")) or {}
                if data.get(key) == token.value:
                    break
                secret["data"] = {**(secret.get("data") or {}), **encode_data({key: token.value})}
                try:
                    await self._kube.replace_secret(namespace, secret)
                    break
                except Conflict:
                    continue
            else:
                raise KubeApiError(f"Secret {namespace}/{name}: conflicts on every write")
        except KubeApiError as exc:
            self.unpersisted[subject] = token
            log.error("a rotated refresh token could not be written back: %s", exc)
            return False
        self.unpersisted.pop(subject, None)
        return True


class PersistingTokenStore(InMemoryTokenStore):
    """The manager's in-memory store, writing rotated refresh tokens to their Secrets."""

    def __init__(self, writer: RefreshTokenWriter) -> None:
        super().__init__()
        self.writer = writer

    async def put_refresh_token(self, token: RefreshToken) -> None:
        await super().put_refresh_token(token)
        await self.writer.persist(token)
