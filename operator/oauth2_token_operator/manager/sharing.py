"""Which token requests may share a token: the partition rule, in one place.

A stored access token is handed to every caller whose request has the same ``TokenKey``
and matches what the token was obtained for (``model.matches``: scopes, resources,
audience). The key is built here and nowhere else, by the manager for its own calls and
for the operator (adoption, deletion), so "who may share" has one answer:

- the same **issuer**: a token is only good where it was issued;
- the same **subject**: whose token it is (``CLIENT_CREDENTIALS`` for the client's own;
  for the operator, the Secret key holding a refresh or registered token, or the request
  whose token is exchanged). ``None`` stands for the client itself;
- the same **client_id**: the client the server issued it to;
- the same **partition**: who configured that client. A configuration with the right
  client_id but other credentials (another tenant's OAuth2Client object) is never handed
  another owner's token, nor revokes it with its own credentials. ``""``: one owner
  (the library used alone). The operator's partition is one OAuth2Client object,
  ``client_partition(namespace, name)``; ``partition_client`` reads it back.
"""

from __future__ import annotations

from oauth2_token_operator.manager.model import CLIENT_CREDENTIALS, Subject, TokenKey


def token_key(issuer: str, subject: Subject | None, client_id: str, partition: str) -> TokenKey:
    """Where a token of this identity belongs: tokens are shared only within one key."""
    return TokenKey(
        issuer,
        CLIENT_CREDENTIALS if subject is None else subject,
        client_id,
        partition,
    )


def client_partition(namespace: str, name: str) -> str:
    """The partition of the OAuth2Client `namespace/name`: tokens are shared per object."""
    return f"{namespace}/{name}"


def partition_client(partition: str) -> tuple[str, str] | None:
    """The OAuth2Client `(namespace, name)` whose partition this is (`client_partition`'s
    inverse); `None` for a value no OAuth2Client has (``""``, the library's, say)."""
    namespace, slash, name = partition.partition("/")
    if not slash or not namespace or not name or "/" in name:
        return None
    return namespace, name
