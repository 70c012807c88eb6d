"""Calls to one authorization server, as one client: grants, introspection, revocation."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping

import httpx

from oauth2_token_operator.oauth2.breaker import BreakerPolicy, CircuitBreakers, server_key
from oauth2_token_operator.oauth2.client_auth import ClientAuthenticator, ClientConfig
from oauth2_token_operator.oauth2.errors import (
    KNOWN_ERROR_CODES,
    EndpointNotAdvertisedError,
    MalformedResponseError,
    OAuth2Error,
    OAuth2ErrorResponse,
    UnexpectedStatusError,
    error_response,
)
from oauth2_token_operator.oauth2.metadata import IssuerConfig, MetadataCache, ServerMetadata
from oauth2_token_operator.oauth2.responses import (
    Introspection,
    TokenResponse,
    parse_introspection,
    parse_token_response,
)
from oauth2_token_operator.oauth2.scopes import Scopes, format_scope
from oauth2_token_operator.oauth2.transport import OAuth2Transport, Replay, parse_retry_after

TokenTypeHint = str  # "access_token" | "refresh_token" | an extension value (RFC 7009 §2.1)
ACCESS_TOKEN_HINT: TokenTypeHint = "access_token"  # noqa: S105 - a hint name, not a secret
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105 - a grant name
"""RFC 8693 §2.1 `grant_type`."""
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105 - a type name
"""RFC 8693 §3: the token type identifier of an OAuth 2.0 access token."""
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"  # noqa: S105 - a type name
"""RFC 8693 §3: the token type identifier of a JWT (RFC 7519), such as a Kubernetes
ServiceAccount token."""


class AuthorizationServer:
    """One client's view of one authorization server.

    The same client authentication serves the token, introspection and
    revocation endpoints. With ``tls_client_auth`` the RFC 8705 §5
    ``mtls_endpoint_aliases`` are used when the server advertises them. A call to an
    endpoint whose circuit is open in ``breakers`` fails at once (``CircuitOpenError``),
    and every call's outcome is recorded there (none given: never open).
    """

    def __init__(
        self,
        issuer: IssuerConfig,
        client: ClientConfig,
        *,
        transport: OAuth2Transport,
        metadata_cache: MetadataCache,
        clock: Callable[[], float] = time.time,
        breakers: CircuitBreakers | None = None,
    ) -> None:
        self.issuer = issuer
        self.client = client
        self._transport = transport
        self._metadata_cache = metadata_cache
        self._clock = clock
        self._breakers = (
            CircuitBreakers(BreakerPolicy(failures=0)) if breakers is None else breakers
        )
        self._authenticator = ClientAuthenticator(client, clock=clock)
        self._tls = client.tls(issuer.ca_pem)
        self._mtls = client.uses_mtls
        """RFC 8705 endpoint aliases apply: asked on every call, the same for all."""

    async def metadata(self) -> ServerMetadata:
        return await self._metadata_cache.get(self.issuer)

    def endpoint_key(self, endpoint: str = "token_endpoint") -> str:
        """The server (``breaker.server_key``) that calls to `endpoint` go to, as far as
        is known without a call: the metadata cached, else the caller's override, else
        the issuer itself (before the first discovery)."""
        cached = self._metadata_cache.cached(self.issuer)
        url = cached.endpoint(endpoint, mtls=self._mtls) if cached else None
        override = self.issuer.metadata_overrides.get(endpoint)
        return server_key(url or (override if isinstance(override, str) else self.issuer.issuer))

    async def client_credentials(
        self,
        scopes: Scopes | None = None,
        *,
        resources: Iterable[str] = (),
        audience: str | None = None,
    ) -> TokenResponse:
        """RFC 6749 §4.4, with RFC 8707 ``resource`` and the common ``audience`` extension."""
        form = _with_target({"grant_type": "client_credentials"}, scopes, resources, audience)
        body = await self._call("token_endpoint", form, Replay.SAFE)
        return parse_token_response(
            body, endpoint="token_endpoint", requested_scopes=scopes, now=self._clock()
        )

    async def refresh(
        self,
        refresh_token: str,
        *,
        scopes: Scopes | None = None,
        resources: Iterable[str] = (),
    ) -> TokenResponse:
        """RFC 6749 §6. ``scopes`` narrows the grant; ``None`` keeps the original scope.

        A rotated refresh token comes back in ``TokenResponse.refresh_token``:
        the caller must persist it before anything else. The request is never
        replayed after an unclear outcome, since a server that rotates refresh
        tokens treats a replay as token theft.
        """
        form: dict[str, str | list[str]] = {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
        }
        if scopes:
            form["scope"] = format_scope(scopes)
        if resource_list := list(resources):
            form["resource"] = resource_list
        body = await self._call("token_endpoint", form, Replay.UNSAFE)
        return parse_token_response(
            body, endpoint="token_endpoint", requested_scopes=scopes, now=self._clock()
        )

    async def token_exchange(
        self,
        subject_token: str,
        *,
        subject_token_type: str = ACCESS_TOKEN_TYPE,
        scopes: Scopes | None = None,
        resources: Iterable[str] = (),
        audience: str | None = None,
    ) -> TokenResponse:
        """RFC 8693 §2.1: an access token for ``subject_token`` (an access token unless
        ``subject_token_type`` says otherwise), for ``audience``/``resources``, narrowed
        to ``scopes``. Always asks for an access token (``requested_token_type``) and
        refuses an answer whose ``issued_token_type`` is anything else (§2.2.1): what
        comes back is published as an access token. A refresh token in the answer is
        ignored. Replayed like client_credentials: an exchange consumes nothing.
        """
        form = _with_target(
            {
                "grant_type": TOKEN_EXCHANGE,
                "subject_token": subject_token,
                "subject_token_type": subject_token_type,
                "requested_token_type": ACCESS_TOKEN_TYPE,
            },
            scopes,
            resources,
            audience,
        )
        body = await self._call("token_endpoint", form, Replay.SAFE)
        issued = body.get("issued_token_type") if isinstance(body, dict) else None
        if issued is not None and issued != ACCESS_TOKEN_TYPE:
            raise MalformedResponseError(
                "the token exchange answer's issued_token_type is not an access token",
                endpoint="token_endpoint",
            )
        response = parse_token_response(
            body, endpoint="token_endpoint", requested_scopes=scopes, now=self._clock()
        )
        return dataclasses.replace(response, refresh_token=None)

    async def introspect(
        self, token: str, *, token_type_hint: TokenTypeHint | None = ACCESS_TOKEN_HINT
    ) -> Introspection:
        """RFC 7662 §2.1."""
        form: dict[str, str | list[str]] = {"token": token}
        if token_type_hint:
            form["token_type_hint"] = token_type_hint
        body = await self._call("introspection_endpoint", form, Replay.SAFE)
        return parse_introspection(body, endpoint="introspection_endpoint")

    async def revoke(
        self, token: str, *, token_type_hint: TokenTypeHint | None = ACCESS_TOKEN_HINT
    ) -> None:
        """RFC 7009 §2.1. Success also for a token the server no longer knows (§2.2).

        A persisting 503 raises ``UnexpectedStatusError`` with ``retry_after``: the
        token still exists and the caller should try again later (§2.2.1).
        """
        form: dict[str, str | list[str]] = {"token": token}
        if token_type_hint:
            form["token_type_hint"] = token_type_hint
        await self._call("revocation_endpoint", form, Replay.SAFE, expect_json=False)

    async def _call(
        self,
        endpoint: str,
        form: Mapping[str, str | list[str]],
        replay: Replay,
        *,
        expect_json: bool = True,
    ) -> object:
        # A ready-made assertion is fetched first, outside the call's metrics and circuit:
        # its source failing (a Kubernetes API error, say) is no failure of the server.
        source = self.client.client_assertion
        assertion = await source.assertion(endpoint=endpoint) if source is not None else None
        # One deadline for the whole call: discovery (when due) and the request.
        started = time.monotonic()
        outcome = "ok"
        try:
            with self._transport.deadline():
                return await self._call_within_deadline(
                    endpoint, form, replay, expect_json, assertion
                )
        except OAuth2ErrorResponse as exc:
            # Only known codes: a server's own strings must not grow the label set.
            outcome = exc.error if exc.error in KNOWN_ERROR_CODES else "other_error"
            raise
        except OAuth2Error as exc:
            outcome = _snake(type(exc).__name__.removesuffix("Error"))
            raise
        finally:
            if self._transport.observer is not None:
                self._transport.observer(endpoint, outcome, time.monotonic() - started)

    async def _call_within_deadline(
        self,
        endpoint: str,
        form: Mapping[str, str | list[str]],
        replay: Replay,
        expect_json: bool,
        assertion: str | None,
    ) -> object:
        metadata = await self.metadata()
        url = metadata.endpoint(endpoint, mtls=self._mtls)
        if url is None:
            raise EndpointNotAdvertisedError(
                f"the server {self.issuer.issuer} advertises no {endpoint}", endpoint=endpoint
            )
        token_endpoint = metadata.token_endpoint or url
        with self._breakers.call(url, endpoint=endpoint) as call:  # before signing anything
            auth = self._authenticator.authenticate(
                token_endpoint=token_endpoint, issuer=metadata.issuer, assertion=assertion
            )
            response = await self._transport.request(
                "POST",
                url,
                endpoint=endpoint,
                tls=self._tls,
                replay=replay,
                data={**form, **auth.form},
                headers=auth.headers,
            )
            call.answered(response.status_code)
        return _interpret(response, endpoint=endpoint, expect_json=expect_json, now=self._clock())


def _with_target(
    form: dict[str, str | list[str]],
    scopes: Scopes | None,
    resources: Iterable[str],
    audience: str | None,
) -> dict[str, str | list[str]]:
    """`form` with what the token is for: `scope`, RFC 8707 `resource`s, `audience`."""
    if scopes:
        form["scope"] = format_scope(scopes)
    if resource_list := list(resources):
        form["resource"] = resource_list
    if audience:
        form["audience"] = audience
    return form


def _interpret(response: httpx.Response, *, endpoint: str, expect_json: bool, now: float) -> object:
    status = response.status_code
    if 200 <= status < 300 and (status == 200 or not expect_json):
        if not expect_json:
            return None
        try:
            return response.json()
        except ValueError:
            raise MalformedResponseError(
                f"HTTP {status} with a body that is not JSON", endpoint=endpoint
            ) from None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        description = body.get("error_description")
        uri = body.get("error_uri")
        raise error_response(
            endpoint=endpoint,
            status_code=status,
            error=body["error"],
            error_description=description if isinstance(description, str) else None,
            error_uri=uri if isinstance(uri, str) else None,
        )
    raise UnexpectedStatusError(
        f"unexpected HTTP {status}",
        endpoint=endpoint,
        status_code=status,
        retry_after=parse_retry_after(response.headers.get("Retry-After"), now),
    )


def _snake(name: str) -> str:
    """``DeadlineExceeded`` → ``deadline_exceeded``."""
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")
