"""`oauth2-token-operator run` as a real child process (the image's entrypoint), with a
kubeconfig for the session's control plane: started, waited for, killed with SIGKILL
or stopped with SIGTERM, and started again by tests that need a real process death."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.cluster.harness import KubeCluster, free_port
from tests.cluster.kubeconfig import write_kubeconfig
from tests.polling import wait_for


def loopback_allowed(args: list[str]) -> list[str]:
    """`args`, with an empty deny list unless they name one: oidc-provider listens on
    127.0.0.1, which the operator's default list denies."""
    named = any(arg.startswith("--deny-cidr") for arg in args)
    return args if named else ["--deny-cidr=", *args]


class OperatorProcess:
    """One `python -m oauth2_token_operator.cli run …`; its output goes to a file (a pipe
    nobody reads would fill up and block the operator)."""

    def __init__(self, kubeconfig: Path, log: Path, args: list[str]) -> None:
        self.health_port = free_port()
        self.log_path = log
        self._output = log.open("wb")
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "oauth2_token_operator.cli",
                "run",
                f"--health-port={self.health_port}",
                *loopback_allowed(args),
            ],
            env={**os.environ, "KUBECONFIG": str(kubeconfig)},
            stdout=self._output,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Until /healthz answers 200 for kopf running or standing by, not only starting
        (`controller.health`); fails early if the process exited."""

        def healthy() -> bool:
            if not self.running:
                raise AssertionError(f"the operator exited: {self.log()[-2000:]}")
            try:
                answer = httpx.get(f"http://127.0.0.1:{self.health_port}/healthz")
            except httpx.TransportError:
                return False
            return answer.status_code == 200 and answer.text != "starting\n"

        wait_for("the operator's /healthz", healthy, timeout=timeout)

    def kill(self) -> None:
        """SIGKILL: no cleanup handler runs, in-memory state is gone."""
        self._process.send_signal(signal.SIGKILL)
        self._process.wait(timeout=30)
        self._output.close()

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; the exit code."""
        if self.running:
            self._process.send_signal(signal.SIGTERM)
        try:
            code = self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=10)
            raise
        finally:
            self._output.close()
        return code


def admin_kubeconfig(kube_cluster: KubeCluster, path: Path) -> Path:
    """A kubeconfig with the session's admin certificate (skips without one)."""
    cfg = kube_cluster.configuration()
    if not cfg.cert_file or not cfg.key_file:
        pytest.skip("needs the built control plane's client certificate")
    return write_kubeconfig(
        path,
        server=cfg.host,
        ca_file=cfg.ssl_ca_cert,
        user="admin",
        cert_file=Path(cfg.cert_file),
        key_file=Path(cfg.key_file),
    )


def operator_processes(
    kube_cluster: KubeCluster, directory: Path
) -> Iterator[Callable[..., OperatorProcess]]:
    """Body of the `operator_processes` fixture: a factory of started, healthy operator
    processes (`start(*args, wait=True)`); every one still running is stopped at the end."""
    kubeconfig = admin_kubeconfig(kube_cluster, directory / "kubeconfig")
    started: list[OperatorProcess] = []

    def start(*args: str, wait: bool = True) -> OperatorProcess:
        process = OperatorProcess(
            kubeconfig, directory / f"operator-{len(started) + 1}.log", list(args)
        )
        started.append(process)
        if wait:
            process.wait_healthy()
        return process

    try:
        yield start
    finally:
        for process in reversed(started):
            if process.running:
                process.stop()
