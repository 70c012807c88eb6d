"""The per-object gauges (token expiry and renewal, request and client readiness): one
value per object, exposed as a labelled Prometheus gauge would be."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from oauth2_token_operator.controller.shared.metrics import Metrics, ObjectGauge

NAME = "oauth2_token_operator_token_expiry_timestamp_seconds"
HELP = "When the token in each request's Secret expires (Unix time)."


def test_exposed_exactly_as_a_labelled_gauge() -> None:
    reference = CollectorRegistry()
    gauge = Gauge(NAME, HELP, ["namespace", "name"], registry=reference)
    ours = CollectorRegistry()
    expiry = ObjectGauge(NAME, HELP)
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


READY = "oauth2_token_operator_request_ready"


def test_a_new_reason_replaces_the_series_and_foreign_text_is_other() -> None:
    """One series per request whatever its history, and a label set bounded by the
    operator's own reasons: text of any other shape is `Other`."""
    metrics = Metrics()
    metrics.request_ready.set("ns", "req", 0, "Missing")
    metrics.request_ready.set("ns", "req", 1, "TokenValid")
    sample = metrics.registry.get_sample_value
    assert sample(READY, {"namespace": "ns", "name": "req", "reason": "TokenValid"}) == 1
    assert sample(READY, {"namespace": "ns", "name": "req", "reason": "Missing"}) is None
    metrics.request_ready.set("ns", "req", 0, 'invalid_grant: "the server\'s words"')
    assert sample(READY, {"namespace": "ns", "name": "req", "reason": "Other"}) == 0
    metrics.forget_request("ns", "req")
    assert sample(READY, {"namespace": "ns", "name": "req", "reason": "Other"}) is None
