"""Each request's in-memory record: one per request, created on its first use, dropped
whole when the request is finalized; a Secret's events reach its owner's record."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import cast

import pytest

from oauth2_token_operator.controller.request import revocation
from oauth2_token_operator.controller.request.reconciler import RequestReconciler
from oauth2_token_operator.controller.request.record import RequestRecord, RequestRecords
from oauth2_token_operator.controller.request.write_guard import WriteGuard
from oauth2_token_operator.controller.shared.context import OperatorContext
from oauth2_token_operator.controller.shared.metrics import Metrics
from oauth2_token_operator.policies.backoff import ApiBackoff

KEY = ("ns", "req")
SECRET = ("ns", "req-token")


def version(v: str, *, owner: str | None = "req") -> dict[str, object]:
    refs = [{"kind": "AccessTokenRequest", "name": owner, "controller": True}] if owner else []
    return {"metadata": {"name": SECRET[1], "resourceVersion": v, "ownerReferences": refs}}


def remember_everything(record: RequestRecord) -> None:
    """Something in each of the record's fields, as a request's life leaves them."""
    record.api_backoff = ApiBackoff(attempts=1, retry_at=2000.0, not_before=2000.0, generation=1)
    record.server_asked_until = 2000.0
    record.server = "https://idp.example/token"
    record.writes.wrote("status")
    record.writes.wrote("status")  # past a budget of 1: held back
    record.status.wrote({"metadata": {"resourceVersion": "7"}}, None, echo=True)
    record.wrote_secret(SECRET[1], version("8"), None)


def records() -> RequestRecords:
    return RequestRecords(WriteGuard(lambda: 1000.0, limit=1))


def assert_fresh(record: RequestRecord) -> None:
    assert record.api_backoff is None
    assert record.server_asked_until is None
    assert record.server is None
    assert record.writes.held_until() is None
    assert record.status.written is None
    assert record.status.echo is None
    assert record.secret_name is None
    assert record.newest_secret(SECRET[1], None) is None


def test_a_record_is_created_on_first_use_and_kept() -> None:
    kept = records()
    assert kept.get(KEY) is None
    assert len(kept) == 0
    record = kept.of(KEY)
    assert kept.of(KEY) is record
    assert kept.get(KEY) is record
    assert len(kept) == 1


def test_events_of_a_request_or_secret_never_seen_create_no_record() -> None:
    kept = records()
    kept.request_observed(KEY, {"metadata": {"resourceVersion": "3"}})
    kept.secret_observed(SECRET, version("3"), [KEY])
    assert len(kept) == 0


def test_a_records_lifetime_is_its_requests_everything_goes_in_one_call() -> None:
    kept = records()
    record = kept.of(KEY)
    remember_everything(record)
    kept.track_secret(record)
    other = kept.of(("ns", "other"))
    kept.forget(KEY)
    assert kept.get(KEY) is None
    assert len(kept) == 1
    assert kept.get(("ns", "other")) is other
    assert_fresh(kept.of(KEY))
    kept.forget(KEY)
    kept.secret_observed(SECRET, version("9", owner=None), [])  # routed nowhere now
    assert len(kept) == 1


def test_finalize_leaves_no_record(monkeypatch: pytest.MonkeyPatch) -> None:
    async def finalized(*_: object) -> str:
        return SECRET[1]

    monkeypatch.setattr(revocation, "finalize", finalized)
    ctx = cast(OperatorContext, SimpleNamespace(clock=lambda: 1000.0, metrics=Metrics()))
    ctx.request_scheduler = None
    reconciler = RequestReconciler(ctx)
    remember_everything(reconciler.records.of(KEY))
    assert reconciler.server_of(KEY) == "https://idp.example/token"
    body = {"metadata": {"namespace": KEY[0], "name": KEY[1], "uid": "u1"}}
    asyncio.run(reconciler.finalize(body))
    assert len(reconciler.records) == 0
    assert reconciler.server_of(KEY) is None


def test_a_secret_event_reaches_its_owners_record() -> None:
    kept = records()
    record = kept.of(KEY)
    record.wrote_secret(SECRET[1], version("8"), version("7"))
    assert record.newest_secret(SECRET[1], version("7")) == version("8"), "the watch is behind"
    assert record.newest_secret(SECRET[1], None) == version("8"), "not in the watch yet"
    kept.secret_observed(SECRET, version("8"), [KEY])
    assert record.secret.written is None, "forgotten: the watch shows it"
    assert record.secret_came_back(SECRET[1], version("8")), "and its event is an echo"
    assert not record.secret_came_back(SECRET[1], version("8")), "once"


def test_a_secret_that_no_longer_names_its_owner_still_reaches_the_record() -> None:
    """Someone removed the ownerReference, then deleted the Secret: the record learns it
    is gone (on main: the Secret's own key), not believing our older write."""
    kept = records()
    record = kept.of(KEY)
    record.wrote_secret(SECRET[1], version("8"), None)
    kept.track_secret(record)  # after the reconcile that wrote it
    kept.secret_observed(SECRET, version("9", owner=None), [])  # ownerReference removed
    assert record.newest_secret(SECRET[1], None) is None, "deleted: the watch has none"


def test_another_secret_name_is_not_confused_with_the_written_one() -> None:
    kept = records()
    record = kept.of(KEY)
    record.wrote_secret(SECRET[1], version("8"), None)
    assert record.newest_secret("renamed", None) is None
    assert not record.secret_came_back("renamed", version("8"))
    record.wrote_secret("renamed", version("9"), None)
    assert record.newest_secret(SECRET[1], None) is None, "a new spec's Secret replaces it"
