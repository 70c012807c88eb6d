"""The JWS algorithms a client assertion may be signed with (RFC 7523, RFC 7518).

A leaf: the client configuration (`client_auth`) checks a client's choice against them,
and the signing code (`client_assertion`, loaded only when a client signs) picks its key
types by them, without either importing the other for it."""

HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")
"""client_secret_jwt."""
ASYMMETRIC_ALGORITHMS = (
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
)  # fmt: skip
"""private_key_jwt."""
