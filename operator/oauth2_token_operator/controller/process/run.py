"""Runs the operator in this process: logging, leader election, then kopf."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Coroutine
from typing import Any, cast

import kopf
from kubernetes import client as k8s

import oauth2_token_operator.controller.process.handlers  # noqa: F401 - registers the handlers
from oauth2_token_operator.controller.process.app import load_configuration
from oauth2_token_operator.controller.process.health import answering_alive
from oauth2_token_operator.controller.process.heap import limit_arenas
from oauth2_token_operator.controller.process.leader import (
    LeaderElection,
    LeaseSettings,
    LostLeadership,
)
from oauth2_token_operator.controller.shared.config import OperatorConfig
from oauth2_token_operator.kube.api import KubeApi

log = logging.getLogger(__name__)

Flag = asyncio.Event | threading.Event


def configure_logging(config: OperatorConfig) -> None:
    json_logs = config.log_format == "json"
    kopf.configure(
        log_format=kopf.LogFormat.JSON if json_logs else kopf.LogFormat.FULL,
        # The object a line is about (`log_refs`): a field in JSON, a prefix in text.
        log_prefix=not json_logs,
        debug=config.log_level == "DEBUG",
    )
    logging.getLogger().setLevel(config.log_level)
    # httpx logs every request URL at INFO; keep those for DEBUG.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))


def run(config: OperatorConfig) -> int:
    """Serve until SIGTERM/SIGINT, then exit gracefully."""
    configure_logging(config)
    limit_arenas()  # before any thread allocates: a heap once made stays
    try:
        asyncio.run(_serve_until_signalled(config))
    except LostLeadership as exc:
        log.error("%s; exiting so that the pod restarts as a candidate", exc)
        return 1
    return 0


async def _serve_until_signalled(config: OperatorConfig) -> None:
    """SIGTERM and SIGINT stop the operator gracefully in every state. kopf handles them
    once it runs, but a standby waiting for the Lease has not started kopf, and as a
    container's PID 1 the process ignores a signal it has no handler for: the pod would
    sit out its whole grace period before the kubelet kills it."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await serve(config, stop_flag=stop)


async def serve(
    config: OperatorConfig,
    *,
    memo: kopf.Memo | None = None,
    stop_flag: Flag | None = None,
    ready_flag: Flag | None = None,
) -> None:
    """The operator: with leader election, only once this replica leads."""
    memo = memo if memo is not None else kopf.Memo(config=config)
    memo.stop_flag = stop_flag  # raised at cleanup (`app.raising`), then dropped
    liveness = _liveness_url(config)
    if not config.leader_election:
        await _operator(config, memo, liveness, stop_flag, ready_flag)
        return
    configuration = memo.get("kube_configuration") or await asyncio.to_thread(load_configuration)
    api_client = k8s.ApiClient(configuration)
    election = LeaderElection(
        KubeApi(api_client),
        LeaseSettings(
            namespace=config.lease_namespace,
            name=config.lease_name,
            identity=config.identity or socket.gethostname(),
            duration=config.lease_duration,
            renew_interval=config.lease_renew_interval,
        ),
    )
    try:
        async with answering_alive(config.health_port, b"standby", config.health_bind_address):
            if not await _until(election.acquire(), stop_flag):
                return  # stopped while standing by
        holding = asyncio.create_task(election.hold(), name="lease")
        operating = asyncio.create_task(
            _operator(config, memo, liveness, stop_flag, ready_flag), name="operator"
        )
        done, _ = await asyncio.wait({holding, operating}, return_when=asyncio.FIRST_COMPLETED)
        if holding in done:
            operating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await operating
            holding.result()  # raises LostLeadership
        holding.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await holding
        operating.result()
    finally:
        await election.release()
        await asyncio.to_thread(api_client.close)


def _liveness_url(config: OperatorConfig) -> str | None:
    """Where kopf serves `/healthz` (it listens on the URL's host and port)."""
    if config.health_port is None:
        return None
    host = config.health_bind_address
    return f"http://{f'[{host}]' if ':' in host else host}:{config.health_port}/healthz"


async def _operator(
    config: OperatorConfig,
    memo: kopf.Memo,
    liveness: str | None,
    stop_flag: Flag | None,
    ready_flag: Flag | None,
) -> None:
    await kopf.operator(
        # kopf would otherwise derive an identity from getpass.getuser(), which fails for
        # a numeric uid without a passwd entry (the image's).
        # (kopf types it as its own NewType of str, which it does not export.)
        identity=cast(Any, config.identity or socket.gethostname()),
        clusterwide=not config.namespaces,
        namespaces=config.namespaces,
        standalone=True,
        liveness_endpoint=liveness,
        memo=memo,
        stop_flag=stop_flag,
        ready_flag=ready_flag,
    )


async def _until(work: Coroutine[Any, Any, None], stop_flag: Flag | None) -> bool:
    """Run `work` until done (True) or until `stop_flag` is set first (False)."""
    task = asyncio.ensure_future(work)
    while not task.done():
        if stop_flag is not None and stop_flag.is_set():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return False
        await asyncio.wait({task}, timeout=0.2)
    task.result()
    return True
