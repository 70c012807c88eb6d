"""API server faults: 500s, 429 with Retry-After and dropped connections on the
operator's writes and kopf's calls, a concurrent writer of the status, and an expired
watch (410 Gone). (A real 409 on Secret writes: `test_secret_writer.py`; a dropped
watch: `test_apiserver_restart.py`.)

The real API server produces what it can: an expired watch comes from a real
kube-apiserver restart over an etcd whose revision moved on and was compacted, and the
concurrent status writer is a real client. It cannot be made to answer 500 or 429, or
to drop a connection after a request, on demand, so those come from
`tests/apiserver_proxy.py`, an HTTP proxy in front of it that forwards everything else
and records every request it sees.

Why no real 409 on status writes: the operator merge-patches the status subresource
without a `resourceVersion` (`KubeApi.patch_status`), so the API server applies it
whatever was written in between; a conflict cannot occur. (kopf's finalizer edits are
JSON patches guarded by a resourceVersion test: a lost race there is a 422 that kopf
applies again on the next event, kopf/_cogs/clients/patching.py.) What matters instead
is that another writer's status changes neither get lost by nor start a fight with the
operator.
"""

from __future__ import annotations

import itertools
import logging
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from kubernetes.client.exceptions import ApiException

from oauth2_token_operator.api.crd import GROUP, VERSION
from tests.apiserver_proxy import DROP, ApiServerProxy, Seen, apiserver_proxy
from tests.authserver.fixtures import AuthServer
from tests.cluster import etcd
from tests.cluster.harness import KubeCluster, free_port, use_existing_cluster
from tests.integration.conftest import Counters
from tests.operator.conftest import Namespace, wait_for
from tests.operator.own_plane import assert_still_serving, operator_on_own_plane
from tests.operator.runner import OperatorThread

pytestmark = [pytest.mark.cluster, pytest.mark.authserver]

STATUS_PATH = rf"/apis/{GROUP}/{VERSION}/namespaces/{{ns}}/accesstokenrequests/{{name}}/status$"
SECRETS_PATH = r"/api/v1/namespaces/{ns}/secrets$"


@pytest.fixture
def proxy(kube_cluster: KubeCluster) -> Iterator[ApiServerProxy]:
    """Listed before `ns` in a test's arguments, it is set up before the operator and
    stopped after it (and after `ns` has emptied the namespace through it)."""
    with apiserver_proxy(kube_cluster.configuration()) as started:
        yield started


def behind_proxy(
    proxy: ApiServerProxy, ns: Namespace, start: Callable[..., OperatorThread], **config: Any
) -> None:
    """The operator behind `proxy`, and client `idp` in `ns`."""
    start(configuration=proxy.configuration(), **config)
    ns.client("idp", ns.authserver.clients["client_secret_basic"])


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def gaps(attempts: list[Seen]) -> list[float]:
    return [later.at - earlier.at for earlier, later in itertools.pairwise(attempts)]


def test_secret_creates_answered_500_are_retried_with_backoff(
    proxy: ApiServerProxy,
    ns: Namespace,
    operator_factory: Callable[..., OperatorThread],
    counters: Counters,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Three 500s on the Secret create: the operator backs off, writes exactly one Secret
    with the token it already holds (no second token request), and reaches Ready."""
    secrets = SECRETS_PATH.format(ns=ns.name)
    fault = proxy.fail("POST", secrets, 500, times=3)
    behind_proxy(proxy, ns, operator_factory, retry_base_delay=1.0, retry_max_delay=4.0)
    before = counters.delta("client=cs-basic /token")
    ns.request("faulty", "idp")

    ns.wait_ready("faulty", timeout=60)
    assert fault.answered == 3
    creates = proxy.requests("POST", secrets)
    assert [(c.status, c.injected) for c in creates] == [(500, True)] * 3 + [(201, False)]
    # Backoff: 1, 2, 4 s steps with jitter in [1/2, 1] of each, so never under half a second.
    assert min(gaps(creates)) >= 0.5, gaps(creates)
    assert ns.token_secret("faulty") is not None
    assert counters.delta("client=cs-basic /token") - before == 1, "the token was kept"
    assert any(reason == "IssuanceFailed" for reason, _ in ns.events("faulty"))
    assert not errors(caplog)


def test_status_patches_answered_429_are_retried_after_retry_after(
    proxy: ApiServerProxy,
    ns: Namespace,
    operator_factory: Callable[..., OperatorThread],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Three 429s with `Retry-After: 2` on the status patch: the operator tries again no
    sooner than the server asked, and reaches Ready with one Secret."""
    status = STATUS_PATH.format(ns=ns.name, name="throttled")
    fault = proxy.fail("PATCH", status, 429, times=3, retry_after=2)
    behind_proxy(proxy, ns, operator_factory, retry_base_delay=1.0)
    ns.request("throttled", "idp")

    ns.wait_ready("throttled", timeout=60)
    assert fault.answered == 3
    patches = proxy.requests("PATCH", status)
    # Retried by the operator, not by the kubernetes client (it retries no PATCH), and
    # not sooner when its own Secret's watch event comes in meanwhile.
    assert [p.status for p in patches] == [429, 429, 429, 200]
    assert min(gaps(patches)) >= 2.0 - 0.05, gaps(patches)  # clock granularity
    creates = proxy.requests("POST", SECRETS_PATH.format(ns=ns.name))
    assert [c.status for c in creates] == [201]
    assert not errors(caplog), "a failed status write is no handler failure"


@pytest.mark.parametrize(
    ("method", "path", "success"),
    [
        # The status patch fails: the operator's backoff for failed API writes.
        ("PATCH", STATUS_PATH.format(ns="{ns}", name="changed"), 200),
        # The Secret create fails: the issuance fails, and backs off as failures do.
        ("POST", SECRETS_PATH, 201),
    ],
    ids=["status patch", "Secret create"],
)
def test_a_new_spec_waits_for_the_servers_retry_after_not_the_old_specs_backoff(
    method: str,
    path: str,
    success: int,
    proxy: ApiServerProxy,
    ns: Namespace,
    operator_factory: Callable[..., OperatorThread],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A write answered 429 (`Retry-After: 2`) puts the request in a backoff of 30 to
    60 s (`retry_base_delay=60`). The spec then changes: the operator tries the new one
    as soon as the server allows, and no sooner: the server asked the operator to wait,
    the backoff was the old spec's."""
    path = path.format(ns=ns.name)
    fault = proxy.fail(method, path, 429, times=1, retry_after=2)
    behind_proxy(proxy, ns, operator_factory, retry_base_delay=60.0)
    ns.request("changed", "idp")
    wait_for("the write refused", lambda: fault.answered == 1)
    ns.patch("accesstokenrequests", "changed", {"spec": {"renewBefore": "120s"}})

    ns.wait_ready("changed", timeout=20)
    attempts = proxy.requests(method, path)
    assert [a.status for a in attempts] == [429, success]
    assert 2.0 - 0.05 <= gaps(attempts)[0] < 20, gaps(attempts)
    request = ns.get("accesstokenrequests", "changed") or {}
    assert request["status"]["observedGeneration"] == request["metadata"]["generation"] == 2
    assert not errors(caplog)


def test_client_status_patches_answered_500_are_retried(
    proxy: ApiServerProxy,
    ns: Namespace,
    operator_factory: Callable[..., OperatorThread],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The same for an OAuth2Client's status: two 500s, then its Ready condition. (An
    event in between, kopf adding its finalizer, may bring an attempt sooner: clients
    are few and do not defer to the backoff as requests do.)"""
    status = rf"/apis/{GROUP}/{VERSION}/namespaces/{ns.name}/oauth2clients/idp/status$"
    fault = proxy.fail("PATCH", status, 500, times=2)
    behind_proxy(proxy, ns, operator_factory, retry_base_delay=1.0)

    ns.wait_ready("idp", plural="oauth2clients")
    assert fault.answered == 2
    patches = proxy.requests("PATCH", status)
    assert [p.status for p in patches] == [500, 500, 200]
    assert gaps(patches)[-1] >= 1.0 - 0.05, gaps(patches)
    assert not errors(caplog)


def test_a_status_patch_whose_connection_drops_is_retried(
    proxy: ApiServerProxy,
    ns: Namespace,
    operator_factory: Callable[..., OperatorThread],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The connection closes after the status patch is sent, before any answer (an API
    server or a load balancer going away). The kubernetes client retries no PATCH and
    raises urllib3's ProtocolError, not an ApiException; the operator backs off and
    patches again (a merge patch: applying it twice is harmless)."""
    status = STATUS_PATH.format(ns=ns.name, name="dropped")
    fault = proxy.fail("PATCH", status, DROP, times=2)
    behind_proxy(proxy, ns, operator_factory, retry_base_delay=1.0)
    ns.request("dropped", "idp")

    ns.wait_ready("dropped", timeout=30)
    assert fault.answered == 2
    assert [p.status for p in proxy.requests("PATCH", status)] == [DROP, DROP, 200]
    assert not errors(caplog)


def test_secret_repairs_answered_429_past_the_clients_retries_are_retried(
    proxy: ApiServerProxy,
    ns: Namespace,
    operator_factory: Callable[..., OperatorThread],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A tampered Secret is put back with a PUT, which the kubernetes client retries
    itself on 429 with Retry-After (urllib3's default `Retry(3)`, for idempotent methods
    only), sleeping as asked. When those run out it raises the last 429; the operator
    then backs off (at least the Retry-After) and repairs."""
    behind_proxy(proxy, ns, operator_factory, retry_base_delay=1.0)
    ns.request("repaired", "idp")
    ns.wait_ready("repaired")
    original = ns.token_secret("repaired")
    secret = rf"/api/v1/namespaces/{ns.name}/secrets/repaired$"
    fault = proxy.fail("PUT", secret, 429, times=4, retry_after=1)

    ns.core.patch_namespaced_secret(
        "repaired", ns.name, {"stringData": {"access_token": "tampered"}}
    )
    wait_for("the Secret restored", lambda: ns.token_secret("repaired") == original)
    assert fault.answered == 4
    puts = proxy.requests("PUT", secret)
    assert [p.status for p in puts] == [429] * 4 + [200]
    assert min(gaps(puts)) >= 1.0 - 0.05, gaps(puts)
    assert not errors(caplog)


def test_kopfs_own_requests_are_retried_by_kopf(
    proxy: ApiServerProxy,
    ns: Namespace,
    operator_factory: Callable[..., OperatorThread],
) -> None:
    """kopf's own calls (its listing, its finalizer patch) go through kopf's client, which
    retries 5xx and 429 itself: after its backoffs (1, 1, 2, 3, ... s), or after the
    Retry-After when that is longer (kopf/_cogs/clients/api.py, `request`)."""
    listing = rf"/apis/{GROUP}/{VERSION}/accesstokenrequests$"
    request = rf"/apis/{GROUP}/{VERSION}/namespaces/{ns.name}/accesstokenrequests/kopf$"
    proxy.fail("GET", listing, 429, times=1, retry_after=2, agent="kopf")
    proxy.fail("PATCH", request, 429, times=1, retry_after=3)
    proxy.fail("PATCH", request, 500, times=1)
    behind_proxy(proxy, ns, operator_factory)
    ns.request("kopf", "idp")

    ns.wait_ready("kopf", timeout=60)
    lists = proxy.requests("GET", listing, agent="kopf")[:2]
    assert [(s.status, "watch=true" in s.query) for s in lists] == [(429, False), (200, False)]
    assert gaps(lists)[0] >= 2.0 - 0.05
    patches = proxy.requests("PATCH", request)  # the finalizer
    assert [p.status for p in patches] == [429, 500, 200]
    after_429, after_500 = gaps(patches)
    assert after_429 >= 3.0 - 0.05, "Retry-After (longer than kopf's first backoff)"
    assert after_500 >= 1.0 - 0.05, "kopf's second backoff"


def test_the_informers_listing_answered_429_is_retried_after_retry_after(
    proxy: ApiServerProxy,
    ns: Namespace,
    operator_factory: Callable[..., OperatorThread],
) -> None:
    """The operator's own informers (`kube.informer`) list at its start: a 429 is tried
    again after its Retry-After (by the kubernetes client's urllib3, which does so for a
    GET), a 500 after the informer's own backoff; the operator then serves as usual."""
    secrets = r"/api/v1/secrets$"
    clients = rf"/apis/{GROUP}/{VERSION}/oauth2clients$"
    proxy.fail("GET", secrets, 429, times=1, retry_after=2, agent="OpenAPI-Generator")
    proxy.fail("GET", clients, 500, times=2, agent="OpenAPI-Generator")
    behind_proxy(proxy, ns, operator_factory)
    ns.request("after", "idp")
    ns.wait_ready("after", timeout=60)

    listed = proxy.requests("GET", secrets, agent="OpenAPI-Generator")
    assert [(s.status, "watch=true" in s.query) for s in listed[:3]] == [
        (429, False),
        (200, False),
        (200, True),
    ]
    assert gaps(listed)[0] >= 2.0 - 0.05
    listed = proxy.requests("GET", clients, agent="OpenAPI-Generator")
    assert [s.status for s in listed[:3]] == [500, 500, 200]


def test_alive_while_the_informers_wait_for_the_api_server(
    proxy: ApiServerProxy,
    ns: Namespace,
    operator_factory: Callable[..., OperatorThread],
) -> None:
    """kopf serves /healthz only once `on.startup` is over, and the informers list there
    until the API server answers: meanwhile the operator answers "starting", so that the
    kubelet does not restart a process that is only waiting. Then kopf's endpoint."""
    port = free_port()
    secrets = r"/api/v1/secrets$"
    proxy.fail("GET", secrets, 503, agent="OpenAPI-Generator")  # until cleared
    operator_factory(configuration=proxy.configuration(), wait=False, health_port=port)
    assert wait_for("/healthz while starting", lambda: health(port)) == "starting\n"
    wait_for("two listings refused", lambda: len(proxy.requests("GET", secrets)) >= 2)
    assert health(port) == "starting\n"
    proxy.clear()
    wait_for("kopf's own /healthz", lambda: health(port) not in (None, "starting\n"))
    ns.client("idp", ns.authserver.clients["client_secret_basic"])
    ns.request("after", "idp")
    ns.wait_ready("after")


def health(port: int) -> str | None:
    """What /healthz answers with 200, if it does."""
    try:
        answer = httpx.get(f"http://127.0.0.1:{port}/healthz")
    except httpx.TransportError:
        return None
    return answer.text if answer.status_code == 200 else None


@pytest.mark.skipif(use_existing_cluster(), reason="restarts its own kube-apiserver")
def test_an_expired_watch_is_listed_again(
    authserver: AuthServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A real 410 Gone: while kube-apiserver is down, etcd's revision moves on (a write
    outside /registry) and is compacted. The restarted API server's watch cache starts at
    the new revision, so every watch the operator resumes from its last resourceVersion
    is answered with an ERROR event, code 410 (a plain restart gives some watches a 410
    too, from the API server's own writes at start, but not surely all). kopf and the
    operator's informers list again; the operator then still restores its tampered
    Secret and serves a request created after the fault. A control plane of its own,
    since restarting the session's would disturb other tests."""
    # In this order: each call also sets the capturing handler's level.
    caplog.set_level(logging.INFO, logger="oauth2_token_operator.kube.informer")
    caplog.set_level(logging.DEBUG, logger="kopf._cogs.clients.watching")
    with operator_on_own_plane(authserver, "expired") as (plane, ns):
        original = ns.token_secret("before")
        compacted_at: list[int] = []

        def move_etcd_on() -> None:
            revision = etcd.put(plane.etcd_url, "/tests/after-the-watch", "x")
            etcd.compact(plane.etcd_url, revision)
            compacted_at.append(revision)

        plane.restart_apiserver(downtime=1, while_down=move_etcd_on)
        assert etcd.compacted_below(plane.etcd_url, compacted_at[0])
        wait_for(
            "the operator's resumed watches answered 410 Gone",
            lambda: restarted_watches(caplog) >= KOPF_WATCHED and listed_again(caplog) >= INFORMED,
            timeout=60,
        )
        assert_still_serving(ns, original)


KOPF_WATCHED = {"accesstokenrequests", "oauth2clients"}
"""kopf's watches (its handlers' resources)."""
INFORMED = {"token Secrets", "OAuth2Clients", "AccessTokenRequests", "namespaces"}
"""The operator's own informers (`kube.watches`)."""


def restarted_watches(caplog: pytest.LogCaptureFixture) -> set[str]:
    """Resources whose watch kopf restarted (its reaction to an ERROR event with 410)."""
    return {
        resource.split(".")[0]
        for record in caplog.records
        if record.getMessage().startswith("Restarting the watch-stream for ")
        for resource in [record.getMessage().removeprefix("Restarting the watch-stream for ")]
    }


def listed_again(caplog: pytest.LogCaptureFixture) -> set[str]:
    """What the operator's informers listed again after a 410 (`kube.informer`)."""
    pattern = re.compile(r"Listing (.+) again: its watch expired \(410 Gone\)")
    return {
        found.group(1)
        for record in caplog.records
        if (found := pattern.fullmatch(record.getMessage())) is not None
    }


def test_a_concurrent_status_writer_is_neither_lost_nor_fought(
    proxy: ApiServerProxy,
    ns: Namespace,
    operator_factory: Callable[..., OperatorThread],
) -> None:
    """Another controller writes the status too, as a careful one does (read, change,
    patch with the resourceVersion read, again on a real 409): it adds a condition of its
    own and overwrites the operator's Ready and secretName. The operator puts back what
    is its own with one patch per such write, and keeps the other's condition. The
    operator runs behind the proxy only so that its status patches are counted apart
    from the other writer's (no fault is injected)."""
    behind_proxy(proxy, ns, operator_factory)
    ns.request("shared", "idp")
    ready = ns.wait_ready("shared")
    ours = STATUS_PATH.format(ns=ns.name, name="shared")
    # The proxy records a request once the API server has answered it, and a reader may
    # see the write a moment before that: let the issuance's own patches be recorded.
    time.sleep(0.5)
    before = len(proxy.requests("PATCH", ours))

    for round_, audited in enumerate(("True", "False"), start=1):
        tampered = {**ready, "status": "False", "reason": "Tampered", "message": "not yours"}
        audit = {**ready, "type": "Audited", "status": audited, "reason": "Checked"}
        write_status_as_other_controller(
            ns, "shared", {"Ready": tampered, "Audited": audit}, secret_name="elsewhere"
        )

        def restored(audited: str = audited) -> bool:
            status = (ns.get("accesstokenrequests", "shared") or {}).get("status") or {}
            conditions = {c["type"]: c for c in status.get("conditions") or ()}
            return (
                status.get("secretName") == "shared"
                and conditions["Ready"]["reason"] == "TokenValid"
                and conditions["Audited"]["status"] == audited
            )

        wait_for(f"the operator's status back, the other's kept (round {round_})", restored)

        def recorded(round_: int = round_) -> bool:
            return len(proxy.requests("PATCH", ours)) - before >= round_

        wait_for("the proxy's record of the patch that restored it", recorded, timeout=5)
        patches = proxy.requests("PATCH", ours)[before:]
        # One corrective patch per foreign write: a fight would have added more by now
        # (round 2 runs a whole write-and-restore cycle after round 1's count).
        assert [p.status for p in patches] == [200] * round_, patches


def write_status_as_other_controller(
    ns: Namespace, name: str, conditions: dict[str, dict[str, str]], *, secret_name: str
) -> None:
    """Replace conditions by type and set secretName, guarded by the resourceVersion
    read (a merge patch carrying it): a real 409 if the operator wrote meanwhile."""
    for _ in range(5):
        body = ns.get("accesstokenrequests", name) or {}
        current = {c["type"]: c for c in (body.get("status") or {}).get("conditions") or ()}
        patch = {
            "metadata": {"resourceVersion": body["metadata"]["resourceVersion"]},
            "status": {
                "conditions": list({**current, **conditions}.values()),
                "secretName": secret_name,
            },
        }
        try:
            ns.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, ns.name, "accesstokenrequests", name, patch,
                _content_type="application/merge-patch+json",
            )  # fmt: skip
        except ApiException as exc:
            if exc.status == 409:
                continue
            raise
        return
    raise AssertionError("the other writer kept conflicting")
