"""The token expiry gauge: one float per request, exposed as a labelled Prometheus gauge
would be."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from oauth2_token_operator.controller.metrics import ExpiryGauge, Metrics

NAME = "oauth2_token_operator_token_expiry_timestamp_seconds"
HELP = "When the token in each request's Secret expires (Unix time)."


def test_exposed_exactly_as_a_labelled_gauge() -> None:
    reference = CollectorRegistry()
    gauge = Gauge(NAME, HELP, ["namespace", "name"], registry=reference)
    ours = CollectorRegistry()
    expiry = ExpiryGauge(NAME, HELP)
    ours.register(expiry)
    for namespace, name, value in [("a", "x", 1.7e9), ("b", 'q"uote', 1800000000.5)]:
        gauge.labels(namespace, name).set(value)
        expiry.set(namespace, name, value)
    expiry.set("a", "x", 1.7e9 + 1)  # set again: replaced
    gauge.labels("a", "x").set(1.7e9 + 1)
    assert generate_latest(ours) == generate_latest(reference)
    gauge.remove("a", "x")
    expiry.forget("a", "x")
    expiry.forget("a", "never-set")  # forgetting an unknown request is fine
    assert generate_latest(ours) == generate_latest(reference)


def test_the_operators_registry_shows_a_request_until_it_is_forgotten() -> None:
    metrics = Metrics()
    metrics.token_expiry.set("ns", "req", 1.7e9)
    assert metrics.registry.get_sample_value(NAME, {"namespace": "ns", "name": "req"}) == 1.7e9
    metrics.forget_request("ns", "req")
    assert metrics.registry.get_sample_value(NAME, {"namespace": "ns", "name": "req"}) is None
