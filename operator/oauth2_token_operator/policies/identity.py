"""Which token a request wants: the parts that decide sharing and re-issuance. Pure."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass


@dataclass(frozen=True)
class TokenIdentity:
    """Requests with equal identities share one token (the seed's `get` semantics)."""

    issuer: str
    client_id: str
    client: str
    """`namespace/name` of the OAuth2Client."""
    grant: str
    subject: str | None
    """`None` for client credentials; the refresh or registered token's Secret otherwise."""
    scopes: tuple[str, ...] | None
    """Sorted; `None`: any scopes (register without `scopes`)."""
    resources: tuple[str, ...]
    audience: str | None
    source_digest: str | None = None
    """For `register`: a digest of the registered token (a new one is registered anew)."""

    def fingerprint(self) -> str:
        """Stable across processes and versions of Python (written into Secrets)."""
        canonical = json.dumps(
            [
                self.issuer,
                self.client_id,
                self.client,
                self.grant,
                self.subject,
                self.scopes,
                self.resources,
                self.audience,
                self.source_digest,
            ],
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode()).hexdigest()[:32]
