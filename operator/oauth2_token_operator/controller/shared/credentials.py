"""Reads the Secrets, ConfigMaps and ServiceAccounts an OAuth2Client (or a request's
grant) references, with a short cache.

A Secret is used only if it carries the opt-in label (`policies.secret_use`); one that
does not is found as `NotUsable`, its data not even decoded, and the label added later is
seen like a Secret created later (`awaited`).

Read at issuance time (not watched): a rotated client secret or key takes effect at the
next token request after `credentials_cache_ttl`, with no restart, and the operator
needs no watch on every Secret of the cluster. Concurrent reads of one object are one
API call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from oauth2_token_operator.api import OAuth2ClientSpec
from oauth2_token_operator.api.token_secret import decode_data
from oauth2_token_operator.client_config import (
    SERVICE_ACCOUNT,
    UID,
    Found,
    NotUsable,
    SecretData,
    SecretKey,
    assertion_audience,
    configs,
    referenced_keys,
)
from oauth2_token_operator.controller.shared.service_accounts import ServiceAccountTokens
from oauth2_token_operator.kube.api import KubeApi
from oauth2_token_operator.manager import client_partition
from oauth2_token_operator.oauth2.client_auth import ClientConfig
from oauth2_token_operator.oauth2.metadata import IssuerConfig
from oauth2_token_operator.policies import service_accounts
from oauth2_token_operator.policies.secret_use import usable


class CredentialReader:
    def __init__(
        self,
        kube: KubeApi,
        *,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[IssuerConfig, ClientConfig], Awaitable[object]] | None = None,
        api_audiences: tuple[str, ...] = service_accounts.DEFAULT_API_AUDIENCES,
    ) -> None:
        self._kube = kube
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[tuple[str, str, str], tuple[float, Found]] = {}
        self._reads: dict[tuple[str, str, str], asyncio.Task[Found]] = {}
        self._last_known: dict[tuple[str, str, str], SecretData] = {}
        self.on_change = on_change
        self._in_use: dict[tuple[str, str], tuple[IssuerConfig, ClientConfig]] = {}
        """Per OAuth2Client, the configuration last built: when its credentials change,
        `on_change` gets the old one (the operator drops its connection pools)."""
        self.service_accounts = ServiceAccountTokens(
            kube, self.objects, api_audiences=api_audiences
        )
        """The ServiceAccount tokens of `service_account_token` clients."""

    async def configs(
        self, namespace: str, name: str, spec: OAuth2ClientSpec, *, last_known: bool = False
    ) -> tuple[IssuerConfig, ClientConfig]:
        """The token library's configuration of a client; `ClientConfigError` if unusable.

        With `last_known`, a Secret that is gone is replaced by what it last held: a
        namespace being deleted loses its Secrets before the operator has revoked the
        tokens obtained with them.
        """
        keys = referenced_keys(spec)
        assertions = None
        account = spec.authentication.service_account_ref
        if account is not None:
            audience = assertion_audience(spec)
            self.service_accounts.check_audience(audience)  # before reading anything
            assertions = self.service_accounts.source(namespace, account.name, audience)
        issuer, client = configs(
            spec,
            keys,
            await self.objects(namespace, keys, last_known=last_known),
            partition=client_partition(namespace, name),
            assertions=assertions,
        )
        previous = self._in_use.get((namespace, name))
        self._in_use[(namespace, name)] = (issuer, client)
        if previous is not None and previous != (issuer, client) and self.on_change:
            await self.on_change(*previous)
        return issuer, client

    async def objects(
        self, namespace: str, keys: list[SecretKey], *, last_known: bool = False
    ) -> dict[tuple[str, str], Found]:
        """The decoded data of every object `keys` name (`None` for a missing one,
        `NotUsable` for a Secret that does not grant its use)."""
        wanted = sorted({(key.kind, key.name) for key in keys})
        found = await asyncio.gather(*(self._read(namespace, kind, name) for kind, name in wanted))
        if last_known:
            found = [
                data if data is not None else self._last_known.get((kind, namespace, name))
                for (kind, name), data in zip(wanted, found, strict=True)
            ]
        return dict(zip(wanted, found, strict=True))

    def forget(self, namespace: str) -> None:
        """Drop cached objects of `namespace` (a client changed: read afresh)."""
        for cache_key in [k for k in self._cache if k[1] == namespace]:
            del self._cache[cache_key]

    def forget_last_known(self, namespace: str, names: set[tuple[str, str]]) -> None:
        """Drop what deleted clients' Secrets held (kind, name)."""
        for kind, name in names:
            self._last_known.pop((kind, namespace, name), None)

    async def _read(self, namespace: str, kind: str, name: str) -> Found:
        cache_key = (kind, namespace, name)
        cached = self._cache.get(cache_key)
        if cached is not None and self._clock() - cached[0] < self._ttl:
            return cached[1]
        task = self._reads.get(cache_key)
        if task is None:
            task = asyncio.create_task(self._fetch(namespace, kind, name))
            self._reads[cache_key] = task
            task.add_done_callback(lambda _: self._reads.pop(cache_key, None))
        data = await asyncio.shield(task)
        self._cache[cache_key] = (self._clock(), data)
        if data is not None and not isinstance(data, NotUsable):
            self._last_known[cache_key] = data
        return data

    async def _fetch(self, namespace: str, kind: str, name: str) -> Found:
        if kind == "ConfigMap":
            config_map = await self._kube.read_config_map(namespace, name)
            return None if config_map is None else dict(config_map.get("data") or {})
        if kind == SERVICE_ACCOUNT:
            account = await self._kube.read_service_account(namespace, name)
            if account is None:
                return None
            if not service_accounts.usable(account):
                return NotUsable(namespace, name, kind=SERVICE_ACCOUNT)
            return {UID: str((account.get("metadata") or {}).get("uid") or "")}
        secret = await self._kube.read_secret(namespace, name)
        if secret is None:
            return None
        if not usable(secret):
            return NotUsable(namespace, name)
        return decode_data(secret.get("data")) or {}
