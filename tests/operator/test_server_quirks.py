"""Authorization servers that answer introspection wrongly or lack endpoints (issue 23):
the operator says so once and never loops.

- Keycloak says `active: false` for a token whose audience lacks the introspecting
  client (a client without an audience mapper): without the `policies.introspection`
  rule every introspection replaced the token, a Warning and a new token every interval.
- A server with neither an introspection nor a revocation endpoint (Entra ID and Google
  have no revocation): oidc-provider's third provider, configured without them
  (`AuthServer.lean_issuer`), a real server and not a scripted one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.authserver.fixtures import TestClient
from tests.cluster.harness import unique_name
from tests.keycloak.fixtures import REALM, Keycloak, admin
from tests.operator.conftest import Namespace, wait_for
from tests.operator.runner import OperatorThread

INTERVAL = {"minInterval": "10s"}  # the least a client allows


@pytest.fixture
def keycloak_client_without_audience(keycloak: Keycloak) -> Iterator[TestClient]:
    """A confidential client of the realm with no audience mapper: its tokens' `aud`
    does not name it, so Keycloak's introspection through it says `active: false`."""
    client_id = unique_name("no-aud")
    secret = "no-audience-mapper:s3cret"
    with admin(keycloak.url) as http:
        created = http.post(
            f"/admin/realms/{REALM}/clients",
            json={"clientId": client_id, "enabled": True, "publicClient": False,
                  "clientAuthenticatorType": "client-secret", "secret": secret,
                  "serviceAccountsEnabled": True, "standardFlowEnabled": False},
        ).raise_for_status()  # fmt: skip
    try:
        yield TestClient(client_id, "client_secret_basic", secret)
    finally:
        with admin(keycloak.url) as http:  # anew: an admin token lives 60 s
            http.delete(created.headers["Location"]).raise_for_status()


def status_of(ns: Namespace, name: str) -> dict[str, Any]:
    return (ns.get("accesstokenrequests", name) or {}).get("status") or {}


def reasons(ns: Namespace, name: str) -> list[str]:
    return [reason for reason, _ in ns.events(name)]


@pytest.mark.keycloak
def test_keycloak_without_an_audience_mapper_is_not_believed_after_two_tokens(
    ns: Namespace,
    operator: OperatorThread,
    keycloak: Keycloak,
    keycloak_client_without_audience: TestClient,
) -> None:
    client = keycloak_client_without_audience
    ns.client(
        "idp", client, issuer=keycloak.issuer, allowInsecureHTTP=True,
        introspection=INTERVAL,
    )  # fmt: skip
    ns.request("watched", "idp", scopes=None, resources=None, introspection={"interval": "10s"})
    ns.wait_ready("watched", timeout=60)
    found = wait_for(
        "IntrospectionReliable=False",
        lambda: ns.condition("watched", "IntrospectionReliable"),
        timeout=60,
    )
    assert (found["status"], found["reason"]) == ("False", "InactiveAtIssue")
    assert "audience mapper" in found["message"]
    # The first token was replaced, its replacement is kept: three more intervals change
    # nothing (before the rule: a new token and a Warning every 10 s).
    time.sleep(30)
    status = status_of(ns, "watched")
    assert status["revision"] == 2, status
    assert reasons(ns, "watched").count("IntrospectionUnreliable") == 1
    assert reasons(ns, "watched").count("Introspected") == 1  # the first token's
    assert ns.condition("watched")["status"] == "True"  # type: ignore[index]
    assert status["lastIntrospection"]["active"] is False


def test_a_server_without_introspection_or_revocation_says_so_once(
    ns: Namespace, operator: OperatorThread
) -> None:
    client = ns.authserver.clients["client_secret_basic"]
    ns.client("idp", client, issuer=ns.authserver.lean_issuer, introspection=INTERVAL)
    ns.request("watched", "idp", introspection={"interval": "10s"})
    ns.wait_ready("watched")
    found = wait_for(
        "IntrospectionReliable=False",
        lambda: ns.condition("watched", "IntrospectionReliable"),
        timeout=30,
    )
    assert (found["status"], found["reason"]) == ("False", "IntrospectionUnsupported")
    time.sleep(25)  # two more intervals: said once, the token kept
    assert reasons(ns, "watched").count("IntrospectionUnsupported") == 1
    assert status_of(ns, "watched")["revision"] == 1
    assert ns.condition("watched")["status"] == "True"  # type: ignore[index]

    ns.delete("accesstokenrequests", "watched")
    wait_for("the request to go", lambda: ns.get("accesstokenrequests", "watched") is None)
    said = reasons(ns, "watched")
    assert "RevocationUnsupported" in said
    assert "RevocationFailed" not in said
