"""Rotated refresh tokens go back into the user's Secret before anything else.

The token manager stores a rotated refresh token (`put_refresh_token`) before it
returns the new access token; this store writes it to the Secret the request names at
that moment, so the operator publishes the access token only after the refresh token
is safe. A write that conflicts with another writer is retried from a fresh read; one
that cannot be made keeps the token in memory, is tried again later, and shows as
`RefreshTokenNotPersisted` on the request.

A Secret that does not grant the operator its use (no opt-in label), or of one of
Kubernetes' own types, is never written (`policies.secret_use`): the token is kept in
memory the same way, used for the next refresh (the rotated-away one, still in the
Secret, is never sent again: `manager.spent`), and the request says `SecretNotUsable`.
Only the key the spec names is written.
"""

from __future__ import annotations

import logging

from oauth2_token_operator.api.token_secret import decode_data, encode_data
from oauth2_token_operator.controller.shared.grants import parse_refresh_subject
from oauth2_token_operator.kube.api import Conflict, KubeApi, KubeApiError
from oauth2_token_operator.manager import InMemoryTokenStore, RefreshToken
from oauth2_token_operator.policies.secret_use import write_back_refusal

log = logging.getLogger(__name__)


class RefreshTokenWriter:
    def __init__(self, kube: KubeApi, *, attempts: int = 5) -> None:
        self._kube = kube
        self._attempts = attempts
        self.unpersisted: dict[str, RefreshToken] = {}
        """Subject → a rotated refresh token not yet in its Secret."""
        self.refused: dict[str, str] = {}
        """Subject → why its Secret may not be written (while it may not)."""

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
                refusal = write_back_refusal(secret, namespace, name)
                if refusal is not None:
                    return self._refused(subject, token, refusal)
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
            self.refused.pop(subject, None)
            log.error("a rotated refresh token could not be written back: %s", exc)
            return False
        self.unpersisted.pop(subject, None)
        self.refused.pop(subject, None)
        return True

    def _refused(self, subject: str, token: RefreshToken, refusal: str) -> bool:
        self.unpersisted[subject] = token
        if self.refused.get(subject) != refusal:  # said once, not at every retry
            log.warning("a rotated refresh token is kept in memory, not written back: %s", refusal)
        self.refused[subject] = refusal
        return False


class PersistingTokenStore(InMemoryTokenStore):
    """The manager's in-memory store, writing rotated refresh tokens to their Secrets."""

    def __init__(self, writer: RefreshTokenWriter) -> None:
        super().__init__()
        self.writer = writer

    async def put_refresh_token(self, token: RefreshToken) -> None:
        await super().put_refresh_token(token)
        await self.writer.persist(token)
