"""What the operator benchmarks measure with: the API server's own request counters, a
process's CPU and memory from /proc, the operator as a real process, and a watch that
notes when each AccessTokenRequest turns Ready (or gets a new token).

Everything talks to the API server over httpx with the harness's admin certificate, so
the bench's own requests are few and known: its creates and one WATCH per phase.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

import httpx

from oauth2_token_operator.api.crd import GROUP, VERSION
from oauth2_token_operator.api.token_secret import TOKEN_ANNOTATION, TokenRecord
from tests.cluster.apiserver_metrics import request_counts
from tests.cluster.harness import KubeCluster

REQUESTS_PATH = f"/apis/{GROUP}/{VERSION}/namespaces/{{namespace}}/accesstokenrequests"
CLIENTS_PATH = f"/apis/{GROUP}/{VERSION}/namespaces/{{namespace}}/oauth2clients"
SECRETS_PATH = "/api/v1/namespaces/{namespace}/secrets"
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
TICKS = os.sysconf("SC_CLK_TCK")
DOCKERFILE = Path(__file__).resolve().parent.parent / "Dockerfile"
IMAGE_PATHS = frozenset({"PATH", "HOME"})
"""Variables of the image that name its own file system, not how the process runs."""


@dataclass(frozen=True)
class Admin:
    """How to reach the API server as the harness's admin (client certificate)."""

    server: str
    ca: str
    cert: str
    key: str
    kubeconfig: Path

    @classmethod
    def of(cls, cluster: KubeCluster) -> Admin:
        cfg = cluster.configuration()
        if not (cfg.cert_file and cfg.key_file and cfg.ssl_ca_cert):
            raise SystemExit("the operator benchmarks need the harness's client certificate")
        return cls(cfg.host, cfg.ssl_ca_cert, cfg.cert_file, cfg.key_file, cluster.kubeconfig)

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.server, verify=self.ssl_context(), **kwargs)

    def async_client(self, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.server, verify=self.ssl_context(), **kwargs)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the API server's counters ---------------------------------------------------------


def api_counts(admin: httpx.Client) -> Counter[tuple[str, str]]:
    """`apiserver_request_total` summed by (verb, resource[/subresource])."""
    text = admin.get("/metrics").raise_for_status().text
    return request_counts(text, subresources=True)


def delta(after: Counter[tuple[str, str]], before: Counter[tuple[str, str]]) -> Counter[Any]:
    return Counter({k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)})


def ours(counts: Counter[tuple[str, str]]) -> Counter[tuple[str, str]]:
    """Only what an operator of tokens has to do with: its resources, Secrets, Events.
    (The API server's own lease renewals and the like are not the operator's.)"""
    resources = ("accesstokenrequests", "oauth2clients", "secrets", "events", "namespaces")
    return Counter({k: v for k, v in counts.items() if k[1].split("/")[0] in resources})


def writes(counts: Counter[tuple[str, str]]) -> int:
    return sum(v for (verb, _), v in counts.items() if verb in WRITES)


def event_writes(counts: Counter[tuple[str, str]]) -> int:
    return sum(v for (verb, res), v in counts.items() if res == "events" and verb in WRITES)


def show_counts(counts: Counter[tuple[str, str]]) -> str:
    return ", ".join(f"{verb} {resource}={n}" for (verb, resource), n in sorted(counts.items()))


# -- a process, seen from /proc ----------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU of the process (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def memory_mb(pid: int) -> tuple[float, float]:
    """(resident now, peak resident) in MiB."""
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# -- the operator as a real process --------------------------------------------------------


def image_environment(dockerfile: Path = DOCKERFILE) -> dict[str, str]:
    """What the image's last stage sets with `ENV KEY=VALUE ...` (e.g. the allocator's
    settings), but the image's own paths: the bench runs the operator with the same,
    so that it measures what ships."""
    text = dockerfile.read_text().replace("\\\n", " ")
    stages = [line for line in text.splitlines() if line.split()[:1] == ["FROM"]]
    last_stage = text.rsplit(stages[-1], 1)[1] if stages else text
    env: dict[str, str] = {}
    for line in last_stage.splitlines():
        if line.split()[:1] == ["ENV"]:
            pairs = (word.partition("=") for word in shlex.split(line, comments=True)[1:])
            env.update({k: v for k, eq, v in pairs if eq and k not in IMAGE_PATHS})
    return env


class OperatorProcess:
    """`python -m oauth2_token_operator.cli run`, as the image runs it, with a kubeconfig."""

    def __init__(
        self,
        admin: Admin,
        namespaces: list[str],
        log: Path,
        *args: str,
    ) -> None:
        self.metrics_port = free_port()
        self.health_port = free_port()
        profile = os.environ.get("CPROFILE")
        # Under cProfile, written to $CPROFILE when the operator exits (SIGTERM): where
        # the operator's time goes, at cProfile's cost (not for ratios).
        under = ["-m", "cProfile", "-o", f"{profile}.{self.health_port}"] if profile else []
        argv = [sys.executable, *under, "-m", "oauth2_token_operator.cli", "run"]
        argv += [f"--namespace={ns}" for ns in namespaces]
        argv += [f"--metrics-port={self.metrics_port}", f"--health-port={self.health_port}"]
        argv += ["--deny-cidr="]  # oidc-provider listens on 127.0.0.1: no address denied
        self.log = log
        self._log_file = log.open("ab")
        self.started = time.monotonic()
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [*argv, *args],
            env={**os.environ, **image_environment(), "KUBECONFIG": str(admin.kubeconfig)},
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_healthy(self, timeout: float = 60.0) -> float:
        """Seconds from start until kopf's liveness endpoint answers (not the operator's
        "starting", while its informers list: `controller.health`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the operator exited; see {self.log}")
            with contextlib.suppress(httpx.TransportError):
                answer = httpx.get(f"http://127.0.0.1:{self.health_port}/healthz")
                if answer.status_code == 200 and answer.text != "starting\n":
                    return time.monotonic() - self.started
            time.sleep(0.05)
        raise TimeoutError(f"the operator did not become healthy; see {self.log}")

    def metrics(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics").text

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log_file.close()


def series_count(metrics_text: str, name: str, namespace: str) -> int:
    """How many series of metric `name` carry `namespace="..."`."""
    marker = f'namespace="{namespace}"'
    return sum(
        1 for line in metrics_text.splitlines() if line.startswith(name + "{") and marker in line
    )


# -- watching the requests -----------------------------------------------------------------


@dataclass
class RequestWatch:
    """A WATCH on one namespace's AccessTokenRequests, in a thread: when each first
    showed Ready=True (monotonic clock), and when each status `revision` first appeared
    (wall clock, to compare with the times in the status; with the status)."""

    path: ClassVar[str] = REQUESTS_PATH

    admin: Admin
    namespace: str
    ready_at: dict[str, float] = field(default_factory=dict)
    revisions: dict[str, dict[int, tuple[float, dict[str, Any]]]] = field(default_factory=dict)
    _changed: threading.Condition = field(default_factory=threading.Condition)
    _stop: threading.Event = field(default_factory=threading.Event)
    _started: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> Self:
        self._thread = threading.Thread(target=self._run, name="watch", daemon=True)
        self._thread.start()
        if not self._started.wait(30):
            raise TimeoutError("the watch did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        # Reconnects (the short read timeout keeps stopping prompt) resume from the last
        # version seen, so they never list the namespace again.
        params = {"watch": "1", "allowWatchBookmarks": "true"}
        with self.admin.client(timeout=httpx.Timeout(10.0, read=1.0)) as http:
            while not self._stop.is_set():
                with contextlib.suppress(httpx.ReadTimeout, httpx.RemoteProtocolError):
                    self._stream(http, params)

    def _stream(self, http: httpx.Client, params: dict[str, str]) -> None:
        path = self.path.format(namespace=self.namespace)
        with http.stream("GET", path, params=params) as response:
            self._started.set()
            for line in response.iter_lines():
                if self._stop.is_set():
                    return
                if not line:
                    continue
                event = json.loads(line)
                if event.get("type") == "ERROR":  # 410 Gone: list again
                    params.pop("resourceVersion", None)
                    return
                version = (event["object"].get("metadata") or {}).get("resourceVersion")
                if version:
                    params["resourceVersion"] = version
                if event.get("type") != "BOOKMARK":
                    self._seen(event)

    def _seen(self, event: dict[str, Any]) -> None:
        now = time.monotonic()
        body = event.get("object") or {}
        name = (body.get("metadata") or {}).get("name")
        status = body.get("status") or {}
        if not name:
            return
        with self._changed:
            ready = any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in status.get("conditions") or ()
            )
            if ready:
                self.ready_at.setdefault(name, now)
            revision = status.get("revision")
            if isinstance(revision, int):
                self.revisions.setdefault(name, {}).setdefault(revision, (time.time(), status))
            self._changed.notify_all()

    def wait(self, what: str, done: Any, timeout: float) -> None:
        """Block until `done()` (called under the lock) is true."""
        with self._changed:
            if not self._changed.wait_for(done, timeout):
                raise TimeoutError(f"timed out after {timeout}s waiting for {what}")

    def wait_ready(self, names: list[str], timeout: float) -> None:
        self.wait(
            f"{len(names)} requests Ready",
            lambda: all(n in self.ready_at for n in names),
            timeout,
        )


@dataclass
class TokenRecordWatch(RequestWatch):
    """A WATCH on one namespace's Secrets: the token record of each revision, with the
    exact issue and expiry times (statuses keep whole seconds), and the owner's uid."""

    path: ClassVar[str] = SECRETS_PATH

    records: dict[str, dict[int, tuple[str, TokenRecord]]] = field(default_factory=dict)

    def _seen(self, event: dict[str, Any]) -> None:
        meta = (event.get("object") or {}).get("metadata") or {}
        annotations = meta.get("annotations") or {}
        record = TokenRecord.from_annotation(annotations.get(TOKEN_ANNOTATION, ""))
        owners = meta.get("ownerReferences") or ()
        if record is None or not owners:
            return
        with self._changed:
            by_revision = self.records.setdefault(meta["name"], {})
            by_revision.setdefault(record.revision, (owners[0]["uid"], record))
            self._changed.notify_all()


@contextlib.contextmanager
def stopping(process: OperatorProcess) -> Iterator[OperatorProcess]:
    try:
        yield process
    finally:
        process.stop()
