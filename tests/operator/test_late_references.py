"""Objects created after what names them (issue 21): `kubectl apply -f deploy/examples/`
applies a request before its client. A request waiting for its client is Ready within
seconds of the client's creation, in its namespace or another; a Secret created after
the client or request that names it is picked up within `awaited`'s window (about
15 s), not at the next failure backoff nor never.

The operator here backs off 30 to 60 s after a first failure (`retry_base_delay`), so
that a request that only retried on its backoff could not pass: the prompt pickup is
the operator being told, not the backoff coming round.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.operator.conftest import Namespace
from tests.operator.runner import OperatorThread

PICKUP_WINDOW = 20.0
"""`awaited`: a missing object is read again at most every 10 s, through the 5 s cache
of the credentials; 5 s more for a loaded machine."""
CLIENT_WINDOW = 5.0


@pytest.fixture
def slow_backoff(operator_factory: Callable[..., OperatorThread]) -> OperatorThread:
    return operator_factory(min_renewal_lead=5.0, revocation_deadline=5.0, retry_base_delay=60.0)


def test_requests_waiting_for_their_client_are_ready_once_it_comes(
    ns: Namespace, slow_backoff: OperatorThread
) -> None:
    """Requests created first (one in another namespace, naming it by clientRef.namespace)
    stay ClientNotFound; the client comes 2 s later and they are Ready within seconds."""
    started = time.monotonic()
    other = ns.sibling("team")
    ns.request("billing", "idp")
    other.request("billing", "idp", clientRef={"name": "idp", "namespace": ns.name})
    ns.wait_ready("billing", status="False", reason="ClientNotFound")
    other.wait_ready("billing", status="False", reason="ClientNotFound")
    time.sleep(max(0.0, started + 2.0 - time.monotonic()))

    ns.client("idp", ns.authserver.clients["client_secret_basic"],
              allowedNamespaces={"names": [other.name]})  # fmt: skip
    created = time.monotonic()
    ns.wait_ready("billing", timeout=CLIENT_WINDOW)
    other.wait_ready("billing", timeout=CLIENT_WINDOW)
    print(f"both Ready {time.monotonic() - created:.1f} s after the client was created")
    assert ns.token_secret("billing") is not None
    assert other.token_secret("billing") is not None


def test_a_credentials_secret_created_after_the_client_and_the_request(
    ns: Namespace, slow_backoff: OperatorThread
) -> None:
    """The client and the request fail on its missing Secret (the request then backs off
    for 30 s or more); the Secret comes and both are Ready within the window."""
    test_client = ns.authserver.clients["client_secret_basic"]
    assert test_client.client_secret is not None
    ns.create(
        "oauth2clients",
        "idp",
        {
            "issuer": ns.authserver.issuer,
            "clientId": test_client.client_id,
            "authentication": {
                "method": "client_secret_basic",
                "clientSecretRef": {"name": "idp-credentials", "key": "client-secret"},
            },
            "tls": {"caBundle": ns.authserver.ca_bundle.read_text()},
        },
    )
    ns.request("billing", "idp")
    ns.wait_ready("idp", status="False", reason="SecretNotFound", plural="oauth2clients")
    ns.wait_ready("billing", status="False", reason="SecretNotFound")
    time.sleep(5)  # the object has been missing a while: its reads are backing off

    ns.secret("idp-credentials", {"client-secret": test_client.client_secret})
    created = time.monotonic()
    ns.wait_ready("billing", timeout=PICKUP_WINDOW)
    print(f"Ready {time.monotonic() - created:.1f} s after the Secret was created")
    ns.wait_ready("idp", plural="oauth2clients", timeout=PICKUP_WINDOW)
    status = (ns.get("accesstokenrequests", "billing") or {})["status"]
    assert status["failedAttempts"] == 0
    assert ns.token_secret("billing") is not None


def test_grant_secrets_created_after_their_requests(
    ns: Namespace, slow_backoff: OperatorThread
) -> None:
    """A refresh_token request (its issuance fails and backs off) and a register request
    (blocked, with no failure to back off from) whose Secrets come later."""
    server = ns.authserver
    client = server.clients["client_secret_basic"]
    ns.client("idp", client)
    ns.refresh_request("api", "idp", "user-grant")
    ns.register_request("tracked", "idp", "external")
    ns.wait_ready("api", status="False", reason="SecretNotFound")
    ns.wait_ready("tracked", status="False", reason="SecretNotFound")
    time.sleep(3)

    granted = server.password_grant(client, ["read"], resource=server.resource)
    external = ns.external_token(client)
    ns.secret("user-grant", {"refresh_token": granted["refresh_token"]})
    ns.secret("external", {"token": external})
    created = time.monotonic()
    for name in ("tracked", "api"):
        ns.wait_ready(name, timeout=max(1.0, created + PICKUP_WINDOW - time.monotonic()))
    print(f"both Ready {time.monotonic() - created:.1f} s after their Secrets were created")
    assert (ns.token_secret("tracked") or {})["access_token"] == external
