"""Fixtures of the monitoring tests."""

from tests.monitoring.promtool import promtool  # noqa: F401
