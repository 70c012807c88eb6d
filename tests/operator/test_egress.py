"""The operator is not a tenant's network probe (issue 22, item 4): with its default deny
list, an OAuth2Client pointing at the pod itself or at a cloud metadata address gets
`IssuerNotAllowed` and no connection is made; `--allow-issuer` and
`--forbid-insecure-http` refuse likewise; the metrics and health endpoints listen where
they are told. (The rules themselves: tests/unit/test_egress_rules.py and
test_egress_guard.py.)

These operators run with the default deny list, unlike the rest of the suite's (whose
authorization server listens on 127.0.0.1: `runner.loopback_config`).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from oauth2_token_operator.oauth2.egress import DEFAULT_DENIED
from tests.cluster.harness import free_port
from tests.connects import record_connects
from tests.operator.conftest import Namespace, wait_for
from tests.operator.runner import OperatorThread


class CountingListener:
    """A TCP listener on 127.0.0.1, in a thread, counting the connections it accepts."""

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._socket.settimeout(0.1)
        self.port: int = self._socket.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._socket.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            connection.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._socket.close()


@pytest.fixture
def listener() -> Iterator[CountingListener]:
    counting = CountingListener()
    yield counting
    counting.close()


def client_and_request(ns: Namespace, issuer: str, **spec: Any) -> None:
    ns.client("probe", ns.authserver.clients["client_secret_basic"], issuer=issuer, **spec)
    ns.request("probe", "probe")


def refused(ns: Namespace, *said: str) -> list[str]:
    """The client and its request say `IssuerNotAllowed`, with `said` in their messages
    (returned)."""
    messages = []
    for plural in ("oauth2clients", "accesstokenrequests"):
        condition = ns.wait_ready("probe", "False", "IssuerNotAllowed", plural=plural)
        for words in said:
            assert words in condition["message"], (plural, condition["message"])
        messages.append(condition["message"])
    return messages


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_the_pod_itself_is_not_reached(
    ns: Namespace,
    operator_factory: Callable[..., OperatorThread],
    listener: CountingListener,
    host: str,
) -> None:
    """`localhost` is refused for the address it resolves to."""
    operator_factory(deny_cidrs=DEFAULT_DENIED)
    client_and_request(ns, f"https://{host}:{listener.port}")
    for message in refused(ns, "is denied by the operator's --deny-cidr", "egress.denyCIDRs"):
        assert f"no connection to {host}" in message
        assert "127.0.0.0/8" in message or "::1/128" in message  # localhost: either
    assert listener.accepted == 0


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """No packet may go to a metadata address: "no connection" is proved by no attempt
    (without the deny list, the operator's discovery would be recorded here, and refused)."""
    return record_connects(monkeypatch)


def test_a_metadata_address_is_never_attempted(
    ns: Namespace, operator_factory: Callable[..., OperatorThread], connects: list[str]
) -> None:
    operator_factory(deny_cidrs=DEFAULT_DENIED)
    client_and_request(ns, "https://169.254.169.254/latest/meta-data")
    refused(ns, "no connection to 169.254.169.254, port 443: 169.254.0.0/16 is denied")
    assert connects == []


def test_an_issuer_host_not_allowed(
    ns: Namespace, operator_factory: Callable[..., OperatorThread], listener: CountingListener
) -> None:
    operator_factory(deny_cidrs=(), allow_issuers=("*.example.test", "login.example.com"))
    client_and_request(ns, f"https://127.0.0.1:{listener.port}")
    refused(
        ns,
        "the issuer's host 127.0.0.1 matches no --allow-issuer pattern of the operator"
        " (*.example.test, login.example.com)",
        "egress.allowIssuers",
    )
    assert listener.accepted == 0


def test_an_allowed_issuer_is_served(
    ns: Namespace, operator_factory: Callable[..., OperatorThread]
) -> None:
    """The tests' authorization server is on 127.0.0.1: allowed by that pattern."""
    operator_factory(deny_cidrs=(), allow_issuers=("127.0.0.1",))
    ns.client("idp", ns.authserver.clients["client_secret_basic"])
    ns.request("billing", "idp")
    ns.wait_ready("billing")


def test_plain_http_forbidden(
    ns: Namespace, operator_factory: Callable[..., OperatorThread], listener: CountingListener
) -> None:
    operator_factory(deny_cidrs=(), forbid_insecure_http=True)
    client_and_request(ns, f"http://127.0.0.1:{listener.port}", allowInsecureHTTP=True)
    refused(ns, "allowInsecureHTTP", "--forbid-insecure-http", "egress.forbidInsecureHTTP")
    assert listener.accepted == 0


def answers(url: str) -> bool:
    with contextlib.suppress(httpx.TransportError):
        return httpx.get(url).status_code == 200
    return False


def test_metrics_and_health_listen_on_the_addresses_given(
    operator_factory: Callable[..., OperatorThread],
) -> None:
    """IPv6 too: kopf's own /healthz takes its address from a URL (`[::1]`)."""
    metrics, health = free_port(), free_port()
    operator_factory(
        metrics_port=metrics,
        metrics_bind_address="127.0.0.2",
        health_port=health,
        health_bind_address="::1",
    )
    wait_for("/healthz on ::1", lambda: answers(f"http://[::1]:{health}/healthz"))
    assert httpx.get(f"http://[::1]:{health}/healthz").text != "starting\n"  # kopf's own
    assert answers(f"http://127.0.0.2:{metrics}/metrics")
    for elsewhere in ("127.0.0.1", "127.0.0.3"):
        assert not answers(f"http://{elsewhere}:{metrics}/metrics")
        assert not answers(f"http://{elsewhere}:{health}/healthz")
    assert not answers(f"http://[::1]:{metrics}/metrics")
