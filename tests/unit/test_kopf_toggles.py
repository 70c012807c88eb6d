"""kopf's toggle sets wake their waiters only when the set's state changes
(`controller.kopf_toggles`), and still whenever it does."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

import pytest
from kopf._cogs.aiokits import aiotoggles

from oauth2_token_operator.controller import kopf_toggles


@pytest.fixture(autouse=True)
def installed() -> None:
    assert kopf_toggles.install()


def counting_notifications(toggles: aiotoggles.ToggleSet) -> list[int]:
    """A list whose length is the number of `notify_all` calls on the set's condition."""
    calls: list[int] = []
    condition = toggles._condition
    original = condition.notify_all

    def notify_all() -> None:
        calls.append(len(condition._waiters))
        original()

    condition.notify_all = notify_all  # type: ignore[method-assign]
    return calls


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def waiters(toggles: aiotoggles.ToggleSet, state: bool, n: int) -> list[asyncio.Task[None]]:
    return [asyncio.create_task(toggles.wait_for(state)) for _ in range(n)]


async def test_indexing_wakes_the_waiting_workers_once_not_once_per_object() -> None:
    """kopf's pattern: a toggle per listed object, dropped when the object is indexed,
    while the indexed objects' workers wait for the set to clear. kopf's own methods
    notify at every make and drop (2 N wake-ups of every waiter)."""
    toggles = aiotoggles.ToggleSet(all)
    notifications = counting_notifications(toggles)
    objects = [await toggles.make_toggle(name=f"object {i}") for i in range(100)]
    workers: list[asyncio.Task[None]] = []
    for toggle in objects[:-1]:
        await toggles.drop_toggle(toggle)
        workers += waiters(toggles, True, 1)
        await settle()
    assert not any(worker.done() for worker in workers)
    await toggles.drop_toggle(objects[-1])
    await asyncio.wait_for(asyncio.gather(*workers), timeout=5)
    assert len(notifications) == 2  # the first toggle blocks, the last one's drop clears
    assert notifications[-1] == 99  # every waiting worker, at that one notification


async def test_the_first_blocking_toggle_wakes_those_waiting_for_the_set_to_block() -> None:
    toggles = aiotoggles.ToggleSet(all)
    blocked = waiters(toggles, False, 3)
    await settle()
    assert not any(task.done() for task in blocked)
    await toggles.make_toggle(name="blocker")
    await asyncio.wait_for(asyncio.gather(*blocked), timeout=5)


@pytest.mark.parametrize(
    ("fn", "initial", "expected"),
    [
        # any(): on while one "on" toggle is left.
        (any, [True, True, False], [True, False, False]),
        # all(): on once the only "off" toggle is gone.
        (all, [False, True, True], [True, True, True]),
    ],
)
async def test_the_state_after_each_drop_is_what_kopf_computes(
    fn: Callable[[Iterable[bool]], bool], initial: list[bool], expected: list[bool]
) -> None:
    toggles = aiotoggles.ToggleSet(fn)
    made = [await toggles.make_toggle(state) for state in initial]
    states = []
    for toggle in made:
        await toggles.drop_toggle(toggle)
        states.append(toggles.is_on())
    assert states == expected


async def test_dropping_several_toggles_at_once_wakes_only_at_the_edge() -> None:
    toggles = aiotoggles.ToggleSet(all)
    made = [await toggles.make_toggle() for _ in range(10)]
    notifications = counting_notifications(toggles)
    workers = waiters(toggles, True, 4)
    await toggles.drop_toggles(made[:5])
    await settle()
    assert notifications == []
    assert not any(worker.done() for worker in workers)
    await toggles.drop_toggles(made[5:])
    await asyncio.wait_for(asyncio.gather(*workers), timeout=5)
    assert len(notifications) == 1


async def test_a_toggle_turned_still_wakes_its_own_and_the_sets_waiters() -> None:
    """A set's toggles share its condition; turning one is kopf's own `turn_to`."""
    toggles = aiotoggles.ToggleSet(any)
    toggle = await toggles.make_toggle(name="peering")
    own = asyncio.create_task(toggle.wait_for(True))
    whole = waiters(toggles, True, 2)
    await settle()
    await toggle.turn_to(True)
    await asyncio.wait_for(asyncio.gather(own, *whole), timeout=5)


def test_installing_twice_keeps_one_installation() -> None:
    assert kopf_toggles.install()
    assert aiotoggles.ToggleSet.make_toggle is kopf_toggles.make_toggle
    assert aiotoggles.ToggleSet.drop_toggle is kopf_toggles.drop_toggle
    assert aiotoggles.ToggleSet.drop_toggles is kopf_toggles.drop_toggles
