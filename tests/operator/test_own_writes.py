"""The operator's own writes coming back through the watch: neither work nor log lines.

Every issuance writes a Secret and a status, and both come back as watch events. Each
reconciled the request again, to find nothing to do, and kopf logged a line per event;
at 1000 tokens that was a sixth of the CPU per renewal and most of the log.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any

import pytest

from oauth2_token_operator.controller.request.reconciler import RequestReconciler
from oauth2_token_operator.controller.request.record import RequestRecord
from oauth2_token_operator.controller.request.values import Outcome, Request
from tests.operator.conftest import Namespace, settle, wait_for
from tests.operator.runner import OperatorThread

RENEW_REQUESTED_AT = "oauth2.token-operator.io/renew-requested-at"


def counting_reconciles(
    operator: OperatorThread, monkeypatch: pytest.MonkeyPatch
) -> Counter[tuple[str, str]]:
    """How many times each request's state is evaluated from now on."""
    requests: RequestReconciler = operator.memo.requests
    original = requests._reconcile
    counts: Counter[tuple[str, str]] = Counter()

    async def counted(request: Request, record: RequestRecord) -> Outcome:
        counts[request.key] += 1
        return await original(request, record)

    monkeypatch.setattr(requests, "_reconcile", counted)
    return counts


def test_an_issuance_or_a_renewal_is_reconciled_once_not_again_for_its_own_writes(
    ns: Namespace, operator: OperatorThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    counts = counting_reconciles(operator, monkeypatch)
    ns.client("idp", ns.authserver.clients["client_secret_basic"])
    ns.wait_ready("idp", plural="oauth2clients")  # its Ready pokes its requests: none yet
    ns.request("billing", "idp")
    ns.wait_ready("billing")
    settle(operator, ns, "billing")  # the Secret's and the status's events have come back
    # Served once the finalizer is on it: one reconcile issues, writes the Secret and the
    # status; their events find their own writes (3 reconciles before).
    assert counts[(ns.name, "billing")] == 1

    token = (ns.token_secret("billing") or {})["access_token"]
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    ns.patch(
        "accesstokenrequests", "billing", {"metadata": {"annotations": {RENEW_REQUESTED_AT: at}}}
    )
    wait_for(
        "a renewed token",
        lambda: (ns.token_secret("billing") or {}).get("access_token") != token,
        timeout=10,
    )
    settle(operator, ns, "billing")
    assert counts[(ns.name, "billing")] == 2, "the annotation's event, and nothing for the echoes"


def test_watch_events_log_no_success_line_per_event(
    ns: Namespace, operator: OperatorThread, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    ns.client("idp", ns.authserver.clients["client_secret_basic"])
    ns.request("billing", "idp")
    ns.wait_ready("billing")
    settle(operator, ns, "billing")
    lines: list[Any] = [r.getMessage() for r in caplog.records if r.name == "kopf.objects"]
    assert not [line for line in lines if line.endswith("_event' succeeded.")], lines
