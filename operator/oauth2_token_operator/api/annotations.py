"""The annotations users set on our objects to ask for something (documented in the
README's "Annotations" table). Times are RFC 3339; see `policies.on_demand` for how a
time is read."""

from oauth2_token_operator.api.crd import GROUP

RENEW_REQUESTED_AT = f"{GROUP}/renew-requested-at"
"""On an AccessTokenRequest: a token issued after this time (`renew now`)."""

REVOKE_ALL_REQUESTED_AT = f"{GROUP}/revoke-all-requested-at"
"""On an OAuth2Client: revoke every token it obtained before this time; the requests
holding them get new ones (the seed's `delete_all`, on a live client)."""

REVOKE_ALL_ON_DELETE = f"{GROUP}/revoke-all-on-delete"
"""On an OAuth2Client, `"true"`: it may be deleted while requests use it; their tokens
are revoked first."""
