"""`manager.sharing`: which requests may share a token (the partition rule), and the
manager's calls for an identity's stored tokens, which the operator uses instead of
reaching into the store (adoption, deletion, revoke-all)."""

from __future__ import annotations

import ast
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from oauth2_token_operator.manager import (
    CLIENT_CREDENTIALS,
    AccessToken,
    InMemoryTokenStore,
    TokenKey,
    TokenManager,
    client_partition,
    partition_client,
    token_key,
)
from oauth2_token_operator.manager.model import Subject
from oauth2_token_operator.oauth2 import ClientConfig, IssuerConfig

Identity = tuple[str, Subject | None, str, str]
"""`(issuer, subject, client_id, partition)`."""

BASE: Identity = ("https://a.example", "secret:ns/rt#token", "app", "ns/client")


@pytest.mark.parametrize(
    ("other", "shared"),
    [
        pytest.param(BASE, True, id="the same identity"),
        pytest.param(("https://b.example", *BASE[1:]), False, id="another issuer"),
        pytest.param((BASE[0], "secret:ns/other#token", *BASE[2:]), False, id="another subject"),
        pytest.param((BASE[0], None, *BASE[2:]), False, id="the client's own token"),
        pytest.param((*BASE[:2], "other-app", BASE[3]), False, id="another client_id"),
        pytest.param((*BASE[:3], "other-ns/client"), False, id="the same client_id, another owner"),
        pytest.param((*BASE[:3], ""), False, id="an unpartitioned (library) configuration"),
    ],
)
def test_tokens_are_shared_only_within_one_identity(other: Identity, shared: bool) -> None:
    assert (token_key(*BASE) == token_key(*other)) is shared


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        (None, CLIENT_CREDENTIALS),  # the client itself
        (CLIENT_CREDENTIALS, CLIENT_CREDENTIALS),  # said as the library says it
        ("alice", "alice"),
    ],
)
def test_no_subject_is_the_clients_own(subject: Subject | None, expected: Subject) -> None:
    assert token_key("https://a.example", subject, "app", "").subject == expected


@pytest.mark.parametrize(
    ("namespace", "name"),
    [("ns", "client"), ("kube-system", "a.b-c"), ("n", "n")],
)
def test_a_clients_partition_names_it_back(namespace: str, name: str) -> None:
    assert client_partition(namespace, name) == f"{namespace}/{name}"
    assert partition_client(client_partition(namespace, name)) == (namespace, name)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("", id="the library's one owner"),
        pytest.param("client", id="no namespace"),
        pytest.param("/client", id="an empty namespace"),
        pytest.param("ns/", id="an empty name"),
        pytest.param("ns/client/extra", id="a name with a slash"),
    ],
)
def test_a_value_no_client_has_is_no_partition(value: str) -> None:
    assert partition_client(value) is None


ISSUER = IssuerConfig("https://127.0.0.1:9")  # nothing listens: no call may be made
CLIENT = ClientConfig(
    client_id="app", token_partition="ns/client", auth_method="client_secret_basic",
    client_secret="s",
)  # fmt: skip
OTHER_OWNER = CLIENT.model_copy(update={"token_partition": "other-ns/client"})


@pytest.fixture
async def manager() -> AsyncIterator[TokenManager]:
    async with TokenManager(InMemoryTokenStore(), clock=lambda: 1000.0) as m:
        yield m


def adopted(key: TokenKey, value: str = "at") -> AccessToken:
    return AccessToken(
        value=value,
        token_type="Bearer",
        key=key,
        scopes=frozenset({"read"}),
        obtained_at=900.0,
        expires_at=4600.0,
    )


def test_the_managers_calls_key_tokens_by_the_rule(manager: TokenManager) -> None:
    assert manager.key_for(ISSUER, None, CLIENT) == token_key(
        ISSUER.issuer, None, "app", "ns/client"
    )
    assert manager.key_for(ISSUER, "alice", CLIENT) != manager.key_for(ISSUER, "alice", OTHER_OWNER)


async def test_an_adopted_token_is_handed_out_within_its_partition_only(
    manager: TokenManager,
) -> None:
    key = token_key(ISSUER.issuer, None, "app", "ns/client")
    token = adopted(key)
    await manager.adopt(token)
    got = await manager.get(ISSUER, CLIENT_CREDENTIALS, CLIENT, scopes=["read"])
    assert got == token  # from the store: nothing listens at the issuer
    assert await manager.stored_tokens(key) == [token]
    other = manager.key_for(ISSUER, None, OTHER_OWNER)
    assert await manager.stored_tokens(other) == []


async def test_a_forgotten_token_is_no_longer_handed_out(manager: TokenManager) -> None:
    key = token_key(ISSUER.issuer, None, "app", "ns/client")
    token = adopted(key)
    await manager.adopt(token)
    assert await manager.forget(token) is True
    assert await manager.stored_tokens(key) == []
    assert await manager.forget(token) is False  # forgetting twice is no error


async def test_the_refresh_tokens_of_an_identity(manager: TokenManager) -> None:
    await manager.add_refresh_token("rt-1", ISSUER, "alice", CLIENT, scopes=["read"])
    await manager.add_refresh_token("rt-2", ISSUER, "alice", OTHER_OWNER, scopes=["read"])
    mine = await manager.refresh_tokens(manager.key_for(ISSUER, "alice", CLIENT))
    assert [rt.value for rt in mine] == ["rt-1"]
    assert await manager.refresh_tokens(manager.key_for(ISSUER, "bob", CLIENT)) == []


CONTROLLER = (
    Path(__file__).resolve().parents[2] / "operator" / "oauth2_token_operator" / "controller"
)


def reaches_into_sharing(package: Path) -> list[str]:
    """Where modules of `package` use the manager's store or build a `TokenKey` themselves
    (which tokens are shared is the manager's to say: `manager.sharing`)."""
    found = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "store":
                found.append(f"{path.name}:{node.lineno}: .store")
            if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("TokenKey"):
                found.append(f"{path.name}:{node.lineno}: TokenKey(...)")
    return found


def test_the_controller_leaves_sharing_to_the_manager() -> None:
    assert reaches_into_sharing(CONTROLLER) == []
