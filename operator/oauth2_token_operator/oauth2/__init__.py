"""The OAuth2 protocol core: discovery, client authentication, grants,
introspection and revocation over httpx. No Kubernetes in here."""

from oauth2_token_operator.oauth2.authorization_server import AuthorizationServer
from oauth2_token_operator.oauth2.client_auth import AuthMethod, ClientConfig
from oauth2_token_operator.oauth2.metadata import IssuerConfig, MetadataCache, ServerMetadata
from oauth2_token_operator.oauth2.responses import Introspection, TokenResponse
from oauth2_token_operator.oauth2.scopes import Scopes, format_scope, parse_scope
from oauth2_token_operator.oauth2.transport import HTTPTransport, RetryPolicy, Timeouts, TLSConfig

__all__ = [
    "AuthMethod",
    "AuthorizationServer",
    "ClientConfig",
    "HTTPTransport",
    "Introspection",
    "IssuerConfig",
    "MetadataCache",
    "RetryPolicy",
    "Scopes",
    "ServerMetadata",
    "TLSConfig",
    "Timeouts",
    "TokenResponse",
    "format_scope",
    "parse_scope",
]
