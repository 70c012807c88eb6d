"""The `token_exchange` grant's pure parts (`policies.exchange`, its spec, its subject):
when another request's token may be sent, what a server's refusal means, and whose
token an exchanged one is."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from urllib.parse import parse_qs

import pytest
import yaml
from pydantic import BaseModel

from oauth2_token_operator.api import AccessTokenRequestSpec, OAuth2ClientSpec
from oauth2_token_operator.client_config import SERVICE_ACCOUNT, UID, SecretKey
from oauth2_token_operator.controller.shared import grants
from oauth2_token_operator.manager import InMemoryTokenStore, TokenManager
from oauth2_token_operator.oauth2 import ClientConfig, IssuerConfig
from oauth2_token_operator.oauth2.authorization_server import JWT_TOKEN_TYPE
from oauth2_token_operator.oauth2.errors import error_response
from oauth2_token_operator.policies.exchange import (
    SUBJECT_ELSEWHERE,
    SUBJECT_IS_SELF,
    SUBJECT_NOT_FOUND,
    SUBJECT_NOT_READY,
    SUBJECT_REJECTED,
    SubjectFacts,
    exchange_refusal,
    subject_refusal,
)
from oauth2_token_operator.policies.failures import classify
from oauth2_token_operator.policies.identity import TokenIdentity
from tests.api.cases import EXCHANGE, SA_EXCHANGE_SOURCE, VALID_REQUEST
from tests.faults import Respond, fault_server

READY = SubjectFacts(name="service", is_self=False, exists=True, token_usable=True,
                     same_server=True)  # fmt: skip


def facts(**changes: object) -> SubjectFacts:
    return dataclasses.replace(READY, **changes)  # type: ignore[arg-type]


def test_a_valid_token_of_the_same_server_is_sent() -> None:
    assert subject_refusal(READY) is None


@pytest.mark.parametrize(
    ("changes", "reason", "retry"),
    [
        ({"is_self": True}, SUBJECT_IS_SELF, False),
        ({"exists": False, "token_usable": None, "same_server": None}, SUBJECT_NOT_FOUND, True),
        ({"token_usable": None, "same_server": None}, SUBJECT_NOT_READY, True),
        ({"token_usable": False}, SUBJECT_NOT_READY, True),
        # The subject's client is unusable now: which server issued its token is unknown.
        ({"same_server": None}, SUBJECT_NOT_READY, True),
        # Never handed to another server (or another configuration: endpoints, TLS).
        ({"same_server": False}, SUBJECT_ELSEWHERE, False),
    ],
)
def test_a_subject_token_is_not_sent(changes: dict[str, object], reason: str, retry: bool) -> None:
    refusal = subject_refusal(facts(**changes))
    assert refusal is not None
    failure = classify(refusal)
    assert (failure.reason, failure.retry) == (reason, retry)
    assert "service" in failure.message or reason == SUBJECT_IS_SELF


@pytest.mark.parametrize("code", ["invalid_request", "invalid_grant", "invalid_token"])
def test_a_refused_subject_token_is_said_so(code: str) -> None:
    exc = error_response(
        endpoint="token_endpoint", status_code=400, error=code, error_description="Invalid token"
    )
    refusal = exchange_refusal(exc, "service")
    assert refusal is not None
    failure = classify(refusal)
    assert (failure.reason, failure.retry) == (SUBJECT_REJECTED, True)
    assert "Invalid token" not in failure.message, "the server's words are not repeated"
    # Classified alone, an invalid_grant would read as a refused refresh token.
    assert classify(exc).reason != SUBJECT_REJECTED


@pytest.mark.parametrize("service_account", [False, True])
def test_a_client_not_allowed_to_exchange_is_said_so(service_account: bool) -> None:
    """Keycloak's legacy token exchange refuses a client without the permission to
    exchange with 403 `access_denied`; alone, that would be a bare `IssuanceFailed`."""
    exc = error_response(
        endpoint="token_endpoint", status_code=403, error="access_denied",
        error_description="Client not allowed to exchange",
    )  # fmt: skip
    refusal = exchange_refusal(exc, "service", service_account=service_account)
    assert refusal is not None
    failure = classify(refusal)
    assert (failure.reason, failure.retry) == (SUBJECT_REJECTED, True)
    assert "does not let this client exchange the token of service" in failure.message
    assert "Client not allowed" not in failure.message, "the server's words are not repeated"
    assert ("backoff" in failure.message) is service_account
    assert classify(exc).reason == "IssuanceFailed"


@pytest.mark.parametrize(
    ("status", "code"),
    [(401, "invalid_request"), (400, "access_denied"), (400, "invalid_client"),
     (400, "invalid_scope"), (401, "unauthorized_client"), (503, "temporarily_unavailable")],
)  # fmt: skip
def test_other_failures_keep_their_classification(status: int, code: str) -> None:
    exc = error_response(endpoint="token_endpoint", status_code=status, error=code)
    assert exchange_refusal(exc, "service") is None


def test_the_exchanged_token_is_the_subject_requests_whatever_its_token() -> None:
    """Its identity names the subject request, not that request's token: the subject's
    renewal changes nothing here (no re-exchange for a "new spec"), and two requests
    exchanging the same request's token for the same share one token."""
    spec = AccessTokenRequestSpec.model_validate(
        {**VALID_REQUEST, "grant": "token_exchange", "tokenExchange": EXCHANGE, "audience": "api"}
    )
    assert spec.token_exchange is not None
    source = spec.token_exchange.subject_token_from
    assert source.access_token_request_ref is not None
    assert source.access_token_request_ref.name == "service"
    assert grants.subject_account(spec) is None
    subject = grants.subject_of(spec, "apps")
    assert subject == "exchange:apps/service"
    assert grants.source_ref(spec) is None  # no Secret is read
    assert "token_exchange" in grants.RENEWABLE
    identity = TokenIdentity(
        issuer="https://login.example.com", client_id="exchanger", client="apps/x",
        grant="token_exchange", subject=subject, scopes=None, resources=(), audience="api",
    )  # fmt: skip
    other = TokenIdentity(**{**identity.__dict__, "subject": "exchange:apps/other"})
    assert identity.fingerprint() != other.fingerprint()


def test_the_example_is_valid() -> None:
    """deploy/examples/token-exchange-request.yaml parses as the models say."""
    path = Path(__file__).resolve().parents[2] / "deploy/examples/token-exchange-request.yaml"
    docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    kinds: dict[str, type[BaseModel]] = {
        "OAuth2Client": OAuth2ClientSpec,
        "AccessTokenRequest": AccessTokenRequestSpec,
    }
    specs = [kinds[doc["kind"]].model_validate(doc["spec"]) for doc in docs if doc["kind"] in kinds]
    clients = {doc["metadata"]["name"] for doc in docs if doc["kind"] == "OAuth2Client"}
    assert all(s.client_ref.name in clients for s in specs if isinstance(s, AccessTokenRequestSpec))
    by_request, by_account = [
        s.token_exchange.subject_token_from
        for s in specs
        if isinstance(s, AccessTokenRequestSpec) and s.token_exchange is not None
    ]
    names = {(doc["kind"], doc["metadata"]["name"]) for doc in docs}
    assert by_request.access_token_request_ref is not None
    assert ("AccessTokenRequest", by_request.access_token_request_ref.name) in names
    assert by_account.service_account_ref is not None
    assert ("ServiceAccount", by_account.service_account_ref.name) in names
    (account,) = [doc for doc in docs if doc["kind"] == "ServiceAccount"]
    assert account["metadata"]["labels"] == {"oauth2.token-operator.io/usable-by-operator": "true"}


def test_a_service_accounts_token_is_a_subject_of_its_own() -> None:
    """`serviceAccountRef`: the exchanged token is the ServiceAccount's (and its
    audience's), never shared with an exchange of a request's token; the ServiceAccount
    is read in the request's namespace like a client's."""
    spec = AccessTokenRequestSpec.model_validate(
        {**VALID_REQUEST, "grant": "token_exchange",
         "tokenExchange": {"subjectTokenFrom": SA_EXCHANGE_SOURCE}}
    )  # fmt: skip
    assert grants.subject_of(spec, "apps") == (
        "exchange:serviceaccount:apps/billing#https://sts.example.com"
    )
    assert grants.subject_account(spec) == SecretKey(SERVICE_ACCOUNT, "billing", UID)
    default = AccessTokenRequestSpec.model_validate(
        {**VALID_REQUEST, "grant": "token_exchange",
         "tokenExchange": {"subjectTokenFrom": {"serviceAccountRef": {"name": "billing"}}}}
    )  # fmt: skip
    # Its default audience, the client's issuer, is part of the identity already.
    assert grants.subject_of(default, "apps") == "exchange:serviceaccount:apps/billing"
    request = AccessTokenRequestSpec.model_validate(
        {**VALID_REQUEST, "grant": "token_exchange", "tokenExchange": EXCHANGE}
    )
    assert grants.subject_of(request, "apps") != grants.subject_of(default, "apps")


def test_a_refused_service_account_token_is_said_so() -> None:
    exc = error_response(
        endpoint="token_endpoint", status_code=400, error="invalid_token",
        error_description="token type not supported",
    )  # fmt: skip
    refusal = exchange_refusal(exc, "ServiceAccount apps/billing", service_account=True)
    assert refusal is not None
    failure = classify(refusal)
    assert (failure.reason, failure.retry) == (SUBJECT_REJECTED, True)
    assert "ServiceAccount apps/billing" in failure.message
    assert "trust the cluster's ServiceAccount tokens" in failure.message
    assert "next token" not in failure.message  # no request's token is awaited
    assert "token type not supported" not in failure.message


async def test_a_lazy_subject_token_is_asked_for_only_when_an_exchange_is_made() -> None:
    """`TokenManager.exchange` with a callable subject token (how the operator passes a
    ServiceAccount's): called for the one exchange made, sent with its type; a second
    call for the same is served by the stored token, nothing asked, nothing sent."""
    asked: list[str] = []

    async def subject_token() -> str:
        asked.append("minted")
        return "header.payload.signature"

    answer = {"access_token": "exchanged", "token_type": "Bearer", "expires_in": 600}
    async with fault_server(Respond(body=answer)) as server:
        issuer = IssuerConfig(
            server.url,
            allow_insecure_http=True,
            discovery=False,
            metadata_overrides={"token_endpoint": f"{server.url}/token"},
        )
        client = ClientConfig(client_id="c", auth_method="client_secret_post", client_secret="s")
        async with TokenManager(InMemoryTokenStore()) as manager:
            for _ in range(2):
                token = await manager.exchange(
                    subject_token, issuer, client, subject="exchange:serviceaccount:apps/b",
                    scopes=["read"], subject_token_type=JWT_TOKEN_TYPE,
                )  # fmt: skip
                assert token.value == "exchanged"
        assert asked == ["minted"]
        (sent,) = server.requests
        form = {k: v[0] for k, v in parse_qs(sent.body.decode()).items()}
        assert form["subject_token"] == "header.payload.signature"
        assert form["subject_token_type"] == JWT_TOKEN_TYPE
