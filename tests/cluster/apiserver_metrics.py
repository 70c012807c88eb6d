"""The API server's own request counters (`apiserver_request_total`), for tests and
benchmarks that count what the operator writes."""

from __future__ import annotations

from collections import Counter


def request_counts(metrics_text: str, *, subresources: bool) -> Counter[tuple[str, str]]:
    """Requests summed by (verb, resource); with `subresources`, the resource reads
    `resource/subresource` (`accesstokenrequests/status`). Requests to non-resource URLs
    (such as /metrics itself) are left out."""
    counts: Counter[tuple[str, str]] = Counter()
    for line in metrics_text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels_text, _, value = line.rpartition("} ")
        labels = dict(
            part.split("=", 1)
            for part in labels_text.removeprefix("apiserver_request_total{").split(",")
        )
        resource = labels.get("resource", "").strip('"')
        if not resource:
            continue
        sub = labels.get("subresource", "").strip('"')
        if subresources and sub:
            resource = f"{resource}/{sub}"
        counts[labels.get("verb", "").strip('"'), resource] += int(float(value))
    return counts
