"""Adoption: after a restart, take over the token already in a request's Secret
instead of issuing a new one."""

from __future__ import annotations

from oauth2_token_operator.controller.context import Body, OperatorContext
from oauth2_token_operator.controller.ledger import Held
from oauth2_token_operator.controller.request_types import Request
from oauth2_token_operator.manager import CLIENT_CREDENTIALS, AccessToken, TokenKey
from oauth2_token_operator.token_secret import TOKEN_ANNOTATION, TokenRecord, decode_data


async def adopt(ctx: OperatorContext, request: Request, secret: Body | None) -> Held | None:
    """Take over the token already in the request's Secret, if it is ours and sound,
    and put it in the manager's store so identical requests share it."""
    held = held_from_secret(secret) if secret is not None else None
    if held is not None:
        ctx.ledger.hold(request.key, held)
        await ctx.manager.store.put_access_token(held.token)
    return held


def held_from_secret(secret: Body) -> Held | None:
    """The token in one of our Secrets, with its recorded facts; `None` if unusable."""
    annotations = secret.get("metadata", {}).get("annotations") or {}
    record = TokenRecord.from_annotation(annotations.get(TOKEN_ANNOTATION, ""))
    data = decode_data(secret.get("data"))
    if record is None or not data or not data.get("access_token"):
        return None
    token = AccessToken(
        value=data["access_token"],
        token_type=data.get("token_type") or "Bearer",
        key=TokenKey(
            record.issuer,
            CLIENT_CREDENTIALS if record.subject is None else record.subject,
            record.client_id,
            record.client,  # the token partition: its OAuth2Client
        ),
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
