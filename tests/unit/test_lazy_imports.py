"""What the operator leaves unimported, for its memory (checked in a fresh interpreter
after importing everything the operator runs, since the tests themselves import all):

* the typed `CoreV1Api`: it talks to the API server by path (`kube.rest`); that one
  module and the ~250 models it imports, each method wrapped in pydantic's
  `validate_call`, cost some 19.5 MiB;
* PyJWT and cryptography (8.7 MiB), until a client signs its assertions
  (`oauth2.client_assertion`).
"""

from __future__ import annotations

import json
import subprocess
import sys

from oauth2_token_operator.oauth2.client_auth import AuthMethod

SCRIPT = """
import json, sys
sys.path[:0] = {path!r}
from kubernetes import client as k8s
from oauth2_token_operator.cli import main
from oauth2_token_operator.controller.process import handlers, run
from oauth2_token_operator.kube.cache import ClusterCache
from oauth2_token_operator.kube.api import KubeApi
from oauth2_token_operator.oauth2.client_auth import ClientAuthenticator, ClientConfig

configuration = k8s.Configuration()
configuration.host = "https://127.0.0.1:1"
api_client = k8s.ApiClient(configuration)
KubeApi(api_client)
ClusterCache.watching(api_client)
ClusterCache.watching(api_client, ("a", "b"))
client = ClientConfig(client_id="c", auth_method={method!r}, client_secret="s")
ClientAuthenticator(client).authenticate(token_endpoint="https://as/token", issuer="https://as")
loaded = [name.split(".")[0] for name in sys.modules]
print(json.dumps({{
    "typed": sorted(name for name in sys.modules if name.startswith("kubernetes.client.api.")),
    "models": sum(name.startswith("kubernetes.client.models.") for name in sys.modules),
    "jose": sorted({{top for top in loaded if top in ("jwt", "cryptography")}}),
}}))
"""


def loaded_after(method: AuthMethod) -> dict[str, object]:
    script = SCRIPT.format(path=sys.path, method=method)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    answer: dict[str, object] = json.loads(out.stdout)
    return answer


def test_no_typed_api_nor_jose_for_a_client_with_a_secret() -> None:
    loaded = loaded_after("client_secret_basic")
    assert loaded["typed"] == []
    assert isinstance(loaded["models"], int)
    assert loaded["models"] < 20
    assert loaded["jose"] == []


def test_jose_once_a_client_signs() -> None:
    assert loaded_after("client_secret_jwt")["jose"] == ["cryptography", "jwt"]
