"""Leader election over a `coordination.k8s.io/v1` Lease, as client-go does it.

Replicas of the operator wait for the Lease before they start any controller: only the
holder watches, issues and writes, so two replicas never both issue. The holder renews
the Lease; a replica that cannot renew before it would expire stops at once (its
process exits and restarts as a candidate), and a replica that stops gracefully
releases the Lease so a standby takes over without waiting for it to expire.

Every write is optimistic (`resourceVersion`): of two candidates, one gets a 409.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from oauth2_token_operator.kube.api import Conflict, KubeApi, KubeApiError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeaseSettings:
    namespace: str
    name: str = "oauth2-token-operator"
    identity: str = ""
    duration: float = 15.0
    """A holder that has not renewed for this long is presumed gone."""
    renew_interval: float = 5.0
    retry_interval: float = 2.0


class LostLeadership(Exception):
    pass


def _micro_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _epoch(text: str | None) -> float:
    if not text:
        return 0.0
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class LeaderElection:
    def __init__(
        self,
        kube: KubeApi,
        settings: LeaseSettings,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self.kube = kube
        self.settings = settings
        self._clock = clock
        self._sleep = sleep
        self._lease: dict[str, Any] | None = None
        self.is_leader = False

    async def acquire(self) -> None:
        """Return once this replica holds the Lease."""
        s = self.settings
        while not await self._try_acquire():
            await self._sleep(s.retry_interval)
        self.is_leader = True
        log.info("leading as %s (Lease %s/%s)", s.identity, s.namespace, s.name)

    async def hold(self) -> None:
        """Renew until cancelled; raise `LostLeadership` when renewal fails for too long."""
        s = self.settings
        last_renewed = self._clock()
        while True:
            await self._sleep(s.renew_interval)
            try:
                if await self._try_acquire():
                    last_renewed = self._clock()
                    continue
                raise LostLeadership(f"Lease {s.namespace}/{s.name} is held by another replica")
            except KubeApiError as exc:
                log.warning("renewing the Lease failed: %s", exc)
            if self._clock() - last_renewed >= s.duration - s.retry_interval:
                self.is_leader = False
                raise LostLeadership(f"could not renew Lease {s.namespace}/{s.name} in time")

    async def release(self) -> None:
        """Give the Lease up (graceful stop): a standby takes over at once."""
        if not self.is_leader or self._lease is None:
            return
        self.is_leader = False
        lease = dict(self._lease)
        spec = dict(lease.get("spec") or {})
        if spec.get("holderIdentity") != self.settings.identity:
            return
        spec.update(holderIdentity=None, renewTime=_micro_time(0))
        lease["spec"] = spec
        try:
            await self.kube.replace_lease(self.settings.namespace, lease)
        except KubeApiError as exc:
            log.warning("releasing the Lease failed (it will expire): %s", exc)

    async def _try_acquire(self) -> bool:
        s = self.settings
        now = self._clock()
        current = await self.kube.read_lease(s.namespace, s.name)
        spec_now = {
            "holderIdentity": s.identity,
            "leaseDurationSeconds": int(s.duration),
            "renewTime": _micro_time(now),
        }
        try:
            if current is None:
                spec_now["acquireTime"] = _micro_time(now)
                spec_now["leaseTransitions"] = 0
                self._lease = await self.kube.create_lease(
                    s.namespace,
                    {
                        "apiVersion": "coordination.k8s.io/v1",
                        "kind": "Lease",
                        "metadata": {"name": s.name},
                        "spec": spec_now,
                    },
                )
                return True
            spec = dict(current.get("spec") or {})
            holder = spec.get("holderIdentity")
            expires = _epoch(spec.get("renewTime")) + float(
                spec.get("leaseDurationSeconds") or s.duration
            )
            if holder and holder != s.identity and now < expires:
                return False
            if holder != s.identity:
                spec_now["acquireTime"] = _micro_time(now)
                spec_now["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
            self._lease = await self.kube.replace_lease(
                s.namespace, {**current, "spec": {**spec, **spec_now}}
            )
            return True
        except Conflict:
            return False
