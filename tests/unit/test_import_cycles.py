"""No two modules of the operator import each other, directly or round a longer circle,
counting the imports made inside functions too (a lazy import is still a dependency).
Issue 24 asks for this of the whole package, and that no import runs back up between its
packages (`LAYERS`); the last circle (`client_auth` and
`client_assertion`, over the algorithm names) is gone."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "oauth2_token_operator"
NAME = PACKAGE.name


def module_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """Module -> the modules of the package it imports (a package's `__init__` stands
    for the package; `from pkg import name` of a submodule names the submodule)."""
    modules = {module_of(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {module: set() for module in modules}
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [f"{node.module}.{alias.name}" for alias in node.names]
                targets = [n for n in names if n in modules] or [node.module]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            graph[module] |= {t for t in targets if t in modules and t != module}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles, each once (by depth-first search from every module)."""
    found: list[list[str]] = []
    seen: set[frozenset[str]] = set()

    def visit(module: str, path: list[str]) -> None:
        for target in sorted(graph[module]):
            if target in path:
                circle = path[path.index(target) :]
                if frozenset(circle) not in seen:
                    seen.add(frozenset(circle))
                    found.append([*circle, target])
            elif len(path) < 12:
                visit(target, [*path, target])

    for module in sorted(graph):
        visit(module, [module])
    return found


def test_the_operator_has_no_import_circle() -> None:
    graph = imports()
    assert len(graph) > 80, "the package's modules were found"
    packages = {m for m in graph if (PACKAGE.parent / m.replace(".", "/") / "__init__.py").exists()}
    # A package's __init__ re-exports its modules: imports of a package's face are left
    # out, so a circle that runs through a face is not seen here.
    without_faces = {m: t - packages for m, t in graph.items() if m not in packages}
    assert circles(without_faces) == []


def test_a_circle_is_found_when_there_is_one() -> None:
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


LAYERS = [
    {"util"},
    {"oauth2"},
    {"manager"},
    {"api"},
    {"client_config"},
    {"kube"},
    {"policies"},
    {"controller"},
    {"cli", NAME},
]
"""The operator's packages from the ground up (issue 24): each imports only its own layer
and the layers below it. `util` knows neither OAuth2 nor Kubernetes; `oauth2` never
imports Kubernetes; `client_config` turns an OAuth2Client into the core's configs."""


def layer_of(module: str) -> int:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else parts[0]
    (index,) = [i for i, layer in enumerate(LAYERS) if top in layer]
    return index


def upward(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Every import of a module from a higher layer than its own."""
    return sorted(
        (module, target)
        for module, targets in graph.items()
        for target in targets
        if layer_of(target) > layer_of(module)
    )


def test_no_import_runs_back_up() -> None:
    assert upward(imports()) == []


def test_an_upward_import_is_found() -> None:
    graph = {f"{NAME}.oauth2.x": {f"{NAME}.kube.api"}, f"{NAME}.kube.api": {f"{NAME}.oauth2.x"}}
    assert upward(graph) == [(f"{NAME}.oauth2.x", f"{NAME}.kube.api")]


PRIVATE_TO_KUBE = {f"{NAME}.kube.{module}" for module in ("freezing", "informer", "watches")}
"""The informers' stores and how they keep objects (issue 24): the rest of the operator
reads the cluster through `kube.cache.ClusterCache`, typed, never a store."""


def reaching_into_kube(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Every import of a module private to `kube` from outside it."""
    return sorted(
        (module, target)
        for module, targets in graph.items()
        for target in targets & PRIVATE_TO_KUBE
        if not module.startswith(f"{NAME}.kube.")
    )


def test_only_kube_reads_the_informers_stores() -> None:
    assert reaching_into_kube(imports()) == []


def test_a_reach_into_kube_is_found() -> None:
    graph = {
        f"{NAME}.controller.x": {f"{NAME}.kube.freezing", f"{NAME}.kube.cache"},
        f"{NAME}.kube.cache": {f"{NAME}.kube.watches"},
    }
    assert reaching_into_kube(graph) == [(f"{NAME}.controller.x", f"{NAME}.kube.freezing")]


CONTROLLER_FOLDERS = ["shared", "request", "client", "process"]
"""The controller's folders from the ground up (issue 24, item 7): what both reconcilers
share (the context and its parts), one request's reconcile, one client's, and the process
around them (start, kopf wiring, leader election, health, memory)."""


def folder_of(module: str) -> int | None:
    parts = module.split(".")
    if parts[1:2] != ["controller"] or len(parts) < 4:
        return None
    return CONTROLLER_FOLDERS.index(parts[2])


def controller_upward(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Every import, inside `controller`, of a module from a higher folder."""
    found = []
    for module, targets in graph.items():
        mine = folder_of(module)
        for target in targets:
            theirs = folder_of(target)
            if mine is not None and theirs is not None and theirs > mine:
                found.append((module, target))
    return sorted(found)


def test_the_controllers_modules_live_in_its_folders() -> None:
    loose = sorted(
        path.name for path in (PACKAGE / "controller").glob("*.py") if path.name != "__init__.py"
    )
    assert loose == []
    assert sorted(
        p.name for p in (PACKAGE / "controller").iterdir() if p.is_dir() and p.name != "__pycache__"
    ) == sorted(CONTROLLER_FOLDERS)


def test_no_import_runs_back_up_between_the_controllers_folders() -> None:
    assert controller_upward(imports()) == []


def test_an_upward_import_between_folders_is_found() -> None:
    graph = {
        f"{NAME}.controller.shared.context": {f"{NAME}.controller.request.record"},
        f"{NAME}.controller.process.app": {f"{NAME}.controller.request.reconciler"},
    }
    assert controller_upward(graph) == [
        (f"{NAME}.controller.shared.context", f"{NAME}.controller.request.record")
    ]
