"""Run pods in a test cluster and ask them what they see: logs and exec.

Plain functions over the official client, usable with any cluster (kind or another).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from kubernetes.stream import stream


class PodError(RuntimeError):
    """A pod did not get where a test needed it."""


@dataclass(frozen=True)
class ExecResult:
    returncode: int
    stdout: str
    stderr: str


def pod_manifest(
    name: str,
    image: str,
    args: Sequence[str],
    *,
    env: Sequence[Mapping[str, Any]] = (),
    volumes: Mapping[str, Mapping[str, Any]] | None = None,
    labels: Mapping[str, str] | None = None,
    restart_policy: str = "Never",
    ports: Sequence[int] = (),
    readiness_http_port: int | None = None,
) -> dict[str, Any]:
    """One container running ``image`` (a locally loaded one) with ``args``.

    ``volumes`` maps a mount path to a volume source, e.g. ``{"/etc/t": {"secret":
    {"secretName": "s"}}}``.
    """
    container: dict[str, Any] = {
        "name": "main",
        "image": image,
        "imagePullPolicy": "Never",
        "args": list(args),
        "env": [dict(e) for e in env],
        "ports": [{"containerPort": p} for p in ports],
        "volumeMounts": [
            {"name": f"v{i}", "mountPath": path, "readOnly": True}
            for i, path in enumerate(volumes or {})
        ],
    }
    if readiness_http_port is not None:
        container["readinessProbe"] = {
            "httpGet": {"path": "/", "port": readiness_http_port},
            "periodSeconds": 1,
        }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": dict(labels or {})},
        "spec": {
            "restartPolicy": restart_policy,
            "terminationGracePeriodSeconds": 1,
            "automountServiceAccountToken": False,
            "containers": [container],
            "volumes": [
                {"name": f"v{i}", **source} for i, source in enumerate((volumes or {}).values())
            ],
        },
    }


def _phase_and_ready(pod: Any) -> tuple[str, bool]:
    conditions = pod.status.conditions or []
    ready = any(c.type == "Ready" and c.status == "True" for c in conditions)
    return pod.status.phase or "", ready


def _describe(core: k8s.CoreV1Api, namespace: str, name: str) -> str:
    pod = core.read_namespaced_pod(name, namespace)
    events = core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}")
    status_of = pod.status or k8s.V1PodStatus()
    lines = [f"phase={status_of.phase}"]
    for status in status_of.container_statuses or []:
        lines.append(f"container {status.name}: {status.state}")
    lines += [f"event {e.reason}: {e.message}" for e in events.items]
    return "\n".join(lines)


def wait_for_pod(
    api: k8s.ApiClient, namespace: str, name: str, *, until: str = "Ready", timeout: float = 120
) -> None:
    """Wait until the pod is Ready, or has ``Succeeded`` (``until="Succeeded"``)."""
    core = k8s.CoreV1Api(api)
    deadline = time.monotonic() + timeout
    while True:
        phase, ready = _phase_and_ready(core.read_namespaced_pod(name, namespace))
        if (until == "Ready" and ready) or phase == until:
            return
        if phase == "Failed" or (phase == "Succeeded" and until != "Succeeded"):
            raise PodError(f"pod {namespace}/{name} ended:\n{_describe(core, namespace, name)}")
        if time.monotonic() > deadline:
            raise PodError(
                f"pod {namespace}/{name} not {until} after {timeout}s:\n"
                f"{_describe(core, namespace, name)}"
            )
        time.sleep(0.2)


def start_pod(api: k8s.ApiClient, namespace: str, manifest: Mapping[str, Any]) -> str:
    """Create the pod and wait until it is Ready; its name."""
    name = str(manifest["metadata"]["name"])
    k8s.CoreV1Api(api).create_namespaced_pod(namespace, k8s.V1Pod.model_validate(manifest))
    wait_for_pod(api, namespace, name)
    return name


def run_pod(
    api: k8s.ApiClient, namespace: str, manifest: Mapping[str, Any], timeout: float = 120
) -> str:
    """Create the pod, wait until it has run to success, and return its logs."""
    name = str(manifest["metadata"]["name"])
    core = k8s.CoreV1Api(api)
    core.create_namespaced_pod(namespace, k8s.V1Pod.model_validate(manifest))
    wait_for_pod(api, namespace, name, until="Succeeded", timeout=timeout)
    return str(core.read_namespaced_pod_log(name, namespace))


def exec_in_pod(
    api: k8s.ApiClient, namespace: str, name: str, argv: Sequence[str], timeout: float = 30
) -> ExecResult:
    """Run ``argv`` in the pod's container (as ``kubectl exec`` does)."""
    # stream() swaps the client's request function while it runs: use a client of its own.
    with k8s.ApiClient(api.configuration) as exec_api:
        resp = stream(
            k8s.CoreV1Api(exec_api).connect_get_namespaced_pod_exec,
            name,
            namespace,
            command=list(argv),
            stdin=False,
            stdout=True,
            stderr=True,
            tty=False,
            _preload_content=False,
        )
        stdout, stderr = [], []
        deadline = time.monotonic() + timeout
        while resp.is_open():
            if time.monotonic() > deadline:
                resp.close()
                raise PodError(f"exec {list(argv)} in {namespace}/{name}: no end in {timeout}s")
            resp.update(timeout=1)
            stdout.append(resp.read_stdout())
            stderr.append(resp.read_stderr())
        resp.close()
        returncode = resp.returncode
    return ExecResult(int(returncode or 0), "".join(stdout), "".join(stderr))


def delete_pod(api: k8s.ApiClient, namespace: str, name: str) -> None:
    try:
        k8s.CoreV1Api(api).delete_namespaced_pod(name, namespace, grace_period_seconds=0)
    except ApiException as exc:
        if exc.status != 404:
            raise
