"""A hostile authorization server cannot take the operator down for everyone (issue 22,
item 2), measured on the operator's own process: its RSS, not the test's.

Ten OAuth2Clients name issuers on one scripted server that answers every request,
discovery included, with a gzip bomb (some 200 KB on the wire, 200 MiB inflated; no real
server answers so). Before bounded reads, one such answer took the process from 39 to
657 MiB, over the pod's limit, and discovery runs again at every start: a crash loop for
every tenant. Now each read stops at its cap, the clients say why, the process grows by
a few MiB at most, and a request against a healthy server keeps renewing meanwhile."""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable

from tests.faults import RawRespond, threaded_server
from tests.memory import rss
from tests.operator.conftest import Namespace, wait_for
from tests.operator.process import OperatorProcess

MiB = 1024 * 1024
BOMB = gzip.compress(b"\0" * (200 * MiB), compresslevel=9)
HOSTILE_CLIENTS = 10


class PeakSampler(threading.Thread):
    """Samples a process's RSS every 50 ms until stopped: the peak, not a lucky moment."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.done = pid, rss(pid), threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.05):
            self.peak = max(self.peak, rss(self.pid))


def test_a_gzip_bomb_server_neither_swells_the_operator_nor_stops_others_renewing(
    operator_processes: Callable[..., OperatorProcess], ns: Namespace
) -> None:
    operator = operator_processes("--metrics-port=0", "--min-renewal-lead=5")
    ns.client("healthy", ns.authserver.clients["renewal_ttl"])
    ns.request("steady", "healthy")
    ns.wait_ready("steady")
    first = (ns.token_secret("steady") or {})["access_token"]
    time.sleep(2.0)  # the start's allocations settle
    before = rss(operator.pid)
    sampler = PeakSampler(operator.pid)
    sampler.start()
    try:
        with threaded_server(RawRespond(BOMB, {"Content-Encoding": "gzip"})) as hostile:
            ns.secret("hostile-credentials", {"client-secret": "x"})
            for i in range(HOSTILE_CLIENTS):
                ns.create("oauth2clients", f"hostile-{i}", {
                    "issuer": f"{hostile.url}/tenant-{i}",
                    "clientId": f"tenant-{i}",
                    "allowInsecureHTTP": True,
                    "authentication": {
                        "method": "client_secret_basic",
                        "clientSecretRef": {"name": "hostile-credentials", "key": "client-secret"},
                    },
                })  # fmt: skip
                ns.request(f"victim-{i}", f"hostile-{i}")
            for i in range(HOSTILE_CLIENTS):
                ready = ns.wait_ready(f"hostile-{i}", status="False", plural="oauth2clients")
                assert "KiB" in ready["message"], ready  # names the cap, not the content
            bombs = len(hostile.requests)
            # The healthy request renews its 20 s token meanwhile, on its schedule.
            wait_for(
                "the healthy request's renewal",
                lambda: (ns.token_secret("steady") or {}).get("access_token") != first,
                timeout=30,
            )
    finally:
        sampler.done.set()
        sampler.join()
    grown = sampler.peak - before
    print(
        f"{bombs} gzip bombs ({len(BOMB) // 1024} KB each, 200 MiB inflated): operator RSS "
        f"{before / MiB:.1f} MiB before, {sampler.peak / MiB:.1f} MiB at the peak "
        f"(+{grown / MiB:.1f} MiB)"
    )
    assert bombs >= HOSTILE_CLIENTS
    assert ns.wait_ready("steady")["reason"] == "TokenValid"
    assert grown < 20 * MiB, f"+{grown / MiB:.1f} MiB"
    assert operator.running
