"""Revokes a token nobody holds any more (RFC 7009), bounded by a deadline.

The deadline keeps a deletion, and so a namespace deletion, from wedging when the
authorization server is unreachable: the outcome is an Event either way, and the
token is forgotten. A revocation endpoint whose circuit is open (`oauth2.breaker`) is not
called at all: the Event says so at once. A server with no revocation endpoint (Entra
ID, Google) is no failure: a Normal `RevocationUnsupported` Event says the token stays
valid until it expires, and nothing is sent.
"""

from __future__ import annotations

import asyncio
import logging

from pydantic import ValidationError

from oauth2_token_operator.api import OAuth2ClientSpec
from oauth2_token_operator.client_config import ClientConfigError
from oauth2_token_operator.controller.context import Body, OperatorContext, stored
from oauth2_token_operator.controller.ledger import Held
from oauth2_token_operator.controller.log_refs import about
from oauth2_token_operator.manager import DeleteResult, Revocation
from oauth2_token_operator.oauth2.client_auth import ClientConfig
from oauth2_token_operator.oauth2.errors import OAuth2Error
from oauth2_token_operator.oauth2.metadata import IssuerConfig
from oauth2_token_operator.util.rfc3339 import rfc3339

log = logging.getLogger(__name__)


async def revoke_held(
    ctx: OperatorContext,
    body: Body,
    held: Held,
    *,
    why: str,
    refresh_token: str | None = None,
) -> bool:
    """Revoke `held` (the token `body`'s request had) and forget it. True if revoked.

    With `refresh_token` (a refresh_token request deleted), that is revoked first
    (RFC 7009, `token_type_hint=refresh_token`): that ends the user's grant on every
    server, where revoking the access token alone does not on all (Keycloak keeps the
    session and its refresh tokens)."""
    issuer_url = held.token.key.issuer
    client_namespace, _, client_name = held.record.client.partition("/")
    client_body = stored(ctx.views.clients, (client_namespace, client_name))
    failure = None
    revoked = unsupported = False
    try:
        if client_body is None:
            raise ClientConfigError(
                "ClientNotFound", f"OAuth2Client {held.record.client} no longer exists"
            )
        spec = OAuth2ClientSpec.model_validate(client_body.get("spec") or {})
        issuer, client = await ctx.credentials.configs(
            client_namespace, client_name, spec, last_known=True
        )
        results = await asyncio.wait_for(
            _revoke(ctx, held, issuer, client, refresh_token),
            timeout=ctx.config.revocation_deadline,
        )
        revoked = all(r.revocation is Revocation.REVOKED for r in results)
        unsupported = all(r.revocation is Revocation.UNSUPPORTED for r in results)
        if not revoked and not unsupported:
            failure = "; ".join(str(r.error) for r in results if r.error is not None)
    except TimeoutError:
        failure = f"no answer within {ctx.config.revocation_deadline:.0f}s"
        # Counted as the transport's own deadline would be: once the endpoint's circuit
        # opens, deletions give up at once instead of each waiting out the deadline.
        server = ctx.manager.server(issuer, client)
        ctx.manager.breakers.record_no_answer(server.endpoint_key("revocation_endpoint"))
    except (ClientConfigError, OAuth2Error, ValidationError) as exc:
        failure = str(exc) if not isinstance(exc, ValidationError) else "the client is invalid"
    finally:
        await ctx.manager.store.delete_access_token(issuer_url, held.token.value)
    outcome = "revoked" if revoked else "unsupported" if unsupported else "failed"
    ctx.metrics.revocations.labels(outcome).inc()
    if revoked:
        ctx.post_event(body, type="Normal", reason="Revoked", message=f"token revoked ({why})")
    elif unsupported:
        expiry = held.token.expires_at
        until = "its expiry" if expiry is None else rfc3339(expiry)
        ctx.post_event(
            body,
            type="Normal",
            reason="RevocationUnsupported",
            message=f"token not revoked ({why}): the authorization server has no revocation"
            f" endpoint; the token stays valid until {until}",
        )
    else:
        ctx.post_event(
            body,
            type="Warning",
            reason="RevocationFailed",
            message=f"token not revoked ({why}): {failure}",
        )
        meta = body.get("metadata") or {}
        ref = about(str(body.get("kind") or ""), meta.get("namespace", ""), meta.get("name", ""))
        log.warning("revocation failed (%s): %s", why, failure, extra=ref)
    return revoked


async def _revoke(
    ctx: OperatorContext,
    held: Held,
    issuer: IssuerConfig,
    client: ClientConfig,
    refresh_token: str | None,
) -> list[DeleteResult]:
    results = []
    subject = held.token.key.subject
    if refresh_token is not None and isinstance(subject, str):
        results.append(
            await ctx.manager.delete_refresh_token(
                refresh_token, issuer, subject, client, revoke=True
            )
        )
    results.append(await ctx.manager.delete(held.token.value, issuer, client, revoke=True))
    return results
