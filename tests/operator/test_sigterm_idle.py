"""Issue 21, item 4: an idle operator stops at once on SIGTERM (it took ~5 s: kopf waited
for tasks of ours that nothing stopped, then logged them as "Hung tasks")."""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.operator.process import OperatorProcess


def test_an_idle_operator_stops_on_sigterm_without_hung_tasks(
    operator_processes: Callable[..., OperatorProcess],
) -> None:
    # At DEBUG, kopf names the tasks it had to wait for ("Hung tasks are stopped").
    process = operator_processes("--metrics-port=0", "--log-level=DEBUG")
    started = time.monotonic()
    code = process.stop()
    took = time.monotonic() - started
    log = process.log()
    print(f"stopped in {took:.2f}s")  # 5.6 s with kopf's wait, 0.5 s without (this machine)
    assert code == 0, log[-2000:]
    assert "Hung tasks are stopped" not in log, "kopf waited for a task of ours"
