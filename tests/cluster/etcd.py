"""Writing to and compacting the control plane's etcd directly, through etcd's JSON
gateway to its v3 API (the harness builds no etcdctl): how a test moves the store's
history past what a client last saw."""

from __future__ import annotations

import base64

import httpx


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def put(etcd_url: str, key: str, value: str) -> int:
    """Write `key` (outside /registry: no API object) and return etcd's new revision."""
    response = httpx.post(f"{etcd_url}/v3/kv/put", json={"key": _b64(key), "value": _b64(value)})
    response.raise_for_status()
    return int(response.json()["header"]["revision"])


def compact(etcd_url: str, revision: int) -> None:
    """Forget every revision before `revision` (as kube-apiserver's periodic compaction
    does): a watch from an older one is answered 410 Gone."""
    response = httpx.post(
        f"{etcd_url}/v3/kv/compaction", json={"revision": str(revision), "physical": True}
    )
    response.raise_for_status()


def compacted_below(etcd_url: str, revision: int) -> bool:
    """Whether reading at `revision` - 1 fails because that history is gone."""
    response = httpx.post(
        f"{etcd_url}/v3/kv/range", json={"key": _b64("/"), "revision": str(revision - 1)}
    )
    return response.status_code != 200 and "compacted" in response.text
