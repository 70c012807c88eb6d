"""Revoking tokens: when a request lets its token go (deleted, or no longer allowed its
client), when its client asks to revoke all, and the RFC 7009 call itself, bounded by a
deadline. What to do is decided in `policies.deletion` (revoke on delete or not, last
holder or not, every holder); this module gathers the facts and carries it out.

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
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import ValidationError

from oauth2_token_operator.api import AccessTokenRequestSpec, OAuth2ClientSpec
from oauth2_token_operator.api.token_secret import is_owned_by
from oauth2_token_operator.client_config import ClientConfigError
from oauth2_token_operator.controller.request.adoption import adopt, key_for_spec
from oauth2_token_operator.controller.request.facts import revocation_requested
from oauth2_token_operator.controller.request.resolution import spec_or_none
from oauth2_token_operator.controller.request.values import Request, Resolved
from oauth2_token_operator.controller.shared import grants
from oauth2_token_operator.controller.shared.context import Body, OperatorContext
from oauth2_token_operator.controller.shared.ledger import Held, RequestKey
from oauth2_token_operator.controller.shared.log_refs import about
from oauth2_token_operator.kube.api import KubeApiError
from oauth2_token_operator.manager import DeleteResult, Revocation, partition_client
from oauth2_token_operator.oauth2.client_auth import ClientConfig
from oauth2_token_operator.oauth2.errors import OAuth2Error
from oauth2_token_operator.oauth2.metadata import IssuerConfig
from oauth2_token_operator.policies.deletion import Cause, Disposal, TokenRelease, disposal
from oauth2_token_operator.policies.on_demand import requested_at
from oauth2_token_operator.util.rfc3339 import rfc3339

log = logging.getLogger(__name__)

SecretOf = Callable[[str, str], Body | None]
"""The newest known version of a Secret `(namespace, name)` (`RequestReconciler._secret`)."""

WHY = {
    Cause.DELETED: "the request was deleted",
    Cause.WITHDRAWN: "its namespace may no longer use the OAuth2Client",
    Cause.REVOKE_ALL: "revoke-all on its OAuth2Client",
}


@dataclass(frozen=True)
class Leaving:
    """A request letting its token go: its spec (if valid), its Secret's name, that
    Secret if the request owns it, and the token it holds, adopted from that Secret
    when the operator has none yet (a restart before the deletion)."""

    spec: AccessTokenRequestSpec | None
    secret_name: str
    secret: Body | None
    held: Held | None


async def leaving(ctx: OperatorContext, request: Request, secret_of: SecretOf) -> Leaving:
    spec = spec_or_none(request.body)
    secret_name = (spec.secret_name if spec else None) or request.name
    secret = secret_of(request.namespace, secret_name)
    if secret is not None and not is_owned_by(secret, request.uid):
        secret = None
    held = ctx.ledger.current(request.key) or await adopt(
        ctx, request, secret, key_for_spec(ctx, request, spec)
    )
    return Leaving(spec, secret_name, secret, held)


async def finalize(ctx: OperatorContext, request: Request, secret_of: SecretOf) -> str:
    """The request is being deleted: revoke its token unless another request holds it
    or revocation is off, then delete its Secret. Never raises for the server. Returns
    the Secret's name."""
    going = await leaving(ctx, request, secret_of)
    ctx.ledger.release(request.key)
    await _let_go(ctx, request, going, Cause.DELETED)
    if going.secret is not None:
        await ctx.kube.delete_secret(
            request.namespace, going.secret_name, uid=going.secret["metadata"]["uid"]
        )
    return going.secret_name


async def withdraw(ctx: OperatorContext, request: Request, secret_of: SecretOf) -> None:
    """The request's namespace may no longer use its client (its `allowedNamespaces`
    changed): the token is no longer served to it. Its Secret goes, and the token is
    revoked once no request that may still use it holds it."""
    going = await leaving(ctx, request, secret_of)
    if going.held is None and going.secret is None:
        return
    ctx.ledger.release(request.key)
    await _let_go(ctx, request, going, Cause.WITHDRAWN)
    if going.secret is not None:
        await ctx.kube.delete_secret(
            request.namespace, going.secret_name, uid=going.secret["metadata"]["uid"]
        )
        ctx.post_event(
            request.body, type="Warning", reason="TokenWithdrawn",
            message=f"Secret {going.secret_name} deleted: {WHY[Cause.WITHDRAWN]}",
        )  # fmt: skip


async def revoke_all(ctx: OperatorContext, client_key: RequestKey) -> None:
    """Revoke every token held by requests using the client (the seed's `delete_all`);
    the requests then hold an inactive token and get a new one when they can."""
    users = list(ctx.cache.requests_using(client_key))
    revoked: set[tuple[str, str]] = set()
    for key in users:
        held = ctx.ledger.current(key)
        body = ctx.cache.request(key)
        if held is None or body is None:
            continue
        token_id = (held.token.key.issuer, held.token.value)
        release = TokenRelease(Cause.REVOKE_ALL, held=True)
        if token_id not in revoked and disposal(release) is Disposal.REVOKE_EVERY_HOLDER:
            revoked.add(token_id)
            await revoke_for_every_holder(ctx, body, held, why=WHY[Cause.REVOKE_ALL])


async def revoke_if_requested(
    ctx: OperatorContext, request: Request, resolved: Resolved, held: Held, now: float
) -> Held:
    """The client's revoke-all annotation names a time after this token's issue:
    revoke it now (for every request sharing it), then the issuance chain replaces
    it. Revocation comes first because that is what was asked (say, after a leak);
    a token already revoked, or inactive, is not revoked again."""
    if held.token.active is False or not revocation_requested(resolved, held, now):
        return held
    why = "revoke-all was requested on its OAuth2Client"
    await revoke_for_every_holder(ctx, request.body, held, why=why)
    # The tokens it superseded are still valid at the server and still in the store,
    # where the replacement would find them: revoke them too, never publish them.
    asked = requested_at(resolved.revoke_all_requested_at, now)
    assert asked is not None  # revocation_requested said so
    for older in await ctx.manager.stored_tokens(held.token.key):
        if older.issued_at < asked and older.active is not False:
            superseded = Held(token=older, record=held.record)
            await revoke_for_every_holder(ctx, request.body, superseded, why=why)
    for key in ctx.ledger.holders_of(held):
        if key != request.key and ctx.request_scheduler is not None:
            ctx.request_scheduler.poke(key)
    return ctx.ledger.current(request.key) or held


async def revoke_for_every_holder(
    ctx: OperatorContext, body: Body, held: Held, *, why: str
) -> None:
    """Revoke `held` for every request holding it (they then want a new token). It is
    marked inactive for all of them and leaves the store before the first await, so
    that requests sharing it, reconciled meanwhile, neither revoke it again nor get
    it back from the store as their "new" token."""
    ctx.ledger.deactivate(held)
    await ctx.manager.forget(held.token)
    await revoke_held(ctx, body, held, why=why)


async def _let_go(ctx: OperatorContext, request: Request, going: Leaving, cause: Cause) -> None:
    """Carry out `policies.deletion` for a request that no longer holds its token."""
    held = going.held
    decision = disposal(_release(ctx, going, cause))
    if held is None or decision in (Disposal.NOTHING, Disposal.KEEP):
        return
    if decision is Disposal.FORGET:
        await ctx.manager.forget(held.token)
        return
    refresh_token = None
    if decision is Disposal.END_GRANT:
        assert going.spec is not None  # a refresh_token grant, so a valid spec
        refresh_token = await _grant_to_end(ctx, request, going.spec, held)
    await revoke_held(ctx, request.body, held, why=WHY[cause], refresh_token=refresh_token)


def _release(ctx: OperatorContext, going: Leaving, cause: Cause) -> TokenRelease:
    """The facts `policies.deletion` decides on, once the request is off the ledger."""
    held, spec = going.held, going.spec
    if held is None:
        return TokenRelease(cause, held=False)
    owner = partition_client(held.record.client)
    client_body = None if owner is None else ctx.cache.client(owner)
    refresh_grant = spec is not None and spec.grant == "refresh_token"
    return TokenRelease(
        cause,
        held=True,
        other_holders=ctx.ledger.is_held(held),
        request_revokes=spec.revoke_on_delete if spec is not None else None,
        client_revokes=None
        if client_body is None
        else bool((client_body.get("spec") or {}).get("revokeOnDelete", True)),
        refresh_grant=refresh_grant,
        # Looked for only when it matters: it walks every held token.
        subject_in_use=refresh_grant and ctx.ledger.holds_subject(held.token.key),
    )


async def _grant_to_end(
    ctx: OperatorContext, request: Request, spec: AccessTokenRequestSpec, held: Held
) -> str | None:
    """The refresh token to revoke to end a deleted refresh_token request's grant: the
    newest the operator holds, else the one in the user's Secret."""
    held_refresh = await ctx.manager.refresh_tokens(held.token.key)
    if held_refresh:
        return max(held_refresh, key=lambda rt: rt.obtained_at).value
    source = grants.source_ref(spec)
    assert source is not None
    try:
        return await grants.read_source(ctx.credentials, request.namespace, source)
    except (ClientConfigError, KubeApiError):
        return None  # the user's Secret is gone (or unreadable): the access token only


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
    owner = partition_client(held.record.client)
    client_body = None if owner is None else ctx.cache.client(owner)
    failure = None
    revoked = unsupported = False
    try:
        if owner is None or client_body is None:
            raise ClientConfigError(
                "ClientNotFound", f"OAuth2Client {held.record.client} no longer exists"
            )
        spec = OAuth2ClientSpec.model_validate(client_body.get("spec") or {})
        issuer, client = await ctx.credentials.configs(*owner, spec, last_known=True)
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
        await ctx.manager.forget(held.token)
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
