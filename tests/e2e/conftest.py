"""Fixtures of the operator's kind tests (see fixtures_ship.py)."""

from tests.e2e.fixtures_ship import cluster_authserver, operator_image  # noqa: F401
