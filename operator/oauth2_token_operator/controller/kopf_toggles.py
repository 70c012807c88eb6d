"""Makes kopf's wait for its indexes linear in the objects listed, not quadratic.

Before any handler runs, kopf holds every object's worker until every index is complete:
each listed object gets a toggle in one ``ToggleSet`` (``operator_indexed``), dropped
once the object is indexed, and each worker then waits for the set to be all-clear
(``kopf/_core/reactor/processing.py``). kopf 1.45's ``make_toggle`` and ``drop_toggle``
call ``notify_all`` on the set's condition every time, so every worker already waiting
wakes, takes the lock in turn, finds the set still blocked and sleeps again: about N²/2
wake-ups for N listed objects. Profiled at a restart with 1000 tokens (requests and
their Secrets), these wake-ups were 58 % of the operator's CPU; they grow with the square
of the objects.

A set's waiters wait for its overall state (``is_on``), which adding or removing a toggle
changes only at the edges: the first blocking toggle and the last one gone. The methods
installed here notify exactly then. A toggle's own waiters share the condition but wait
for that toggle's state, which only ``Toggle.turn_to`` changes, and it still notifies.
So every wake-up that could let a waiter go on still happens, and no other.

The cure belongs in kopf; until it is there, `install` replaces the three methods on
kopf's class, once, and only where the class has the shape these methods rely on
(otherwise kopf's own methods stay, which are correct, only slower).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from kopf._cogs.aiokits import aiotoggles

log = logging.getLogger(__name__)

_INSTALLED = "_oauth2_token_operator_quiet_toggles"


async def make_toggle(
    self: aiotoggles.ToggleSet, __val: bool = False, *, name: str | None = None
) -> aiotoggles.Toggle:
    toggle = aiotoggles.Toggle(__val, name=name, condition=self._condition)
    await _change(self, lambda: self._toggles.add(toggle))
    return toggle


async def drop_toggle(self: aiotoggles.ToggleSet, toggle: aiotoggles.Toggle) -> None:
    await _change(self, lambda: self._toggles.discard(toggle))


async def drop_toggles(self: aiotoggles.ToggleSet, toggles: Iterable[aiotoggles.Toggle]) -> None:
    await _change(self, lambda: self._toggles.difference_update(toggles))


async def _change(toggle_set: aiotoggles.ToggleSet, change: Callable[[], None]) -> None:
    """Change the set's toggles; wake its waiters only if its overall state changed."""
    async with toggle_set._condition:
        before = toggle_set.is_on()
        change()
        if toggle_set.is_on() != before:
            toggle_set._condition.notify_all()


def install() -> bool:
    """Install the edge-only notifications on kopf's ToggleSet; whether they are in place."""
    toggle_set = aiotoggles.ToggleSet
    if getattr(toggle_set, _INSTALLED, False):
        return True
    probe = toggle_set(all)
    fits = (
        isinstance(getattr(probe, "_condition", None), asyncio.Condition)
        and isinstance(getattr(probe, "_toggles", None), set)
        and all(hasattr(toggle_set, m) for m in ("make_toggle", "drop_toggle", "drop_toggles"))
    )
    if not fits:
        log.warning("kopf's ToggleSet has changed shape; its index wait stays quadratic")
        return False
    toggle_set.make_toggle = make_toggle  # type: ignore[method-assign]
    toggle_set.drop_toggle = drop_toggle  # type: ignore[method-assign]
    toggle_set.drop_toggles = drop_toggles  # type: ignore[method-assign]
    setattr(toggle_set, _INSTALLED, True)
    return True
