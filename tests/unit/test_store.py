"""InMemoryTokenStore: its indexes answer a lookup with exactly the tokens that match."""

from __future__ import annotations

import dataclasses

from hypothesis import given
from hypothesis import strategies as st

from oauth2_token_operator.manager import (
    CLIENT_CREDENTIALS,
    AccessToken,
    InMemoryTokenStore,
    RefreshToken,
    TokenKey,
    TokenSpec,
)
from oauth2_token_operator.manager.model import matches

ISSUERS = ("https://a.example", "https://b.example")
KEYS = [
    TokenKey(issuer, subject, client)
    for issuer in ISSUERS
    for subject in (CLIENT_CREDENTIALS, "alice")
    for client in ("c1", "c2")
]
SCOPE_SETS = [frozenset(), frozenset({"read"}), frozenset({"read", "write"})]
RESOURCES = [frozenset(), frozenset({"https://api.example"})]
AUDIENCES = [None, "https://aud.example"]

specs = st.builds(
    TokenSpec,
    scopes=st.none() | st.sampled_from(SCOPE_SETS),
    resources=st.sampled_from(RESOURCES),
    audience=st.sampled_from(AUDIENCES),
)


@st.composite
def tokens(draw: st.DrawFn) -> AccessToken:
    return AccessToken(
        value=draw(st.sampled_from([f"v{i}" for i in range(8)])),
        token_type="Bearer",
        key=draw(st.sampled_from(KEYS)),
        scopes=draw(st.sampled_from(SCOPE_SETS)),
        obtained_at=0.0,
        expires_at=100.0,
        requested_scopes=draw(st.none() | st.sampled_from(SCOPE_SETS)),
        resources=draw(st.sampled_from(RESOURCES)),
        audience=draw(st.sampled_from(AUDIENCES)),
    )


def ids(found: list[AccessToken]) -> set[tuple[str, str]]:
    return {(t.key.issuer, t.value) for t in found}


@given(
    puts=st.lists(tokens(), max_size=30),
    deletes=st.lists(st.integers(0, 29), max_size=10),
    key=st.sampled_from(KEYS),
    spec=st.none() | specs,
)
async def test_lookups_return_exactly_the_matching_tokens(
    puts: list[AccessToken], deletes: list[int], key: TokenKey, spec: TokenSpec | None
) -> None:
    """Puts replace by (issuer, value), deletes remove: whatever happened, a lookup by
    key and spec equals a scan of every token (the index never serves stale entries)."""
    store = InMemoryTokenStore()
    for token in puts:
        await store.put_access_token(token)
    for index in deletes:
        if index < len(puts):
            await store.delete_access_token(puts[index].key.issuer, puts[index].value)
    everything = await store.all_access_tokens()
    assert len(everything) == len(ids(everything))  # one token per identity
    expected = [t for t in everything if t.key == key and (spec is None or matches(t, spec))]
    found = await store.find_access_tokens(key, spec)
    assert len(found) == len(ids(found))
    assert ids(found) == ids(expected)


async def test_a_replaced_token_moves_between_index_entries() -> None:
    store = InMemoryTokenStore()
    token = AccessToken("v", "Bearer", KEYS[0], frozenset({"read"}), 0.0, 100.0)
    await store.put_access_token(token)
    narrowed = dataclasses.replace(token, scopes=frozenset({"write"}))
    await store.put_access_token(narrowed)  # e.g. introspection said otherwise
    assert await store.find_access_tokens(KEYS[0], TokenSpec(frozenset({"read"}))) == []
    assert await store.find_access_tokens(KEYS[0], TokenSpec(frozenset({"write"}))) == [narrowed]
    assert await store.get_access_token(KEYS[0].issuer, "v") == narrowed
    assert await store.delete_access_token(KEYS[0].issuer, "v")
    assert not await store.delete_access_token(KEYS[0].issuer, "v")
    assert await store.find_access_tokens(KEYS[0]) == []


async def test_refresh_tokens_by_key_and_identity() -> None:
    store = InMemoryTokenStore()
    alice, bob = KEYS[1], KEYS[3]
    first = RefreshToken("r1", alice, frozenset({"openid"}), 0.0)
    await store.put_refresh_token(first)
    await store.put_refresh_token(RefreshToken("r2", bob, frozenset(), 0.0))
    assert await store.find_refresh_tokens(alice) == [first]
    assert await store.delete_refresh_token(alice.issuer, "r1")
    assert await store.find_refresh_tokens(alice) == []
    assert [t.value for t in await store.find_refresh_tokens(bob)] == ["r2"]
