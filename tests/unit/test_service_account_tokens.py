"""`service_account_token` clients (issue 23, section 2), without an API server: the
core sends a ready-made assertion, a re-minted token is no new configuration, and the
minting is cached, renewed before expiry and refused by both guards (opt-in label,
API-server audiences) before anything is minted."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml

from oauth2_token_operator.api import AccessTokenRequestSpec, OAuth2ClientSpec
from oauth2_token_operator.client_config import ClientConfigError
from oauth2_token_operator.controller.shared.credentials import CredentialReader
from oauth2_token_operator.controller.shared.service_accounts import RENEW_AT
from oauth2_token_operator.kube.api import KubeApi, KubeApiError
from oauth2_token_operator.oauth2.client_auth import (
    JWT_BEARER,
    ClientAssertionSource,
    ClientAuthenticator,
    ClientConfig,
)
from oauth2_token_operator.oauth2.errors import ConfigurationError
from oauth2_token_operator.policies.service_accounts import (
    DEFAULT_API_AUDIENCES,
    audience_refusal,
    normalised,
)

ISSUER = "https://login.example.com/realms/r"
USABLE = {"oauth2.token-operator.io/usable-by-operator": "true"}


class Fixed(ClientAssertionSource):
    def __init__(self, key: str, token: str) -> None:
        super().__init__(key)
        self.token = token

    async def assertion(self, *, endpoint: str = "token_endpoint") -> str:
        return self.token


def test_the_core_sends_the_assertion_with_the_client_id() -> None:
    client = ClientConfig(
        client_id="billing", auth_method="client_assertion", client_assertion=Fixed("k", "t1")
    )
    auth = ClientAuthenticator(client).authenticate(
        token_endpoint=f"{ISSUER}/token", issuer=ISSUER, assertion="the.jwt.token"
    )
    assert auth.headers == {}
    assert auth.form == {
        "client_id": "billing",
        "client_assertion_type": JWT_BEARER,
        "client_assertion": "the.jwt.token",
    }
    with pytest.raises(ConfigurationError):
        ClientAuthenticator(client).authenticate(token_endpoint=ISSUER, issuer=ISSUER)


def test_a_source_is_needed_by_client_assertion_and_by_nothing_else() -> None:
    with pytest.raises(ConfigurationError, match="client_assertion"):
        ClientConfig(client_id="c", auth_method="client_assertion")
    with pytest.raises(ConfigurationError, match="client_assertion"):
        ClientConfig(client_id="c", auth_method="none", client_assertion=Fixed("k", "t"))


def test_a_fresh_assertion_is_no_new_configuration() -> None:
    """Equal and equally hashed whatever assertion the source holds: the token store,
    the manager's protocol clients and the pools key on the configuration."""
    first = ClientConfig(
        client_id="c", auth_method="client_assertion", client_assertion=Fixed("sa a", "t1")
    )
    renewed = ClientConfig(
        client_id="c", auth_method="client_assertion", client_assertion=Fixed("sa a", "t2")
    )
    other = ClientConfig(
        client_id="c", auth_method="client_assertion", client_assertion=Fixed("sa b", "t1")
    )
    assert first == renewed
    assert hash(first) == hash(renewed)
    assert first != other
    assert "t1" not in repr(first)
    assert "t1" not in str(first)


@pytest.mark.parametrize(
    "audience",
    [
        "https://kubernetes.default.svc",
        "https://kubernetes.default.svc/",
        "https://KUBERNETES.default.svc/",
        "HTTPS://kubernetes.default.svc:443",
        "https://kubernetes.default.svc.cluster.local//",
        " https://kubernetes.default.svc ",
    ],
)
def test_an_audience_the_api_server_accepts_is_refused_in_any_spelling(audience: str) -> None:
    refusal = audience_refusal(audience, DEFAULT_API_AUDIENCES)
    assert refusal is not None
    assert "Kubernetes API server" in refusal


@pytest.mark.parametrize(
    "audience",
    [ISSUER, "api://AzureADTokenExchange", "https://kubernetes.default.svc.example.com",
     "https://kubernetes.default.svc:8443"],
)  # fmt: skip
def test_other_audiences_are_allowed(audience: str) -> None:
    assert audience_refusal(audience, DEFAULT_API_AUDIENCES) is None


def test_normalised() -> None:
    assert normalised("HTTPS://Host.Example:443/a/") == "https://host.example/a"
    assert normalised("https://[::1]:6443/") == "https://[::1]:6443"
    assert normalised("api://AzureADTokenExchange") == "api://azureadtokenexchange"


class FakeKube(KubeApi):
    """ServiceAccounts and TokenRequests in memory; counts every call."""

    def __init__(self) -> None:
        self.accounts: dict[tuple[str, str], dict[str, Any]] = {}
        self.minted: list[tuple[str, str, str, int]] = []
        self.reads = 0
        self.fail: KubeApiError | None = None

    def account(self, name: str, *, uid: str = "uid-1", labels: dict[str, str] = USABLE) -> None:
        self.accounts[("ns", name)] = {"metadata": {"name": name, "uid": uid, "labels": labels}}

    async def read_service_account(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.reads += 1
        return self.accounts.get((namespace, name))

    async def create_service_account_token(
        self, namespace: str, name: str, *, audience: str, expiration_seconds: int
    ) -> dict[str, Any]:
        await asyncio.sleep(0)
        if self.fail is not None:
            raise self.fail
        self.minted.append((namespace, name, audience, expiration_seconds))
        return {"status": {"token": f"token-{len(self.minted)}"}}


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def sa_spec(**authentication: Any) -> OAuth2ClientSpec:
    return OAuth2ClientSpec.model_validate({
        "issuer": ISSUER, "clientId": "billing",
        "authentication": {"method": "service_account_token",
                           "serviceAccountRef": {"name": "billing"}, **authentication},
    })  # fmt: skip


def reader(kube: FakeKube, clock: Clock, **kwargs: Any) -> CredentialReader:
    credentials = CredentialReader(kube, ttl=0, clock=clock, **kwargs)
    credentials.service_accounts._clock = clock
    return credentials


async def test_a_token_is_reused_then_minted_again_before_it_expires() -> None:
    kube, clock = FakeKube(), Clock()
    kube.account("billing")
    changed: list[object] = []

    async def on_change(*old: object) -> None:
        changed.append(old)

    credentials = reader(kube, clock, on_change=on_change)
    _, client = await credentials.configs("ns", "idp", sa_spec())
    assert client.auth_method == "client_assertion"
    assert client.client_assertion is not None
    assert await client.client_assertion.assertion() == "token-1"
    assert kube.minted == [("ns", "billing", ISSUER, 600)]  # the issuer, the shortest life

    clock.now += RENEW_AT * 600 - 1
    assert await client.client_assertion.assertion() == "token-1"
    clock.now += 2
    assert await client.client_assertion.assertion() == "token-2"
    assert len(kube.minted) == 2

    # The configuration built after the re-mint is the one before: no change, no pool
    # dropped, the same stored tokens.
    _, again = await credentials.configs("ns", "idp", sa_spec())
    assert again == client
    assert hash(again) == hash(client)
    assert changed == []
    # Another audience is another configuration.
    _, other = await credentials.configs("ns", "idp", sa_spec(audience="api://other"))
    assert other != client
    assert len(changed) == 1


async def test_an_exchanges_subject_token_is_minted_for_its_audience_and_shortest_life() -> None:
    """What `token_exchange` from `serviceAccountRef` asks the home (Keycloak, the test
    server that takes it, does not check the subject token's audience): a TokenRequest
    for exactly that audience and the shortest life, reused while fresh."""
    kube, clock = FakeKube(), Clock()
    kube.account("billing")
    tokens = reader(kube, clock).service_accounts
    account = ("ns", "billing", "https://sts.example.test")
    await tokens.check(account)
    assert kube.minted == []  # checking mints nothing
    assert await tokens.token(account) == "token-1"
    assert await tokens.token(account) == "token-1"
    assert kube.minted == [("ns", "billing", "https://sts.example.test", 600)]
    assert tokens.minted_for() == {account}


async def test_concurrent_callers_share_one_token_request() -> None:
    kube, clock = FakeKube(), Clock()
    kube.account("billing")
    _, client = await reader(kube, clock).configs("ns", "idp", sa_spec())
    assert client.client_assertion is not None
    tokens = await asyncio.gather(*(client.client_assertion.assertion() for _ in range(10)))
    assert set(tokens) == {"token-1"}
    assert len(kube.minted) == 1


async def test_a_service_account_created_again_gets_a_new_token() -> None:
    kube, clock = FakeKube(), Clock()
    kube.account("billing", uid="uid-1")
    _, client = await reader(kube, clock).configs("ns", "idp", sa_spec())
    assert client.client_assertion is not None
    assert await client.client_assertion.assertion() == "token-1"
    kube.account("billing", uid="uid-2")
    assert await client.client_assertion.assertion() == "token-2"


async def test_no_token_without_the_opt_in_label_nor_for_a_missing_account() -> None:
    kube, clock = FakeKube(), Clock()
    kube.account("billing", labels={})
    credentials = reader(kube, clock)
    with pytest.raises(ClientConfigError) as refused:
        await credentials.configs("ns", "idp", sa_spec())
    assert refused.value.reason == "ServiceAccountNotUsable"
    assert "kubectl label serviceaccount billing -n ns" in refused.value.message
    assert refused.value.missing is not None  # awaited: the label added later is seen

    del kube.accounts[("ns", "billing")]
    with pytest.raises(ClientConfigError) as missing:
        await credentials.configs("ns", "idp", sa_spec())
    assert missing.value.reason == "ServiceAccountNotFound"
    assert missing.value.missing is not None
    assert kube.minted == []

    # A label removed (or the account deleted) after a token was minted: no more use.
    kube.account("billing")
    _, client = await credentials.configs("ns", "idp", sa_spec())
    assert client.client_assertion is not None
    assert await client.client_assertion.assertion() == "token-1"
    kube.account("billing", labels={})
    with pytest.raises(ClientConfigError, match="does not carry the label"):
        await client.client_assertion.assertion()
    del kube.accounts[("ns", "billing")]
    with pytest.raises(ClientConfigError, match="not found"):
        await client.client_assertion.assertion()
    assert len(kube.minted) == 1


async def test_a_deleted_service_account_still_revokes_with_the_token_it_lent() -> None:
    """Its namespace being deleted, a ServiceAccount may go before the requests whose
    tokens were obtained with it: revocation still authenticates with the token minted
    while it existed (never a new one), until that expires; a token call does not."""
    kube, clock = FakeKube(), Clock()
    kube.account("billing")
    _, client = await reader(kube, clock).configs("ns", "idp", sa_spec())
    source = client.client_assertion
    assert source is not None
    assert await source.assertion() == "token-1"
    del kube.accounts[("ns", "billing")]
    with pytest.raises(ClientConfigError, match="not found"):
        await source.assertion()
    assert await source.assertion(endpoint="revocation_endpoint") == "token-1"
    # One that lost its label lends nothing, not even for revocation.
    kube.account("billing", labels={})
    with pytest.raises(ClientConfigError, match="does not carry the label"):
        await source.assertion(endpoint="revocation_endpoint")
    del kube.accounts[("ns", "billing")]
    clock.now += 600  # the token minted has expired
    with pytest.raises(ClientConfigError, match="not found"):
        await source.assertion(endpoint="revocation_endpoint")
    assert len(kube.minted) == 1


@pytest.mark.parametrize(
    ("audience", "flags"),
    [
        ("https://KUBERNETES.default.svc/", ()),
        ("https://127.0.0.1:6443/", ("https://127.0.0.1:6443",)),
    ],
)
async def test_no_token_for_an_audience_the_api_server_accepts(
    audience: str, flags: tuple[str, ...]
) -> None:
    kube, clock = FakeKube(), Clock()
    kube.account("billing")
    credentials = reader(kube, clock, api_audiences=(*DEFAULT_API_AUDIENCES, *flags))
    with pytest.raises(ClientConfigError) as refused:
        await credentials.configs("ns", "idp", sa_spec(audience=audience))
    assert refused.value.reason == "AudienceNotAllowed"
    assert kube.minted == []
    assert kube.reads == 0
    # Nor through a source built before the operator's flags said so.
    source = credentials.service_accounts.source("ns", "billing", audience)
    with pytest.raises(ClientConfigError, match="Kubernetes API server"):
        await source.assertion()
    assert kube.minted == []


async def test_a_refused_token_request_says_so_without_the_servers_body() -> None:
    kube, clock = FakeKube(), Clock()
    kube.account("billing")
    kube.fail = KubeApiError("requesting a token of ServiceAccount ns/billing: HTTP 403 Forbidden")
    _, client = await reader(kube, clock).configs("ns", "idp", sa_spec())
    assert client.client_assertion is not None
    with pytest.raises(ClientConfigError) as failed:
        await client.client_assertion.assertion()
    assert failed.value.reason == "ServiceAccountTokenFailed"
    assert "HTTP 403 Forbidden" in failed.value.message


async def test_a_shorter_life_than_asked_for_is_renewed_sooner() -> None:
    kube, clock = FakeKube(), Clock()
    kube.account("billing")
    credentials = reader(kube, clock)
    _, client = await credentials.configs("ns", "idp", sa_spec())
    assert client.client_assertion is not None

    async def short(*args: Any, **kwargs: Any) -> dict[str, Any]:
        kube.minted.append(("ns", "billing", ISSUER, 600))
        expires = "1970-01-12T13:48:20Z"  # the clock's now + 100 s
        return {"status": {"token": f"token-{len(kube.minted)}", "expirationTimestamp": expires}}

    kube.create_service_account_token = short  # type: ignore[method-assign]
    assert await client.client_assertion.assertion() == "token-1"
    clock.now += 81
    assert await client.client_assertion.assertion() == "token-2"


def test_the_secretless_example_is_valid() -> None:
    """deploy/examples/secretless: the client validates, its ServiceAccount opts in."""
    path = Path(__file__).resolve().parents[2] / "deploy/examples/secretless/keycloak.yaml"
    docs = {doc["kind"]: doc for doc in yaml.safe_load_all(path.read_text()) if doc}
    spec = OAuth2ClientSpec.model_validate(docs["OAuth2Client"]["spec"])
    assert spec.authentication.service_account_ref is not None
    account = docs["ServiceAccount"]["metadata"]
    assert account["name"] == spec.authentication.service_account_ref.name
    assert account["labels"] == USABLE
    AccessTokenRequestSpec.model_validate(docs["AccessTokenRequest"]["spec"])
