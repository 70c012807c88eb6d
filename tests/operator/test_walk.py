"""`bench.walk`, the run-time walk of one AccessTokenRequest event (issue 24): it keeps
reaching the Secret write, so the tool cannot rot unnoticed. It asserts what the walk must
show: it starts at the kopf handler, builds the facts once, and ends with the Secret write;
and, of the entry counts per module, only those of the modules already brought to the
goal of at most two (several others are still entered more than twice: see
`python -m bench.walk`)."""

from __future__ import annotations

from bench.walk import Entry, walk_one_issuance
from tests.operator.conftest import Namespace
from tests.operator.runner import OperatorThread


def test_the_walk_of_one_issuance_runs_from_the_handler_to_the_secret_write(
    ns: Namespace, operator: OperatorThread
) -> None:
    walk = walk_one_issuance(operator, ns)
    assert walk.wrote_secret
    assert walk.entries[0] == Entry(
        "controller/process/handlers.py",
        "controller/request/reconciler.py",
        "RequestReconciler.reconcile",
    )
    # The Secret write, and in its worker thread (`asyncio.to_thread`) the API call: the
    # walk follows the threads and tasks the reconcile hands work to.
    assert walk.entries[-2:] == [
        Entry("controller/request/secret_writer.py", "kube/api.py", "KubeApi.create_secret"),
        Entry("kube/api.py", "kube/rest.py", "PathApi.call"),
    ]
    built = [
        e
        for e in walk.entries
        if (e.module, e.function) == ("controller/request/facts.py", "situation")
    ]
    assert len(built) == 1, "the facts are built once per reconcile"
    counts = walk.counts()
    assert counts["controller/request/reconciler.py"] >= 1
    at_most_twice = ("controller/request/values.py", "client_config.py", "oauth2/client_auth.py")
    assert {module: counts[module] for module in at_most_twice if counts[module] > 2} == {}
