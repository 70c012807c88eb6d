"""Authorization server metadata: RFC 8414 discovery with OpenID Connect fallback.

Discovered documents are cached per issuer: refreshed every
``refresh_interval`` (1 h), fetched at most once per ``min_fetch_interval``
(10 s) however often callers ask, and a failed refresh keeps the last good
document, with one warning per failure episode (until a fetch succeeds).
Caller overrides (the seed's ``server_metadata``) are merged over the
discovered document.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from oauth2_token_operator.oauth2.bounded import MAX_DOCUMENT
from oauth2_token_operator.oauth2.errors import (
    ConfigurationError,
    IssuerMismatchError,
    MetadataError,
    OAuth2Error,
)
from oauth2_token_operator.oauth2.tls import TLSConfig
from oauth2_token_operator.oauth2.transport import OAuth2Transport, Replay

log = logging.getLogger(__name__)

ENDPOINT_NAMES = ("token_endpoint", "introspection_endpoint", "revocation_endpoint")


class ServerMetadata(BaseModel):
    """The RFC 8414 fields this project uses; every other field is dropped (a document
    may be up to 1 MiB, and one is kept per issuer)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    issuer: str
    token_endpoint: str | None = None
    introspection_endpoint: str | None = None
    revocation_endpoint: str | None = None
    jwks_uri: str | None = None
    grant_types_supported: list[str] | None = None
    token_endpoint_auth_methods_supported: list[str] | None = None
    scopes_supported: list[str] | None = None
    mtls_endpoint_aliases: dict[str, str] | None = None

    def endpoint(self, name: str, *, mtls: bool = False) -> str | None:
        """URL of an endpoint; with ``mtls`` the RFC 8705 §5 alias when advertised."""
        if mtls and self.mtls_endpoint_aliases and name in self.mtls_endpoint_aliases:
            return self.mtls_endpoint_aliases[name]
        value = getattr(self, name, None)
        return value if isinstance(value, str) else None


@dataclass(frozen=True)
class IssuerConfig:
    """An authorization server as the caller configures it."""

    issuer: str
    metadata_overrides: Mapping[str, Any] = field(default_factory=dict, hash=False)
    allow_insecure_http: bool = False
    """Plain ``http://`` is refused unless this is set (tests, loopback demos)."""
    discovery: bool = True
    """Without discovery the metadata is ``{"issuer": issuer, **metadata_overrides}``."""
    ca_pem: str | None = None
    """CA bundle that verifies the server, instead of the system's trust store."""

    @cached_property
    def cache_key(self) -> str:
        """This configuration as a string (the metadata cache's and the manager's keys):
        made once per configuration, as it is asked on every call."""
        return json.dumps(
            [
                self.issuer,
                dict(self.metadata_overrides),
                self.allow_insecure_http,
                self.discovery,
                self.ca_pem,
            ],
            sort_keys=True,
            default=str,
        )

    @property
    def tls(self) -> TLSConfig:
        return TLSConfig(ca_pem=self.ca_pem)


def check_url(url: str, *, allow_http: bool, what: str, echo: bool = True) -> None:
    """Refuse non-https URLs unless plain http was explicitly allowed. With `echo`
    False the message names `what` but not the URL: one from a server's metadata
    document is the server's content, which status and Events never repeat."""
    shown = f" {url!r}" if echo else ""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ConfigurationError(f"{what} is not a valid URL{':' if echo else ''}{shown}") from exc
    if not parsed.host:
        raise ConfigurationError(f"{what} has no host{':' if echo else ''}{shown}")
    if parsed.scheme == "https":
        return
    if parsed.scheme == "http" and allow_http:
        return
    if parsed.scheme == "http":
        raise ConfigurationError(
            f"{what}{shown} uses plain http; allow it explicitly (allow_insecure_http) "
            "only for local testing"
        )
    raise ConfigurationError(f"{what}{shown} must use https")


def discovery_urls(issuer: str) -> list[str]:
    """RFC 8414 §3.1 (well-known segment inserted before the path), then OIDC Discovery §4."""
    parsed = httpx.URL(issuer)
    if parsed.query or parsed.fragment:
        raise ConfigurationError(f"issuer {issuer!r} must not have a query or fragment")
    path = parsed.path.rstrip("/")
    origin = f"{parsed.scheme}://{parsed.netloc.decode('ascii')}"
    return [
        f"{origin}/.well-known/oauth-authorization-server{path}",
        f"{origin}{path}/.well-known/openid-configuration",
    ]


@dataclass
class _Entry:
    metadata: ServerMetadata | None = None
    fetched_at: float = float("-inf")
    attempted_at: float = float("-inf")
    last_error: OAuth2Error | None = None
    warned: bool = False
    """A warning about this failure episode was logged: say nothing more until a fetch works."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class MetadataCache:
    """Discovers and caches server metadata; one fetch at a time per issuer."""

    def __init__(
        self,
        transport: OAuth2Transport,
        *,
        refresh_interval: float = 3600.0,
        min_fetch_interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 1024,
    ) -> None:
        self._transport = transport
        self.refresh_interval = refresh_interval
        self.min_fetch_interval = min_fetch_interval
        self._clock = clock
        self._max_entries = max_entries
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        """Per issuer configuration, least recently used first: issuers are tenants'
        choice, so the cache forgets the least used beyond `max_entries`."""

    async def get(self, config: IssuerConfig) -> ServerMetadata:
        key = config.cache_key
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry()
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)  # a caller holding it keeps its copy
        else:
            self._entries.move_to_end(key)
        if self._fresh(entry):
            assert entry.metadata is not None
            return entry.metadata
        async with entry.lock:
            if self._fresh(entry):
                assert entry.metadata is not None
                return entry.metadata
            if self._clock() - entry.attempted_at < self.min_fetch_interval:
                return self._stale_or_raise(entry, config)
            entry.attempted_at = self._clock()
            try:
                metadata = await self._load(config)
            except OAuth2Error as exc:
                entry.last_error = exc.detached()
                return self._stale_or_raise(entry, config)
            if entry.warned:
                log.info("metadata of %s fetched again", config.issuer)
            entry.metadata, entry.fetched_at = metadata, self._clock()
            entry.last_error, entry.warned = None, False
            return metadata

    def cached(self, config: IssuerConfig) -> ServerMetadata | None:
        """The document last fetched for `config`, if any (fresh or not); never fetches."""
        entry = self._entries.get(config.cache_key)
        return None if entry is None else entry.metadata

    def _fresh(self, entry: _Entry) -> bool:
        return (
            entry.metadata is not None and self._clock() - entry.fetched_at < self.refresh_interval
        )

    @staticmethod
    def _stale_or_raise(entry: _Entry, config: IssuerConfig) -> ServerMetadata:
        if entry.metadata is not None:
            if entry.last_error is not None and not entry.warned:
                # Once per failure episode: every call until the next good fetch lands here.
                entry.warned = True
                log.warning(
                    "keeping the last good metadata of %s: %s", config.issuer, entry.last_error
                )
            return entry.metadata
        if entry.last_error is not None:
            raise entry.last_error.detached()  # the kept one stays without a traceback
        raise MetadataError(f"metadata of {config.issuer} not fetched yet", endpoint="discovery")

    async def _load(self, config: IssuerConfig) -> ServerMetadata:
        egress = self._transport.egress
        egress.check_issuer(config.issuer, allow_insecure_http=config.allow_insecure_http)
        check_url(config.issuer, allow_http=config.allow_insecure_http, what="issuer")
        if "issuer" in config.metadata_overrides:
            raise ConfigurationError("metadata overrides must not change the issuer")
        document: dict[str, Any] = (
            await self._discover(config) if config.discovery else {"issuer": config.issuer}
        )
        document.update(config.metadata_overrides)
        try:
            metadata = ServerMetadata.model_validate(document)
        except ValidationError as exc:
            raise MetadataError(
                f"metadata of {config.issuer} is invalid: {exc.error_count()} error(s), "
                f"first: {exc.errors()[0]['loc']} {exc.errors()[0]['msg']}",
                endpoint="discovery",
            ) from None
        # These URLs may come from the server's document: named, never repeated.
        for name in (*ENDPOINT_NAMES, "jwks_uri"):
            url = getattr(metadata, name)
            if url is not None:
                check_url(url, allow_http=config.allow_insecure_http, what=name, echo=False)
        for url in (metadata.mtls_endpoint_aliases or {}).values():
            check_url(url, allow_http=config.allow_insecure_http, what="an mtls alias", echo=False)
        # Every endpoint the operator may call, mTLS aliases included: neither the spec
        # nor the server's document may point it at a host its administrator did not allow.
        for name in ENDPOINT_NAMES:
            for mtls in (False, True):
                url = metadata.endpoint(name, mtls=mtls)
                if url is not None:
                    what = f"mtls alias of the {name}" if mtls else name
                    egress.check_endpoint(what, url, issuer=config.issuer)
        return metadata

    async def _discover(self, config: IssuerConfig) -> dict[str, Any]:
        failures: list[str] = []
        for url in discovery_urls(config.issuer):
            response = await self._transport.request(
                "GET",
                url,
                endpoint="discovery",
                tls=config.tls,
                replay=Replay.SAFE,
                max_body=MAX_DOCUMENT,
            )
            if response.status_code != 200:
                failures.append(f"{url} answered HTTP {response.status_code}")
                continue
            try:
                document = response.json()
            except ValueError:
                failures.append(f"{url} did not answer JSON")
                continue
            if not isinstance(document, dict):
                failures.append(f"{url} did not answer a JSON object")
                continue
            if document.get("issuer") != config.issuer:
                # The issuer it names is the server's text: not repeated (it would reach
                # status and Events), only that it differs.
                raise IssuerMismatchError(
                    f"{url} names another issuer than this one: expected exactly {config.issuer!r}",
                    endpoint="discovery",
                )
            return document
        raise MetadataError(
            f"no metadata for {config.issuer}: " + "; ".join(failures), endpoint="discovery"
        )
