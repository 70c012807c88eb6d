"""The operator talks to the API server by path (`kube.rest`), never through the typed
`CoreV1Api`: loading that one module (and the ~250 models it imports, each method wrapped
in pydantic's `validate_call`) costs some 19.5 MiB of memory. Checked in a fresh
interpreter, after importing everything the operator runs and building both of its
API facades, since the tests themselves use the typed APIs."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys
sys.path[:0] = {path!r}
from kubernetes import client as k8s
from oauth2_token_operator import cli
from oauth2_token_operator.controller import handlers, run, watches
from oauth2_token_operator.kube.api import KubeApi

configuration = k8s.Configuration()
configuration.host = "https://127.0.0.1:1"
api_client = k8s.ApiClient(configuration)
KubeApi(api_client)
watches.build(api_client)
watches.build(api_client, ("a", "b"))
typed = sorted(name for name in sys.modules if name.startswith("kubernetes.client.api."))
models = [name for name in sys.modules if name.startswith("kubernetes.client.models.")]
print(typed, len(models))
"""


def test_no_typed_api_is_loaded() -> None:
    script = SCRIPT.format(path=sys.path)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    typed, models = out.stdout.rsplit(" ", 1)
    assert typed == "[]"
    assert int(models) < 20
