"""Typed views of what the kubernetes client returns, for tests.

The client's generated models make every field optional (``metadata: V1ObjectMeta | None``)
and ``CustomObjectsApi`` annotates its results as ``object``, although the API server always
sends metadata with a stored object and custom objects come back as JSON dicts. These
helpers check that at run time and give the test the precise type.

(Request bodies need no helper: the generated methods validate a dict into their model,
so tests pass ``k8s.V1ConfigMap.model_validate({...})``, which sends the same JSON.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

T = TypeVar("T")


def unless_missing(read: Callable[[], T]) -> T | None:
    """`read()`, or `None` when the API server answers 404 (any other error is raised)."""
    try:
        return read()
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


class _HasMetadata(Protocol):
    @property
    def metadata(self) -> k8s.V1ObjectMeta | None: ...


def metadata(obj: _HasMetadata) -> k8s.V1ObjectMeta:
    """The metadata of an object the API server returned."""
    if obj.metadata is None:
        raise AssertionError(f"{type(obj).__name__} from the API server has no metadata")
    return obj.metadata


def json_object(value: object) -> dict[str, Any]:
    """A custom object (or any JSON object) as returned by ``CustomObjectsApi``."""
    if not isinstance(value, dict):
        raise AssertionError(f"expected a JSON object, got {type(value).__name__}")
    return value
