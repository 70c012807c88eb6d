"""The operator's Prometheus metrics, in a registry of its own (one per operator, so
tests may run several), served on `--metrics-port`."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric

PREFIX = "oauth2_token_operator"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.token_expiry = ObjectGauge(
            f"{PREFIX}_token_expiry_timestamp_seconds",
            "When the token in each request's Secret expires (Unix time).",
        )
        self.token_renewal = ObjectGauge(
            f"{PREFIX}_token_renewal_timestamp_seconds",
            "When each request's token is due for renewal (Unix time; the schedule, not a"
            " retry after a failure).",
        )
        self.request_ready = ObjectGauge(
            f"{PREFIX}_request_ready",
            "1 when a request's Secret holds a valid token (condition Ready), else 0; the"
            " label reason is the condition's reason.",
            reason=True,
        )
        self.client_ready = ObjectGauge(
            f"{PREFIX}_client_ready",
            "1 when an OAuth2Client is usable (its metadata discovered), else 0; the label"
            " reason is the condition's reason.",
            reason=True,
        )
        for gauge in (self.token_expiry, self.token_renewal, self.request_ready):
            r.register(gauge)
        r.register(self.client_ready)
        self.oauth2_requests = Counter(
            f"{PREFIX}_oauth2_requests_total",
            "Calls to the authorization server by endpoint (token_endpoint, "
            "introspection_endpoint, revocation_endpoint) and outcome (ok, an RFC 6749 "
            "error code, or the kind of failure).",
            ["endpoint", "outcome"],
            registry=r,
        )
        self.oauth2_request_seconds = Histogram(
            f"{PREFIX}_oauth2_request_duration_seconds",
            "Duration of calls to the authorization server, retries included.",
            ["endpoint"],
            registry=r,
        )
        self.issuances = Counter(
            f"{PREFIX}_issuances_total",
            "Tokens published into Secrets, by kind (issued: a request's first; renewed), "
            "outcome (ok, or the condition reason of the failure) and OAuth2Client "
            "(namespace/name).",
            ["kind", "outcome", "client"],
            registry=r,
        )
        self.reconcile_errors = Counter(
            f"{PREFIX}_reconcile_errors_total",
            "Reconciliations that failed with an unexpected error (a bug, or the API server).",
            ["resource"],
            registry=r,
        )
        self.revocations = Counter(
            f"{PREFIX}_revocations_total",
            "Tokens the operator revoked (RFC 7009) or tried to, by outcome (revoked, failed,"
            " unsupported: the server has no revocation endpoint).",
            ["outcome"],
            registry=r,
        )
        self.write_loops = Counter(
            f"{PREFIX}_write_loops_total",
            "Requests held back for writing more than the write guard allows (a bug).",
            registry=r,
        )
        self.time_to_ready = Histogram(
            f"{PREFIX}_time_to_ready_seconds",
            "From a request's creation to its first token in its Secret.",
            buckets=(0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600),
            registry=r,
        )
        self._server: tuple[WSGIServer, threading.Thread] | None = None

    def observe_oauth2_call(self, endpoint: str, outcome: str, seconds: float) -> None:
        self.oauth2_requests.labels(endpoint, outcome).inc()
        self.oauth2_request_seconds.labels(endpoint).observe(seconds)

    def forget_request(self, namespace: str, name: str) -> None:
        for gauge in (self.token_expiry, self.token_renewal, self.request_ready):
            gauge.forget(namespace, name)

    def serve(self, port: int, address: str = "0.0.0.0") -> None:  # noqa: S104 - a pod's port
        self._server = start_http_server(port, addr=address, registry=self.registry)

    def close(self) -> None:
        if self._server is not None:
            server, thread = self._server
            server.shutdown()
            server.server_close()
            thread.join(5)
            self._server = None


REASON = re.compile(r"[A-Z][A-Za-z]{0,63}")
"""A condition reason as the operator writes them (CamelCase constants of its own):
anything else is counted as `Other`, so the label set stays bounded whatever happens."""


class ObjectGauge:
    """A gauge with one series per object (namespace, name), kept as one value per object
    and rendered when scraped: a `prometheus_client.Gauge` child per object (its own
    object, value, lock and label tuple) held about 450 bytes for each of 10 000 requests.

    With `reason`, the series also carries the object's condition reason; setting a new
    one replaces the series (no stale one stays behind)."""

    def __init__(self, name: str, documentation: str, *, reason: bool = False) -> None:
        self.name = name
        self.documentation = documentation
        self._labels = ["namespace", "name", "reason"] if reason else ["namespace", "name"]
        self._values: dict[tuple[str, str], tuple[float, str]] = {}

    def set(self, namespace: str, name: str, value: float, reason: str = "") -> None:
        reason = reason if REASON.fullmatch(reason) else "Other"
        self._values[(namespace, name)] = (float(value), reason)

    def get(self, namespace: str, name: str) -> float | None:
        value = self._values.get((namespace, name))
        return None if value is None else value[0]

    def forget(self, namespace: str, name: str) -> None:
        self._values.pop((namespace, name), None)

    def describe(self) -> list[Metric]:
        return [GaugeMetricFamily(self.name, self.documentation, labels=self._labels)]

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(self.name, self.documentation, labels=self._labels)
        with_reason = len(self._labels) == 3
        # Scraped from the metrics server's thread: a copy taken in one step (`list` of
        # a dict's items runs without releasing the GIL) is safe against the event loop.
        for (namespace, name), (value, reason) in list(self._values.items()):
            labels = [namespace, name, reason] if with_reason else [namespace, name]
            family.add_metric(labels, value)
        yield family
