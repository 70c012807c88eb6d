"""The kind cluster config for each node image (no engine needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.kind import SYNC_FREQUENCY, Build, kind_config


def _config(source: str) -> dict[str, Any]:
    build = Build(Path("/kind"), "node:test", source)
    config: dict[str, Any] = yaml.safe_load(kind_config(build, Path("/run/resolv.conf")))
    return config


@pytest.mark.parametrize("source", ["standard", "offline"])
def test_kubelet_settings_for_every_image(source: str) -> None:
    config = _config(source)
    kubelet = yaml.safe_load(config["kubeadmConfigPatches"][0])
    assert kubelet["kind"] == "KubeletConfiguration"
    assert kubelet["failCgroupV1"] is False
    assert kubelet["syncFrequency"] == SYNC_FREQUENCY
    # CoreDNS's upstream: the mounted file, never the node's own resolv.conf.
    assert kubelet["resolvConf"] == "/etc/kubernetes/pod-resolv.conf"
    (node,) = config["nodes"]
    assert node["extraMounts"] == [
        {
            "hostPath": "/run/resolv.conf",
            "containerPath": "/etc/kubernetes/pod-resolv.conf",
            "readOnly": True,
        }
    ]


def test_offline_image_brings_its_own_pod_network() -> None:
    assert _config("offline")["networking"]["disableDefaultCNI"] is True
    # kindest/node ships kindnetd's image: its default CNI stays on.
    assert "disableDefaultCNI" not in _config("standard")["networking"]
