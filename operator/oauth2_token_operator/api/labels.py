"""The labels users put on their own objects to tell the operator something."""

from oauth2_token_operator.api.references import GROUP

USABLE_BY_OPERATOR = f"{GROUP}/usable-by-operator"
"""On a Secret that an OAuth2Client or AccessTokenRequest references, `"true"`: the
operator may use it. Without it the operator reads none of its data and writes nothing
to it (the object says `SecretNotUsable`).

Naming a Secret in a spec is no proof of the right to use it: whoever may create
OAuth2Clients or AccessTokenRequests in a namespace could otherwise have any Secret
there sent as a client secret to a server of their choice, sign a JWT with any key,
copy any token into a Secret they can read, or have a refresh token written into any
Secret. The label is the grant, given by whoever may write the Secret (External Secrets
asks the same of the Secrets its webhook provider reads). A request's `secretTemplate`
cannot set it on the token Secret the operator writes."""

USABLE_VALUE = "true"
"""The value of `USABLE_BY_OPERATOR` that grants use (any other grants nothing)."""
