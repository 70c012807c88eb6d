"""The token manager: the seed library's AccessToken API over a ``TokenStore``."""

from oauth2_token_operator.manager.manager import (
    DeleteResult,
    Revocation,
    TokenKind,
    TokenManager,
    TokenManagerConfig,
)
from oauth2_token_operator.manager.model import (
    CLIENT_CREDENTIALS,
    AccessToken,
    RefreshToken,
    Subject,
    TokenClaims,
    TokenKey,
    TokenSpec,
    TokenState,
    Validity,
    ValidityPolicy,
    assess_validity,
)
from oauth2_token_operator.manager.sharing import client_partition, partition_client, token_key
from oauth2_token_operator.manager.store import InMemoryTokenStore, TokenStore

__all__ = [
    "CLIENT_CREDENTIALS",
    "AccessToken",
    "DeleteResult",
    "InMemoryTokenStore",
    "RefreshToken",
    "Revocation",
    "Subject",
    "TokenClaims",
    "TokenKey",
    "TokenKind",
    "TokenManager",
    "TokenManagerConfig",
    "TokenSpec",
    "TokenState",
    "TokenStore",
    "Validity",
    "ValidityPolicy",
    "assess_validity",
    "client_partition",
    "partition_client",
    "token_key",
]
