"""Resolution of an AccessTokenRequest: parse its spec, find its OAuth2Client in the
cluster cache, decide whether its namespace may use that client, read a `register` token's
source Secret, and name the token it wants (`TokenIdentity`). Anything that stops it
is raised as `Blocked` (looked at again when what it misses comes: see `awaited`)."""

from __future__ import annotations

from pydantic import ValidationError

from oauth2_token_operator.api import AccessTokenRequestSpec, OAuth2ClientSpec
from oauth2_token_operator.api.annotations import REVOKE_ALL_REQUESTED_AT
from oauth2_token_operator.client_config import ClientConfigError
from oauth2_token_operator.controller.request.values import (
    SECRET_CONFLICT,
    Blocked,
    Request,
    Resolved,
)
from oauth2_token_operator.controller.shared import grants
from oauth2_token_operator.controller.shared.awaited import REQUEST
from oauth2_token_operator.controller.shared.context import Body, OperatorContext
from oauth2_token_operator.manager import client_partition
from oauth2_token_operator.policies.access import client_access
from oauth2_token_operator.policies.identity import TokenIdentity


async def resolve(ctx: OperatorContext, request: Request) -> Resolved:
    try:
        spec = AccessTokenRequestSpec.model_validate(request.body.get("spec") or {})
    except ValidationError as exc:
        raise Blocked("InvalidSpec", _validation_message(exc)) from None
    secret_name = spec.secret_name or request.name
    source = grants.source_ref(spec)
    if source is not None and source.name == secret_name:
        raise Blocked(
            SECRET_CONFLICT,
            f"Secret {secret_name} is where the {spec.grant} grant reads its token from; the"
            " access token goes to a Secret of its own (choose another spec.secretName)",
        )
    client_ns = spec.client_ref.namespace or request.namespace
    client_body = ctx.cache.client((client_ns, spec.client_ref.name))
    if client_body is None:
        raise Blocked(
            "ClientNotFound", f"OAuth2Client {client_ns}/{spec.client_ref.name} not found"
        )
    try:
        client_spec = OAuth2ClientSpec.model_validate(client_body.get("spec") or {})
    except ValidationError as exc:
        raise Blocked("ClientInvalid", _validation_message(exc)) from None
    decision = client_access(
        client_namespace=client_ns,
        client_name=spec.client_ref.name,
        allowed=client_spec.allowed_namespaces,
        request_namespace=request.namespace,
        request_namespace_labels=ctx.cache.namespace_labels(request.namespace),
    )
    if not decision.allowed:
        raise Blocked(decision.reason, decision.message)
    subject = grants.subject_of(spec, request.namespace)
    source_digest = None
    source_value = None
    if spec.grant == "register":
        assert source is not None
        try:
            source_value = await grants.read_source(ctx.credentials, request.namespace, source)
        except ClientConfigError as exc:
            if ctx.awaited is not None:  # poked once the Secret has the token
                ctx.awaited.missing_reference((REQUEST, request.key), request.namespace, exc)
            raise Blocked(exc.reason, exc.message) from None
        source_digest = grants.digest(source_value)
    scopes = spec.scopes if spec.scopes is not None else client_spec.default_scopes
    if spec.grant == "register" and spec.scopes is None:
        scopes = None  # the seed's "any scopes"
    identity = TokenIdentity(
        issuer=client_spec.issuer,
        client_id=client_spec.client_id,
        client=client_partition(client_ns, spec.client_ref.name),
        grant=spec.grant,
        subject=subject,
        scopes=None if scopes is None else tuple(sorted(set(scopes))),
        resources=tuple(sorted(set(spec.resources or ()))),
        audience=spec.audience,
        source_digest=source_digest,
    )
    return Resolved(
        spec,
        client_ns,
        client_spec,
        identity,
        secret_name,
        source_value,
        ((client_body.get("metadata") or {}).get("annotations") or {}).get(REVOKE_ALL_REQUESTED_AT),
        source,
    )


def spec_or_none(body: Body) -> AccessTokenRequestSpec | None:
    try:
        return AccessTokenRequestSpec.model_validate(body.get("spec") or {})
    except ValidationError:
        return None


def _validation_message(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
        for error in exc.errors(include_input=False)
    )
