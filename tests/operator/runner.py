"""Runs the real operator (our kopf handlers) in a thread of the test process, against
the session's cluster, so tests stay plain synchronous code that may block."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import kopf
from kubernetes import client as k8s

from oauth2_token_operator.controller.process.run import serve
from oauth2_token_operator.controller.shared.config import OperatorConfig


def loopback_config(**config: Any) -> OperatorConfig:
    """The operator's configuration with no address denied (unless `config` says
    otherwise): the tests' authorization servers listen on 127.0.0.1, which its default
    `deny_cidrs` refuses."""
    return OperatorConfig(**{"deny_cidrs": (), **config})


class OperatorThread:
    def __init__(self, configuration: k8s.Configuration, config: OperatorConfig) -> None:
        self.config = config
        self.memo = kopf.Memo(kube_configuration=configuration, config=config)
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="operator", daemon=True)

    def _main(self) -> None:
        try:
            asyncio.run(
                serve(self.config, memo=self.memo, stop_flag=self._stop, ready_flag=self._ready)
            )
        except BaseException as exc:  # reported by stop()
            self._error = exc

    def start(self, timeout: float = 30.0, *, wait: bool = True) -> OperatorThread:
        self._thread.start()
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        if not self._ready.wait(timeout):
            raise TimeoutError(f"the operator did not start within {timeout}s: {self._error}")

    @property
    def ready(self) -> bool:
        """kopf runs (with leader election: this replica leads)."""
        return self._ready.is_set()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError("the operator did not stop")
        if self._error is not None:
            raise self._error

    @property
    def ctx(self) -> Any:
        return self.memo.get("ctx")


@contextlib.contextmanager
def running_operator(
    configuration: k8s.Configuration, config: OperatorConfig | None = None, *, wait: bool = True
) -> Iterator[OperatorThread]:
    operator = OperatorThread(configuration, config or loopback_config(metrics_port=None))
    operator.start(wait=wait)
    try:
        yield operator
    finally:
        operator.stop()
