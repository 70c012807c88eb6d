"""`kube.informer` against a scripted API: the protocol steps a real API server gives only
by chance or after minutes (an expired continue token, a watch answered 410 as an
ERROR event or as a status, a dropped connection), each on demand. The informer against
the real API server: `tests/operator/test_informer.py`."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import urllib3
from kubernetes.client.exceptions import ApiException

from oauth2_token_operator.kube import informer as informer_module
from oauth2_token_operator.kube.api import KubeApiError
from oauth2_token_operator.kube.informer import (
    ByNamespace,
    Informer,
    backoff,
    delay_after,
    describe,
)


def secret(name: str, version: str, namespace: str = "apps") -> dict[str, Any]:
    return {"metadata": {"namespace": namespace, "name": name, "resourceVersion": version}}


@dataclass
class Listed:
    data: bytes


class Streamed:
    """A watch's response: its lines, then the server ends it (or it never ends)."""

    def __init__(
        self,
        events: list[dict[str, Any]],
        *,
        hang: bool = False,
        gate: threading.Event | None = None,
    ) -> None:
        self.lines = [json.dumps(event).encode() + b"\n" for event in events]
        self.hang = hang
        self.gate = gate
        """Nothing is sent before it is set."""
        self.shut = threading.Event()
        self.closed = self.released = False

    def stream(self, amt: Any = None, decode_content: Any = None) -> Iterator[bytes]:
        if self.gate is not None:
            self.gate.wait(10)
        yield from self.lines
        if self.hang:
            self.shut.wait(60)

    def shutdown(self) -> None:
        self.shut.set()

    def close(self) -> None:
        self.closed = True

    def release_conn(self) -> None:
        self.released = True


@dataclass
class ScriptedApi:
    """Answers each call with the next scripted answer (an exception is raised); records
    every call's parameters. Once the script is over, watches hang until shut down."""

    answers: list[Any]
    calls: list[dict[str, Any]] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)

    def __call__(self, **params: Any) -> Any:
        self.calls.append(params)
        if not self.answers:
            self.done.set()
            return Streamed([], hang=True)
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer


def page(items: list[dict[str, Any]], version: str, token: str | None = None) -> Listed:
    metadata: dict[str, Any] = {"resourceVersion": version}
    if token:
        metadata["continue"] = token
    body = {"kind": "SecretList", "apiVersion": "v1", "metadata": metadata, "items": items}
    return Listed(json.dumps(body).encode())


def event(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"type": kind, "object": body}


def key(body: dict[str, Any]) -> tuple[str, str]:
    return (body["metadata"]["namespace"], body["metadata"]["name"])


def version_of(body: dict[str, Any]) -> str:
    return str(body["metadata"]["resourceVersion"])


Changes = list[tuple[str, Any, Any]]


def informer_over(api: ScriptedApi, changes: Changes, **options: Any) -> Informer:
    def record(kind: str, k: Any, kept: Any) -> None:
        changes.append((kind, k, kept))

    return Informer("Secrets", api, key=key, keep=version_of, on_change=record, **options)


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(informer_module, "backoff", lambda: backoff(first=0.01, cap=0.02))


async def settle(api: ScriptedApi, informer: Informer) -> None:
    """Until the script is played, and every change it made has reached the loop."""
    await asyncio.to_thread(api.done.wait, 10)
    assert api.done.is_set()
    await asyncio.sleep(0.05)
    await informer.stop()


async def test_start_lists_every_page_at_one_consistent_version_then_watches_from_it() -> None:
    api = ScriptedApi(
        [
            page([secret("a", "5")], "9", token="next"),
            page([secret("b", "7")], "9"),
        ]
    )
    changes: Changes = []
    informer = informer_over(api, changes, chunk=1, label_selector="owned=yes")
    await informer.start()
    assert dict(informer) == {("apps", "a"): ("5",), ("apps", "b"): ("7",)}
    await settle(api, informer)
    assert [c.get("_continue") for c in api.calls[:2]] == [None, "next"]
    assert all(c["limit"] == 1 and c["label_selector"] == "owned=yes" for c in api.calls[:2])
    assert api.calls[2]["watch"] is True
    assert api.calls[2]["resource_version"] == "9"
    assert api.calls[2]["allow_watch_bookmarks"] is True
    assert changes == []  # the initial listing is the starting state, not a change


async def test_a_lists_items_get_the_kind_and_api_version_a_watch_event_carries() -> None:
    """As kopf does: the reconcilers build owner references and Events from them."""
    api = ScriptedApi([page([secret("a", "5")], "9")])
    informer = Informer("Secrets", api, key=key, keep=lambda body: body)
    await informer.start()
    (held,) = informer[("apps", "a")]
    assert (held["kind"], held["apiVersion"]) == ("Secret", "v1")
    await settle(api, informer)


async def test_watch_events_change_the_store_in_order_and_are_reported() -> None:
    watch = Streamed(
        [
            event("ADDED", secret("b", "10")),
            event("MODIFIED", secret("a", "11")),
            event("BOOKMARK", {"metadata": {"resourceVersion": "12"}}),
            event("DELETED", secret("b", "13")),
        ]
    )
    api = ScriptedApi([page([secret("a", "5")], "9"), watch])
    changes: Changes = []
    informer = informer_over(api, changes)
    await informer.start()
    await settle(api, informer)
    assert changes == [
        ("ADDED", ("apps", "b"), "10"),
        ("MODIFIED", ("apps", "a"), "11"),
        ("DELETED", ("apps", "b"), "13"),
    ]
    assert dict(informer) == {("apps", "a"): ("11",)}
    # Each watch's connection is closed before it goes back to the pool (a stream read
    # halfway would leave its rest for the next request on it).
    assert watch.closed
    assert watch.released
    # The server ended that watch: the next goes on from the last version seen, the
    # bookmark's included.
    assert api.calls[-1]["resource_version"] == "13"
    assert api.calls[-2]["resource_version"] == "9"


@pytest.mark.parametrize("how", ["error event", "status"])
async def test_an_expired_watch_lists_again_and_reports_the_difference(how: str) -> None:
    """Deleted, changed and created while the watch was gone: each comes out as a
    watch would have shown it; the unchanged object is not reported."""
    expired: Any = (
        Streamed([event("ERROR", {"kind": "Status", "code": 410, "reason": "Expired"})])
        if how == "error event"
        else ApiException(status=410, reason="Gone")
    )
    api = ScriptedApi(
        [
            page([secret("gone", "3"), secret("same", "4"), secret("changed", "5")], "9"),
            expired,
            page([secret("same", "4"), secret("changed", "20"), secret("new", "21")], "22"),
        ]
    )
    changes: Changes = []
    informer = informer_over(api, changes)
    await informer.start()
    await settle(api, informer)
    assert sorted(changes) == [
        ("ADDED", ("apps", "new"), "21"),
        ("DELETED", ("apps", "gone"), "3"),
        ("MODIFIED", ("apps", "changed"), "20"),
    ]
    assert set(informer) == {("apps", "changed"), ("apps", "new"), ("apps", "same")}
    assert api.calls[-1]["resource_version"] == "22"


async def test_a_listing_whose_continue_token_expired_starts_over() -> None:
    """A relisting's pages must come from one snapshot, or a deletion could be missed."""
    api = ScriptedApi(
        [
            page([secret("a", "5")], "9"),
            ApiException(status=410, reason="Gone"),  # the watch
            page([secret("a", "5")], "30", token="stale"),
            ApiException(status=410, reason="Gone"),  # the continue token expired
            page([secret("b", "31")], "32"),
        ]
    )
    changes: Changes = []
    informer = informer_over(api, changes, chunk=1)
    await informer.start()
    await settle(api, informer)
    listings = [c.get("_continue") for c in api.calls if not c.get("watch")]
    assert listings == [None, None, "stale", None]
    assert sorted(changes) == [("ADDED", ("apps", "b"), "31"), ("DELETED", ("apps", "a"), "5")]


async def test_failures_are_retried_from_where_the_watch_was(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A dropped connection or an error status: the same version again, after a delay;
    the log says what failed, never what was read."""
    api = ScriptedApi(
        [
            page([], "9"),
            urllib3.exceptions.ProtocolError("Connection broken"),
            ApiException(status=500, reason="Internal Server Error"),
            Streamed([event("ERROR", {"kind": "Status", "code": 500, "reason": "Internal"})]),
            Streamed([event("ADDED", secret("a", "10"))]),
        ]
    )
    changes: Changes = []
    informer = informer_over(api, changes)
    await informer.start()
    await settle(api, informer)
    versions = [c["resource_version"] for c in api.calls if c.get("watch")]
    assert versions == ["9", "9", "9", "9", "10"]
    assert changes == [("ADDED", ("apps", "a"), "10")]
    failures = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Watching")]
    assert len(failures) == 3
    assert "no answer (ProtocolError)" in failures[0]
    assert "HTTP 500" in failures[1]
    assert "HTTP 500 Internal" in failures[2]


async def test_start_waits_for_a_listing_however_long_the_api_server_fails() -> None:
    api = ScriptedApi(
        [
            ApiException(status=503, reason="Unavailable"),
            urllib3.exceptions.ProtocolError("x"),
            page([secret("a", "5")], "9"),
        ]
    )
    informer = informer_over(api, [])
    await informer.start()
    assert list(informer) == [("apps", "a")]
    await settle(api, informer)


async def test_stop_ends_a_watch_at_once() -> None:
    """Its connection is shut: the thread does not wait for the server to end it."""
    api = ScriptedApi([page([], "9")])
    informer = informer_over(api, [])
    await informer.start()
    await asyncio.to_thread(api.done.wait, 10)
    await informer.stop()  # waits for the thread 10 s at most: a watch hangs for 60
    assert informer._thread is not None
    assert not informer._thread.is_alive()


async def test_a_failing_change_handler_does_not_stop_the_watch(
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = ScriptedApi(
        [
            page([], "9"),
            Streamed([event("ADDED", secret("a", "10")), event("ADDED", secret("b", "11"))]),
        ]
    )
    seen: list[Any] = []

    def fail_first(kind: str, k: Any, kept: Any) -> None:
        seen.append(k)
        if len(seen) == 1:
            raise RuntimeError("handler broke")

    informer = Informer("Secrets", api, key=key, keep=version_of, on_change=fail_first)
    await informer.start()
    await settle(api, informer)
    assert seen == [("apps", "a"), ("apps", "b")]
    assert set(informer) == {("apps", "a"), ("apps", "b")}
    assert any("Handling a change of Secrets failed" in r.getMessage() for r in caplog.records)


def test_one_store_per_namespace_reads_as_one() -> None:
    def filled(items: dict[tuple[str, str], str]) -> Informer:
        informer = Informer("x", ScriptedApi([]), key=key, keep=version_of)
        informer._store = dict(items)
        return informer

    view = ByNamespace(
        {"a": filled({("a", "x"): "1"}), "b": filled({("b", "y"): "2", ("b", "z"): "3"})}
    )
    assert view.get(("b", "y")) == ("2",)
    assert view.get(("c", "y")) is None
    assert view.get(("a", "y")) is None
    assert set(view) == {("a", "x"), ("b", "y"), ("b", "z")}
    assert len(view) == 3


def test_backoff_doubles_up_to_its_cap_with_jitter() -> None:
    delays = backoff(first=1.0, cap=4.0)
    drawn = [next(delays) for _ in range(5)]
    bounds = [(0.5, 1.0), (1.0, 2.0), (2.0, 4.0), (2.0, 4.0), (2.0, 4.0)]
    assert all(low <= d <= high for d, (low, high) in zip(drawn, bounds, strict=True))


def test_a_failure_is_described_without_what_was_read() -> None:
    assert describe(KubeApiError("listing Secrets: HTTP 500")) == "listing Secrets: HTTP 500"
    assert describe(ValueError("Expecting value: line 1 'c2VjcmV0'")) == "ValueError"


def test_the_server_may_ask_for_a_longer_delay() -> None:
    """A 429's Retry-After, when longer than the backoff's next delay."""
    assert delay_after(KubeApiError("x", status=429, retry_after=3.0), iter([0.5])) == 3.0
    assert delay_after(KubeApiError("x", status=429, retry_after=0.1), iter([0.5])) == 0.5
    assert delay_after(KubeApiError("x", status=500), iter([0.5])) == 0.5
    assert delay_after(ValueError(), iter([0.5])) == 0.5


async def test_an_offered_copy_counts_only_if_it_is_ahead() -> None:
    """kopf's watch of the same kind may be ahead of the informer's, or behind it: the
    store takes the newest copy, whichever watch brings it, and reports each version
    once."""
    gate = threading.Event()
    watch = Streamed(
        [
            event("MODIFIED", secret("a", "11")),  # offered already
            event("MODIFIED", secret("a", "12")),
            event("ADDED", secret("b", "13")),  # offered already, newer
        ],
        gate=gate,
    )
    api = ScriptedApi([page([secret("a", "5")], "9"), watch])
    changes: Changes = []
    informer = informer_over(api, changes)
    await informer.start()
    informer.offer(secret("a", "11"))
    informer.offer(secret("b", "14"))
    informer.offer(secret("a", "4"))  # behind
    assert informer[("apps", "a")] == ("11",)
    gate.set()
    await settle(api, informer)
    assert dict(informer) == {("apps", "a"): ("12",), ("apps", "b"): ("14",)}
    assert changes == [
        ("MODIFIED", ("apps", "a"), "11"),
        ("ADDED", ("apps", "b"), "14"),
        ("MODIFIED", ("apps", "a"), "12"),
    ]


async def test_a_late_copy_does_not_bring_a_deleted_object_back() -> None:
    watch = Streamed([event("DELETED", secret("a", "10"))])
    api = ScriptedApi([page([secret("a", "5")], "9"), watch])
    changes: Changes = []
    informer = informer_over(api, changes)
    await informer.start()
    await asyncio.to_thread(api.done.wait, 10)
    await asyncio.sleep(0.05)
    informer.offer(secret("a", "8"))  # kopf's, from before the deletion
    assert ("apps", "a") not in informer
    informer.offer(secret("a", "15"))  # created again, later
    assert informer[("apps", "a")] == ("15",)
    informer.offer(secret("a", "16"), deleted=True)  # kopf saw it go first
    informer.offer(secret("a", "15"))
    assert ("apps", "a") not in informer
    await informer.stop()
    assert changes == [
        ("DELETED", ("apps", "a"), "10"),
        ("ADDED", ("apps", "a"), "15"),
        ("DELETED", ("apps", "a"), "16"),
    ]


async def test_a_deletion_is_remembered_for_a_while_only() -> None:
    """Each deletion leaves its version behind, for a late copy to be checked against;
    they go once older than `TOMBSTONE_SECONDS`, or the store would grow with every
    object ever deleted."""
    now = [1000.0]
    informer = informer_over(ScriptedApi([]), [])
    informer.clock = lambda: now[0]
    for i in range(3):
        informer._apply("DELETED", ("apps", f"gone-{i}"), "x", 10 + i)
        now[0] += 200
    assert list(informer._deleted) == [("apps", "gone-1"), ("apps", "gone-2")]
    informer.offer(secret("gone-0", "5"))  # forgotten: taken
    informer.offer(secret("gone-1", "5"))  # remembered: older than its deletion
    assert set(informer) == {("apps", "gone-0")}


async def test_a_relisting_keeps_a_copy_offered_after_its_snapshot() -> None:
    """Created (or changed) after the listing's version, known from kopf's watch: the
    listing cannot have it yet, and the watch from that version will bring it."""
    api = ScriptedApi(
        [
            page([secret("a", "5")], "9"),
            ApiException(status=410, reason="Gone"),
            page([secret("a", "5")], "20"),
        ]
    )
    changes: Changes = []
    informer = informer_over(api, changes)
    await informer.start()
    informer.offer(secret("new", "25"))
    await settle(api, informer)
    assert dict(informer) == {("apps", "a"): ("5",), ("apps", "new"): ("25",)}
    assert changes == [("ADDED", ("apps", "new"), "25")]
