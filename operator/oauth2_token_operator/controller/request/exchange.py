"""The `token_exchange` grant (RFC 8693): a subject token exchanged for this request's
token. The subject token is another request's token, as the operator holds it, or a
token of a ServiceAccount of the request's namespace, minted for it (the minting, its
opt-in and audience rules are `service_accounts`', as for `service_account_token`
client authentication). The decisions are `policies.exchange`'s."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from pydantic import ValidationError

from oauth2_token_operator.api import OAuth2ClientSpec
from oauth2_token_operator.api.accesstokenrequest import ServiceAccountSubject
from oauth2_token_operator.client_config import ClientConfigError
from oauth2_token_operator.controller.request.values import Request, Resolved
from oauth2_token_operator.controller.shared import grants
from oauth2_token_operator.controller.shared.context import OperatorContext
from oauth2_token_operator.controller.shared.ledger import Held, RequestKey
from oauth2_token_operator.kube.api import KubeApiError
from oauth2_token_operator.manager import AccessToken, partition_client
from oauth2_token_operator.manager.model import assess_validity
from oauth2_token_operator.oauth2.authorization_server import ACCESS_TOKEN_TYPE, JWT_TOKEN_TYPE
from oauth2_token_operator.oauth2.client_auth import ClientConfig
from oauth2_token_operator.oauth2.metadata import IssuerConfig
from oauth2_token_operator.policies.exchange import (
    SubjectFacts,
    exchange_refusal,
    subject_refusal,
)


async def exchange(
    ctx: OperatorContext,
    request: Request,
    resolved: Resolved,
    issuer: IssuerConfig,
    client: ClientConfig,
    *,
    min_remaining: float,
) -> AccessToken:
    """This request's token: a stored one for the same, else one exchanged for the
    subject token of the moment. `SubjectTokenUnavailable` when that token cannot be
    sent or was refused (a subject request's: the request then waits for its next
    token); `ClientConfigError` when no token of the ServiceAccount may be minted."""
    spec = resolved.spec.token_exchange
    assert spec is not None  # the grant's model requires it
    account = spec.subject_token_from.service_account_ref
    if account is not None:
        return await _exchange_service_account_token(
            ctx, request, resolved, issuer, client, account, min_remaining
        )
    assert spec.subject_token_from.access_token_request_ref is not None  # one of the two
    subject_key = (request.namespace, spec.subject_token_from.access_token_request_ref.name)
    held = ctx.ledger.current(subject_key)
    facts = SubjectFacts(
        name=subject_key[1],
        is_self=subject_key == request.key,
        exists=ctx.cache.request(subject_key) is not None,
        token_usable=None if held is None else _usable(ctx, held),
        same_server=None if held is None else await _same_server(ctx, held, issuer),
    )
    refusal = subject_refusal(facts)
    if refusal is not None:
        if refusal.retry:
            _await_next_token(ctx, request.key, subject_key, held)
        raise refusal
    assert held is not None  # no refusal means a valid token is held
    try:
        return await _exchanged(
            ctx, resolved, issuer, client, held.token.value, ACCESS_TOKEN_TYPE, min_remaining
        )
    except Exception as exc:
        refused = exchange_refusal(exc, f"AccessTokenRequest {subject_key[1]}")
        if refused is None:
            raise
        _await_next_token(ctx, request.key, subject_key, held)
        raise refused from None


async def _exchange_service_account_token(
    ctx: OperatorContext,
    request: Request,
    resolved: Resolved,
    issuer: IssuerConfig,
    client: ClientConfig,
    account: ServiceAccountSubject,
    min_remaining: float,
) -> AccessToken:
    """Exchanges a token of the ServiceAccount, minted for the audience (default: the
    client's issuer) only when an exchange is made. Whether it may be minted is checked
    before each issuance, even one a stored token serves (as client authentication's
    ServiceAccount is read before each)."""
    audience = account.audience or resolved.client_spec.issuer
    tokens = ctx.credentials.service_accounts
    key = (request.namespace, account.name, audience)
    await tokens.check(key)  # ClientConfigError: AudienceNotAllowed, not found, not usable

    async def minted() -> str:
        return await tokens.token(key)

    try:
        return await _exchanged(
            ctx, resolved, issuer, client, minted, JWT_TOKEN_TYPE, min_remaining
        )
    except Exception as exc:
        refused = exchange_refusal(
            exc, f"ServiceAccount {request.namespace}/{account.name}", service_account=True
        )
        if refused is None:
            raise
        raise refused from None


async def _exchanged(
    ctx: OperatorContext,
    resolved: Resolved,
    issuer: IssuerConfig,
    client: ClientConfig,
    subject_token: str | Callable[[], Awaitable[str]],
    kind: str,
    min_remaining: float,
) -> AccessToken:
    """Exchanges `subject_token` (of type `kind`) for the token `resolved` asks for."""
    identity = resolved.identity
    assert identity.subject is not None
    asked = grants.target(identity, min_remaining)
    return await ctx.manager.exchange(
        subject_token, issuer, client, subject=identity.subject, **asked, subject_token_type=kind
    )


def _usable(ctx: OperatorContext, held: Held) -> bool:
    return assess_validity(held.token, ctx.clock(), ctx.manager.config.validity).usable


async def _same_server(ctx: OperatorContext, held: Held, issuer: IssuerConfig) -> bool | None:
    """Whether `issuer` is the configuration of the server that issued `held` (that of
    the OAuth2Client it was obtained with, as it is now); `None` if that client is
    unusable now (then its request cannot renew either)."""
    client = partition_client(held.record.client)
    body = None if client is None else ctx.cache.client(client)
    if client is None or body is None:
        return None
    namespace, name = client
    try:
        spec = OAuth2ClientSpec.model_validate(body.get("spec") or {})
        subject_issuer, _ = await ctx.credentials.configs(namespace, name, spec)
    except (ValidationError, ClientConfigError, KubeApiError):
        return None
    return subject_issuer.cache_key == issuer.cache_key


def _await_next_token(
    ctx: OperatorContext, waiter: RequestKey, subject: RequestKey, held: Held | None
) -> None:
    """Poke `waiter` when the subject request holds a valid token other than `held`."""
    if ctx.awaited is not None:
        unwanted = None if held is None else grants.digest(held.token.value)
        ctx.awaited.awaiting_subject(waiter, subject, unwanted)


def subject_held(ctx: OperatorContext, key: RequestKey) -> None:
    """After a reconcile of `key`: if it holds a valid token, the exchanges waiting for
    one go on (`awaited`)."""
    if ctx.awaited is None or not ctx.awaited.awaits_subject(key):
        return
    held = ctx.ledger.current(key)
    if held is not None and _usable(ctx, held):
        ctx.awaited.subject_held(key, grants.digest(held.token.value))
