"""Adoption: after a restart, take over the token already in a request's Secret
instead of issuing a new one.

Whatever a tenant can write, it cannot choose where an adopted token goes. A Secret's
annotation and ownerReference are the tenant's to write (any user who may create
Secrets in the namespace), so the token's place in the shared store (its `TokenKey`:
issuer, subject, client id, and the OAuth2Client as partition: `manager.sharing`) comes
from the client the request resolves to now, never from the annotation. A record naming
another partition (another namespace's client, say) is not adopted: otherwise the token a
tenant planted would be handed to every request sharing that partition at its next
renewal, and revoked with that client's credentials.

Nor can a tenant hand the operator a token of its own choosing for its own partition (a
client it is allowed to share): only a Secret whose seal verifies is adopted, i.e. one
whose record and data the operator wrote there itself for this very request
(`token_secret`, "Why a seal").
"""

from __future__ import annotations

import logging

from pydantic import ValidationError

from oauth2_token_operator.api import AccessTokenRequestSpec, OAuth2ClientSpec
from oauth2_token_operator.api.token_secret import (
    TOKEN_ANNOTATION,
    TokenRecord,
    decode_data,
    is_sealed,
)
from oauth2_token_operator.controller.request.values import Request
from oauth2_token_operator.controller.shared import grants
from oauth2_token_operator.controller.shared.context import Body, OperatorContext
from oauth2_token_operator.controller.shared.ledger import Held
from oauth2_token_operator.manager import AccessToken, TokenKey, client_partition, token_key
from oauth2_token_operator.policies.identity import TokenIdentity

log = logging.getLogger(__name__)


async def adopt(
    ctx: OperatorContext, request: Request, secret: Body | None, key: TokenKey | None
) -> Held | None:
    """Take over the token already in the request's Secret, if it is sound and was
    obtained for `key` (where the request's token belongs now), and put it in the
    manager's store so identical requests share it."""
    if secret is None or key is None:
        return None
    held = held_from_secret(secret, key, seal_key=ctx.seal_key, owner_uid=request.uid)
    if held is not None:
        ctx.ledger.hold(request.key, held)
        await ctx.manager.adopt(held.token)
    return held


def key_of(identity: TokenIdentity) -> TokenKey:
    """Where a token of `identity` belongs in the manager's store (`manager.sharing`)."""
    return token_key(identity.issuer, identity.subject, identity.client_id, identity.client)


def key_for_spec(
    ctx: OperatorContext, request: Request, spec: AccessTokenRequestSpec | None
) -> TokenKey | None:
    """`key_of` for a request that cannot be resolved in full (being deleted): from its
    spec and its client as the informer sees it; `None` without a usable client."""
    if spec is None:
        return None
    client_namespace = spec.client_ref.namespace or request.namespace
    body = ctx.cache.client((client_namespace, spec.client_ref.name))
    if body is None:
        return None
    try:
        client = OAuth2ClientSpec.model_validate(body.get("spec") or {})
    except ValidationError:
        return None
    return token_key(
        client.issuer,
        grants.subject_of(spec, request.namespace),
        client.client_id,
        client_partition(client_namespace, spec.client_ref.name),
    )


def held_from_secret(
    secret: Body, key: TokenKey, *, seal_key: bytes, owner_uid: str
) -> Held | None:
    """The token in one of our Secrets, with its recorded facts, if the operator wrote it
    there for the request `owner_uid` (its seal verifies) and obtained it for `key`;
    `None` if unusable, written by anyone else, or obtained for anything else."""
    if not is_sealed(secret, seal_key, owner_uid):
        if TOKEN_ANNOTATION in (secret.get("metadata", {}).get("annotations") or {}):
            metadata = secret.get("metadata", {})
            log.warning(
                "Secret %s/%s holds a token record the operator did not seal: not adopted",
                metadata.get("namespace"), metadata.get("name"),
            )  # fmt: skip
        return None
    annotations = secret.get("metadata", {}).get("annotations") or {}
    record = TokenRecord.from_annotation(annotations.get(TOKEN_ANNOTATION, ""))
    data = decode_data(secret.get("data"))
    if record is None or not data or not data.get("access_token"):
        return None
    if token_key(record.issuer, record.subject, record.client_id, record.client) != key:
        return None  # obtained for another partition (or subject): never shared with this one
    token = AccessToken(
        value=data["access_token"],
        token_type=data.get("token_type") or "Bearer",
        key=key,
        scopes=frozenset((data.get("scope") or "").split()),
        obtained_at=record.issued_at,
        expires_at=record.expires_at,
        requested_scopes=None
        if record.requested_scopes is None
        else frozenset(record.requested_scopes),
        resources=frozenset(record.resources),
        audience=record.audience,
        confirmed_at=record.issued_at,
    )
    return Held(token=token, record=record)
