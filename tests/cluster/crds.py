"""CustomResourceDefinitions: applied from manifests or YAML files, awaited until Established."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from tests.cluster.errors import ClusterError
from tests.cluster.objects import metadata

CrdSource = Mapping[str, Any] | str | Path  # a CRD manifest, or a YAML file holding CRDs


def apply_crds(api: k8s.ApiClient, crds: Iterable[CrdSource], timeout: float = 30.0) -> list[str]:
    """Create or replace CustomResourceDefinitions and wait until they are Established.

    Each item is a manifest dict or a YAML file (other kinds in it are ignored).
    Returns the CRD names.
    """
    docs = [doc for source in crds for doc in crd_documents(source)]
    names: list[str] = []
    ext = k8s.ApiextensionsV1Api(api)
    for doc in docs:
        name = doc["metadata"]["name"]
        try:
            ext.create_custom_resource_definition(_crd(doc))
        except ApiException as exc:
            if exc.status != 409:
                raise
            current = ext.read_custom_resource_definition(name)
            body = {**doc, "metadata": {**doc["metadata"]}}
            body["metadata"]["resourceVersion"] = metadata(current).resource_version
            ext.replace_custom_resource_definition(name, _crd(body))
        names.append(name)
    deadline = time.monotonic() + timeout
    for name in names:
        while not _established(ext.read_custom_resource_definition(name)):
            if time.monotonic() > deadline:
                raise ClusterError(f"CRD {name} not Established in {timeout}s")
            time.sleep(0.1)
    return names


def crd_documents(source: CrdSource) -> list[dict[str, Any]]:
    if isinstance(source, Mapping):
        return [dict(source)]
    with open(source) as stream:
        return [
            doc
            for doc in yaml.safe_load_all(stream)
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition"
        ]


def _established(crd: Any) -> bool:
    conditions = (crd.status.conditions if crd.status else None) or []
    return any(c.type == "Established" and c.status == "True" for c in conditions)


def _crd(manifest: Mapping[str, Any]) -> k8s.V1CustomResourceDefinition:
    return k8s.V1CustomResourceDefinition.model_validate(manifest)
