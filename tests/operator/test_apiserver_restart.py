"""A restarted kube-apiserver (every watch dropped, a few seconds of outage): the operator
reconnects, restores a Secret edited meanwhile and serves new requests. A control plane
of its own, since restarting the session's would disturb other tests."""

from __future__ import annotations

import pytest

from tests.authserver.fixtures import AuthServer
from tests.cluster.harness import use_existing_cluster
from tests.operator.own_plane import assert_still_serving, operator_on_own_plane

pytestmark = [pytest.mark.cluster, pytest.mark.authserver]


@pytest.mark.skipif(use_existing_cluster(), reason="restarts its own kube-apiserver")
def test_the_operator_survives_an_apiserver_restart(authserver: AuthServer) -> None:
    with operator_on_own_plane(authserver, "restart") as (plane, ns):
        original = ns.token_secret("before")
        plane.restart_apiserver(downtime=3)
        assert_still_serving(ns, original)
