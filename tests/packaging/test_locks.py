"""requirements/runtime.txt, the image's lock, holds exactly the operator's runtime
dependencies (pyproject.toml's, no extra) with their hashes, at the versions the tests run
with (the dev lock's): adding a dependency, or raising a lower bound, without `make lock`
fails here."""

from __future__ import annotations

import importlib.metadata

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.packaging.locks import (
    BUILD_LOCK,
    DEV_LOCK,
    FROM_PYPROJECT,
    RUNTIME_LOCK,
    Pin,
    pyproject_dependencies,
    read_lock,
)


def _applies_here(pin: Pin) -> bool:
    return pin.marker is None or Marker(pin.marker).evaluate()


def _closure_here(requirements: list[Requirement]) -> dict[str, set[str]]:
    """The installed distributions these requirements need in this environment (with
    their dependencies', extras included), by canonical name, with the extras asked."""
    needed: dict[str, set[str]] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [(req, "") for req in requirements]
    while todo:
        req, extra = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(req.name)
        if (name, frozenset(req.extras)) in seen:
            continue
        seen.add((name, frozenset(req.extras)))
        asked = needed.setdefault(name, set())
        asked |= req.extras
        try:
            requires = importlib.metadata.distribution(name).requires or []
        except importlib.metadata.PackageNotFoundError as exc:
            raise AssertionError(f"{name} is not installed: `make lock`, `make setup`") from exc
        for text in requires:
            for wanted in ("", *sorted(asked)):
                todo.append((Requirement(text), wanted))
    return needed


def test_its_direct_dependencies_are_pyproject_dependencies() -> None:
    runtime = read_lock(RUNTIME_LOCK)
    declared = {canonicalize_name(req.name): req for req in pyproject_dependencies()}
    direct = {name for name, pin in runtime.items() if FROM_PYPROJECT in pin.via}
    assert direct == set(declared), (
        f"requirements/runtime.txt is stale (run `make lock`): only declared "
        f"{sorted(set(declared) - direct)}, only locked {sorted(direct - set(declared))}"
    )
    for name, req in declared.items():
        assert req.specifier.contains(runtime[name].version, prereleases=True), (
            f"{name}=={runtime[name].version} does not satisfy pyproject.toml's {req}: "
            "run `make lock`"
        )


def test_every_package_comes_from_another_locked_one_and_has_hashes() -> None:
    runtime = read_lock(RUNTIME_LOCK)
    for name, pin in runtime.items():
        assert pin.hashes >= 1, name
        assert pin.via, name
        assert set(pin.via) <= {*runtime, FROM_PYPROJECT}, (name, pin.via)


def test_it_holds_exactly_what_the_dependencies_need_here() -> None:
    """Against the installed metadata: nothing missing (an extra's dependency included),
    nothing more (no dev package); the universal lock's markers decide what applies here."""
    runtime = read_lock(RUNTIME_LOCK)
    needed = _closure_here(pyproject_dependencies())
    locked_here = {name for name, pin in runtime.items() if _applies_here(pin)}
    assert locked_here == set(needed), (
        f"missing from the lock: {sorted(set(needed) - locked_here)}, "
        f"not needed: {sorted(locked_here - set(needed))}"
    )
    for name in needed:
        installed = importlib.metadata.version(name)
        assert installed == runtime[name].version, (name, installed, runtime[name].version)


def test_the_image_locks_take_the_versions_the_tests_run_with() -> None:
    dev = read_lock(DEV_LOCK)
    for lock in (RUNTIME_LOCK, BUILD_LOCK):
        for name, pin in read_lock(lock).items():
            assert name in dev, f"{lock.name}: {name} is not in the dev lock"
            assert pin.version == dev[name].version, (lock.name, name, pin.version)
            assert pin.hashes >= 1, (lock.name, name)
    assert {"setuptools", "pip"} <= set(read_lock(BUILD_LOCK))
