"""Runs the operator in this process: logging, then kopf with our handlers."""

from __future__ import annotations

import asyncio
import logging

import kopf

import oauth2_token_operator.controller.handlers  # noqa: F401 - registers the handlers
from oauth2_token_operator.controller.config import OperatorConfig


def configure_logging(config: OperatorConfig) -> None:
    kopf.configure(
        log_format=kopf.LogFormat.JSON if config.log_format == "json" else kopf.LogFormat.FULL,
        debug=config.log_level == "DEBUG",
    )
    logging.getLogger().setLevel(config.log_level)
    # httpx logs every request URL at INFO; keep those for DEBUG.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))


def run(config: OperatorConfig) -> int:
    """Serve until SIGTERM/SIGINT (kopf handles both and exits gracefully)."""
    configure_logging(config)
    liveness = f"http://0.0.0.0:{config.health_port}/healthz" if config.health_port else None
    asyncio.run(
        kopf.operator(
            clusterwide=not config.namespaces,
            namespaces=config.namespaces,
            standalone=True,
            liveness_endpoint=liveness,
            memo=kopf.Memo(config=config),
        )
    )
    return 0
