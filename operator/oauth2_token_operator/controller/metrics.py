"""The operator's Prometheus metrics, in a registry of its own (one per operator, so
tests may run several), served on `--metrics-port`."""

from __future__ import annotations

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
        self.token_expiry = ExpiryGauge(
            f"{PREFIX}_token_expiry_timestamp_seconds",
            "When the token in each request's Secret expires (Unix time).",
        )
        r.register(self.token_expiry)
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
            "Tokens published into Secrets, by kind (issued: a request's first; renewed) "
            "and outcome (ok, or the condition reason of the failure).",
            ["kind", "outcome"],
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
        self.token_expiry.forget(namespace, name)

    def serve(self, port: int, address: str = "0.0.0.0") -> None:  # noqa: S104 - a pod's port
        self._server = start_http_server(port, addr=address, registry=self.registry)

    def close(self) -> None:
        if self._server is not None:
            server, thread = self._server
            server.shutdown()
            server.server_close()
            thread.join(5)
            self._server = None


class ExpiryGauge:
    """A gauge by (namespace, name) kept as one float per request and rendered when
    scraped: a `prometheus_client.Gauge` child per request (its own object, value,
    lock and label tuple) held about 450 bytes for each of 10 000 requests."""

    def __init__(self, name: str, documentation: str) -> None:
        self.name = name
        self.documentation = documentation
        self._values: dict[tuple[str, str], float] = {}

    def set(self, namespace: str, name: str, value: float) -> None:
        self._values[(namespace, name)] = float(value)

    def forget(self, namespace: str, name: str) -> None:
        self._values.pop((namespace, name), None)

    def describe(self) -> list[Metric]:
        return [GaugeMetricFamily(self.name, self.documentation, labels=["namespace", "name"])]

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(self.name, self.documentation, labels=["namespace", "name"])
        # Scraped from the metrics server's thread: a copy taken in one step (`list` of
        # a dict's items runs without releasing the GIL) is safe against the event loop.
        for (namespace, name), value in list(self._values.items()):
            family.add_metric([namespace, name], value)
        yield family
