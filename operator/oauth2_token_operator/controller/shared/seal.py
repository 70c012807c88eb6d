"""The seal key: the per-installation secret with which the operator seals the token
Secrets it writes (`token_secret.seal`), so that it adopts after a restart only what it
wrote itself.

The key lives in one Secret in the operator's own namespace (`--seal-secret`), which no
namespace tenant can read or write. The first replica to start creates it; every later
start and every other replica reads the same key, so adoption survives restarts and
leader changes. Deleting the Secret rotates the key: the tokens sealed with the old one
are then re-issued once each (none is revoked early; they expire).

Why not `managedFields` instead: the field manager's name is whatever the writer sends,
so "last written by the operator's field manager" is a claim any tenant can make.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets

from oauth2_token_operator.kube.api import Conflict, JsonObject, KubeApi, KubeApiError

log = logging.getLogger(__name__)

SEAL_KEY = "key"
"""The data key holding the seal key (32 random bytes)."""
KEY_BYTES = 32


class SealKeyError(Exception):
    """The seal key Secret exists but holds no usable key."""


async def load_seal_key(
    kube: KubeApi, namespace: str, name: str, *, retry_delay: float = 1.0
) -> bytes:
    """The installation's seal key, created in `namespace/name` if there is none yet.
    While the API server does not answer (or answers 5xx/429), it is asked again, as the
    informers' first listing waits for it; a refusal (403, say) fails the start."""
    while True:
        try:
            return await _load(kube, namespace, name)
        except KubeApiError as exc:
            if exc.status is not None and exc.status < 500 and exc.status != 429:
                raise
            log.warning("The seal key Secret cannot be read yet (%s); trying again", exc)
            await asyncio.sleep(exc.retry_after or retry_delay)
            retry_delay = min(2 * retry_delay, 30.0)


async def _load(kube: KubeApi, namespace: str, name: str) -> bytes:
    secret = await kube.read_secret(namespace, name)
    if secret is None:
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {
                    "app.kubernetes.io/name": "oauth2-token-operator",
                    "app.kubernetes.io/component": "seal-key",
                },
            },
            "data": {SEAL_KEY: base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()},
        }
        try:
            secret = await kube.create_secret(namespace, body)
            log.info("Created the seal key Secret %s/%s", namespace, name)
        except Conflict:  # another replica created it first
            secret = await kube.read_secret(namespace, name)
    return _key_of(secret, namespace, name)


def _key_of(secret: JsonObject | None, namespace: str, name: str) -> bytes:
    data = (secret or {}).get("data")
    encoded = data.get(SEAL_KEY) if isinstance(data, dict) else None
    try:
        key = base64.b64decode(str(encoded), validate=True) if encoded else b""
    except ValueError:
        key = b""
    if len(key) < KEY_BYTES:
        raise SealKeyError(
            f"Secret {namespace}/{name} holds no seal key of {KEY_BYTES} bytes under "
            f"{SEAL_KEY!r}; delete it to have a new one made (tokens are then re-issued once)"
        )
    return key
