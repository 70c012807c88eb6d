"""Tokens that live a few seconds: how many token requests do steady ``get`` calls make?

A caller asks for a token every ``INTERVAL`` seconds for ``WINDOW`` seconds with the
default configuration (30 s clock skew), from the test server's ``short_ttl`` client
whose access tokens live 3 s: once with client_credentials, once for a subject
refreshing its refresh token. Baseline: one token request per ``get`` (no reuse).
Also printed: how many access tokens the store still holds at the end.
"""

from __future__ import annotations

import asyncio
import time

from bench.common import Setup
from oauth2_token_operator.manager import (
    CLIENT_CREDENTIALS,
    InMemoryTokenStore,
    Subject,
    TokenKey,
    TokenManager,
)
from oauth2_token_operator.oauth2 import OAuth2Transport

WINDOW = 15.0
INTERVAL = 0.1


async def _scenario(setup: Setup, subject: Subject) -> None:
    client = setup.short_ttl_client()
    transport = OAuth2Transport()
    store = InMemoryTokenStore()
    manager = TokenManager(store, transport=transport)
    scopes: list[str] = ["read"]
    resources = [setup.server.resource]
    if subject is not CLIENT_CREDENTIALS:
        registered = setup.server.clients["short_ttl"]
        grant = setup.server.password_grant(registered, setup.server.user_scopes)
        scopes = sorted(setup.server.user_scopes)
        resources = []
        await manager.add_refresh_token(
            grant["refresh_token"], setup.issuer, subject, client, scopes=scopes
        )
    counter = f"client={client.client_id} /token"
    before = setup.server.counters().get(counter, 0)
    calls = 0
    deadline = time.monotonic() + WINDOW
    try:
        while time.monotonic() < deadline:
            await manager.get(setup.issuer, subject, client, scopes=scopes, resources=resources)
            calls += 1
            await asyncio.sleep(INTERVAL)
        requests = setup.server.counters().get(counter, 0) - before
        key = TokenKey(setup.issuer.issuer, subject, client.client_id)
        left = await store.find_access_tokens(key)
    finally:
        await transport.aclose()
    what = "client_credentials" if subject is CLIENT_CREDENTIALS else "refresh_token (subject)"
    print(f"  {what:<24} = {requests / calls:.3f} ({requests} token requests for {calls}"
          f" get() calls; {len(left)} access tokens left in the store)")  # fmt: skip


async def run(setup: Setup) -> None:
    print(f"3 s tokens, a get() every {INTERVAL} s for {WINDOW:.0f} s, default clock skew;"
          " baseline: one token request per get() = 1.00")  # fmt: skip
    await _scenario(setup, CLIENT_CREDENTIALS)
    await _scenario(setup, "alice")
