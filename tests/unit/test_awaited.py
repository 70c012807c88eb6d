"""Missing Secrets and ConfigMaps read again until they come (`controller.awaited`): one
read per object however many wait, a delay that doubles up to the longest, waiters
told once it holds their key, registrations that lapse, and requests told to try at
once. Against an in-memory reader; the operator tests show it with the real API server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from oauth2_token_operator.api import AccessTokenRequestSpec, OAuth2ClientSpec
from oauth2_token_operator.client_config import (
    SERVICE_ACCOUNT,
    UID,
    ClientConfigError,
    Found,
    NotUsable,
    SecretData,
    SecretKey,
)
from oauth2_token_operator.controller.shared import grants
from oauth2_token_operator.controller.shared.awaited import CLIENT, REQUEST, Awaited
from oauth2_token_operator.controller.shared.ledger import RequestKey
from oauth2_token_operator.controller.shared.scheduler import Scheduler
from tests.polling import until

DELAYS = (0.02, 0.08)


@dataclass
class Cluster:
    """Objects by (kind, namespace, name), and the reads made of them."""

    objects: dict[tuple[str, str, str], SecretData | NotUsable] = field(default_factory=dict)
    reads: list[tuple[str, str, str]] = field(default_factory=list)

    async def read(self, namespace: str, keys: list[SecretKey]) -> dict[tuple[str, str], Found]:
        wanted = {(key.kind, key.name) for key in keys}
        self.reads.extend((kind, namespace, name) for kind, name in wanted)
        return {(k, n): self.objects.get((k, namespace, n)) for k, n in wanted}


@dataclass
class Setup:
    cluster: Cluster
    awaited: Awaited
    poked_requests: list[RequestKey]
    poked_clients: list[RequestKey]


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    cluster = Cluster()
    requests: list[RequestKey] = []
    clients: list[RequestKey] = []

    async def request_action(key: RequestKey) -> None:
        requests.append(key)

    async def client_action(key: RequestKey) -> None:
        clients.append(key)

    request_scheduler: Scheduler[RequestKey] = Scheduler(request_action)
    client_scheduler: Scheduler[RequestKey] = Scheduler(client_action)
    awaited = Awaited(
        cluster.read, requests=request_scheduler, clients=client_scheduler, ttl=60, delays=DELAYS
    )
    schedulers = (request_scheduler, client_scheduler, awaited.poller)
    for each in schedulers:
        each.start("test")
    yield Setup(cluster, awaited, requests, clients)
    for each in schedulers:
        await each.stop()


def missing(name: str, key: str, kind: str = "Secret") -> ClientConfigError:
    return ClientConfigError(f"{kind}NotFound", "…", missing=SecretKey(kind, name, key))


async def test_waiters_are_told_once_the_key_is_there(setup: Setup) -> None:
    client, request = ("apps", "idp"), ("apps", "billing")
    assert setup.awaited.missing_reference((CLIENT, client), "apps", missing("creds", "secret"))
    assert setup.awaited.missing_reference((REQUEST, request), "apps", missing("creds", "secret"))
    assert not setup.awaited.missing_reference((CLIENT, client), "apps", ValueError("other"))
    await until(lambda: len(setup.cluster.reads) >= 3)
    assert setup.poked_requests == setup.poked_clients == []
    assert len(set(setup.cluster.reads)) == 1, "one object read, however many wait for it"

    # What must not wake anyone: watched for a window of several reads (a slower machine
    # reads less often in it, and can only miss a defect, never fail a correct operator).
    setup.cluster.objects[("Secret", "apps", "creds")] = {"other": "x"}  # not the key yet
    await asyncio.sleep(0.2)
    assert setup.poked_requests == setup.poked_clients == []
    setup.cluster.objects[("Secret", "apps", "creds")] = {"secret": "\n"}  # empty, as read
    await asyncio.sleep(0.2)
    assert setup.poked_requests == setup.poked_clients == []

    setup.cluster.objects[("Secret", "apps", "creds")] = {"secret": "s3cr3t"}
    await until(lambda: setup.poked_clients == [client])
    assert setup.poked_requests == [request]
    assert setup.awaited.take_retry(request), "the request tries at once"
    assert not setup.awaited.take_retry(request), "once"
    assert len(setup.awaited) == 0
    reads = len(setup.cluster.reads)
    await asyncio.sleep(0.2)
    assert len(setup.cluster.reads) == reads, "no more reads once it came"


async def test_a_secret_without_the_opt_in_label_is_waited_for_until_it_has_it(
    setup: Setup,
) -> None:
    """A Secret that does not grant its use (`SecretNotUsable`) is read again like a
    missing one, and its waiter poked once the label is there (issue 22, item 5)."""
    client = ("apps", "idp")
    setup.cluster.objects[("Secret", "apps", "creds")] = NotUsable("apps", "creds")
    refused = ClientConfigError("SecretNotUsable", "…", missing=SecretKey("Secret", "creds", "s"))
    assert setup.awaited.missing_reference((CLIENT, client), "apps", refused)
    await until(lambda: len(setup.cluster.reads) >= 3)
    assert setup.poked_clients == []
    setup.cluster.objects[("Secret", "apps", "creds")] = {"s": "s3cr3t"}  # labelled now
    await until(lambda: setup.poked_clients == [client])
    assert len(setup.awaited) == 0


async def test_a_registration_lapses_unless_renewed(setup: Setup) -> None:
    setup.awaited._ttl = 0.1
    setup.awaited.missing((CLIENT, ("apps", "idp")), "apps", SecretKey("ConfigMap", "ca", "ca"))
    await until(lambda: len(setup.awaited) == 0)
    reads = len(setup.cluster.reads)
    await asyncio.sleep(0.2)
    assert len(setup.cluster.reads) == reads
    setup.cluster.objects[("ConfigMap", "apps", "ca")] = {"ca": "pem"}
    await asyncio.sleep(0.1)
    assert setup.poked_clients == []


def resolved(
    request_namespace: str, client_namespace: str, secret: str
) -> tuple[AccessTokenRequestSpec, str, OAuth2ClientSpec]:
    """What a failed issuance tells `Awaited`: the request's spec, where its client is,
    and the client's spec."""
    client = OAuth2ClientSpec.model_validate(
        {
            "issuer": "https://login.example.com",
            "clientId": "billing",
            "authentication": {
                "method": "client_secret_basic",
                "clientSecretRef": {"name": "creds", "key": "secret"},
            },
        }
    )
    spec = AccessTokenRequestSpec.model_validate(
        {
            "clientRef": {"name": "idp", "namespace": client_namespace},
            "grant": "refresh_token",
            "refreshTokenSecretRef": {"name": secret, "key": "secret"},
        }
    )
    return spec, client_namespace, client


async def test_a_failed_issuance_waits_where_the_key_is(setup: Setup) -> None:
    request = ("team", "billing")
    # The client's key, in the client's namespace; the refresh token's, in the request's.
    assert setup.awaited.issuance_failed(
        request, *resolved("team", "idp", "rt"), missing("creds", "secret")
    )
    assert setup.awaited.issuance_failed(
        request, *resolved("team", "idp", "rt"), missing("rt", "secret")
    )
    # Named alike in both namespaces: which one is missing is unknown, so neither.
    same = resolved("team", "idp", "creds")
    assert not setup.awaited.issuance_failed(request, *same, missing("creds", "secret"))
    assert not setup.awaited.issuance_failed(request, *same, missing("unrelated", "secret"))
    expected = {("Secret", "idp", "creds"), ("Secret", "team", "rt")}
    await until(lambda: set(setup.cluster.reads) >= expected)
    assert set(setup.cluster.reads) == expected


async def test_a_refused_value_wakes_its_waiter_only_once_replaced(setup: Setup) -> None:
    """A refresh token the server refused: the request waits for another one there."""
    request = ("apps", "billing")
    setup.cluster.objects[("Secret", "apps", "grant")] = {"refresh_token": "refused\n"}
    key = SecretKey("Secret", "grant", "refresh_token")
    setup.awaited.awaiting_change((REQUEST, request), "apps", key, grants.digest("refused"))
    await asyncio.sleep(0.2)
    assert setup.poked_requests == [], "the same value (as read: one line break dropped)"
    setup.cluster.objects[("Secret", "apps", "grant")] = {"refresh_token": "new"}
    await until(lambda: setup.poked_requests == [request])
    assert setup.awaited.take_retry(request)
    assert len(setup.awaited) == 0


async def test_an_exchange_waits_for_its_subjects_next_token(setup: Setup) -> None:
    """A `token_exchange` request whose subject request holds no usable token (or one the
    server refused) is poked when that request holds another, at once, not before."""
    waiter, subject = ("apps", "for-api"), ("apps", "service")
    setup.awaited.awaiting_subject(waiter, subject, grants.digest("refused"))
    assert setup.awaited.awaits_subject(subject)
    setup.awaited.subject_held(subject, grants.digest("refused"))
    await asyncio.sleep(0.05)
    assert setup.poked_requests == [], "the token it could not use"
    setup.awaited.subject_held(subject, grants.digest("new"))
    await until(lambda: setup.poked_requests == [waiter])
    assert setup.awaited.take_retry(waiter)
    assert not setup.awaited.awaits_subject(subject)


async def test_a_subject_wait_lapses(setup: Setup) -> None:
    setup.awaited._ttl = 0.05
    setup.awaited.awaiting_subject(("apps", "for-api"), ("apps", "service"), None)
    await asyncio.sleep(0.1)
    setup.awaited.subject_held(("apps", "service"), grants.digest("new"))
    await asyncio.sleep(0.05)
    assert setup.poked_requests == []
    assert not setup.awaited.awaits_subject(("apps", "service"))
    # A wait on a request that never comes (nor holds a token) lapses too: swept when
    # another wait is registered, at most once per `ttl`.
    setup.awaited.awaiting_subject(("apps", "for-api"), ("apps", "never"), None)
    await asyncio.sleep(0.1)
    setup.awaited.awaiting_subject(("apps", "other"), ("apps", "service"), None)
    assert not setup.awaited.awaits_subject(("apps", "never"))


async def test_an_exchange_waits_for_its_service_account(setup: Setup) -> None:
    """A `token_exchange` of a ServiceAccount's token: the ServiceAccount missing (or
    without the opt-in label) is waited for in the request's namespace."""
    request = ("team", "billing")
    _, client_namespace, client = resolved("idp", "idp", "rt")
    spec = AccessTokenRequestSpec.model_validate({
        "clientRef": {"name": "c", "namespace": "idp"}, "grant": "token_exchange",
        "tokenExchange": {"subjectTokenFrom": {"serviceAccountRef": {"name": "deployer"}}},
    })  # fmt: skip
    assert setup.awaited.issuance_failed(
        request, spec, client_namespace, client, missing("deployer", UID, SERVICE_ACCOUNT)
    )
    await until(lambda: ("ServiceAccount", "team", "deployer") in setup.cluster.reads)
    setup.cluster.objects[("ServiceAccount", "team", "deployer")] = {UID: "u1"}
    await until(lambda: setup.poked_requests == [request])
