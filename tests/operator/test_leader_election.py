"""The Lease protocol against a real API server, with clocks the test moves: a crashed
leader (no release) is replaced once its Lease expires, and it then steps down."""

from __future__ import annotations

import pytest
from kubernetes import client as k8s

from oauth2_token_operator.controller.process.leader import (
    LeaderElection,
    LeaseSettings,
    LostLeadership,
)
from oauth2_token_operator.kube.api import KubeApi

pytestmark = pytest.mark.cluster


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_expiry_takeover_and_step_down(
    kube_admin: k8s.ApiClient, kube_namespace: str
) -> None:
    kube = KubeApi(kube_admin)
    clock = Clock()
    sleeps: list[float] = []

    async def no_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock.now += seconds

    def replica(identity: str) -> LeaderElection:
        settings = LeaseSettings(namespace=kube_namespace, identity=identity, duration=15.0)
        return LeaderElection(kube, settings, clock=clock, sleep=no_sleep)

    a, b = replica("a"), replica("b")
    await a.acquire()
    assert a.is_leader
    assert not await b._try_acquire(), "a live Lease is not taken"

    clock.now += 16  # a crashed: no renewal, no release
    await b.acquire()
    assert b.is_leader
    lease = await kube.read_lease(kube_namespace, "oauth2-token-operator")
    assert lease is not None
    assert lease["spec"]["holderIdentity"] == "b"
    assert lease["spec"]["leaseTransitions"] == 1

    with pytest.raises(LostLeadership, match="held by another replica"):
        await a.hold()  # a comes back: it must stop, not fight

    await b.release()
    await a.acquire()  # released: taken at once, without waiting for expiry
    assert a.is_leader
