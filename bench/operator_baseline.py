"""The baseline of the issuance benchmark: a minimal script doing only the unavoidable
work per token, run as its own process so it is measured like the operator.

It watches the namespace's AccessTokenRequests (the only way to learn of them) and, for
each one added, with at most ``concurrency`` at once: one finalizer patch, one token
request (httpx), one Secret create, one status patch that says Ready. The finalizer is
unavoidable for an operator that revokes tokens when their request is deleted, and it goes
on before a token is issued (as the operator does it: a token issued for a request deleted
meanwhile would never be revoked), so it is one of the three writes per token here too.
Nothing else: no Event, no validation, no sharing, no retry, no renewal.

Protocol (``python -m bench.operator_baseline``): one JSON line on stdin with the
settings; it prints ``watching`` once its watch is open, then ``done`` after ``count``
tokens, and exits when stdin closes (so the caller can read /proc first).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import ssl
import sys
import time
from datetime import UTC, datetime
from typing import Any

import httpx

from oauth2_token_operator.api.crd import GROUP, VERSION

FINALIZER = f"{GROUP}/revoke-tokens"
"""The operator's finalizer (`controller.app.FINALIZER`, not imported: that would load
kopf into the baseline's process), so that both leave the same objects behind. The
baseline never removes it: its requests stay until the control plane goes (each of its
runs has a namespace of its own), so nothing ever waits on it."""


API_CONNECTIONS = (os.cpu_count() or 1) * 5
"""The API server's connections: as many as the kubernetes client's urllib3 pool that
the operator's own API calls go through (`Configuration.connection_pool_maxsize`,
cpu_count times 5), all kept alive. With one connection allowed per request in flight (64),
httpcore's pool scanned every connection for every queued request and probed each idle
one: 36.5 s of the script's 84 s at N = 1000 (BENCHMARKS.md, eleventh round), its pool's
cost, not the API server's."""
API_LIMITS = httpx.Limits(
    max_connections=API_CONNECTIONS, max_keepalive_connections=API_CONNECTIONS
)
OAUTH2_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)
"""The token endpoint's: the operator's OAuth2 transport's (`oauth2.transport`)."""


async def main(settings: dict[str, Any]) -> None:
    namespace = settings["namespace"]
    requests = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/accesstokenrequests"
    tls = ssl.create_default_context(cafile=settings["ca"])
    tls.load_cert_chain(settings["cert"], settings["key"])
    api = httpx.AsyncClient(
        base_url=settings["server"],
        verify=tls,
        limits=API_LIMITS,
        timeout=30.0,
    )
    oauth = httpx.AsyncClient(
        verify=ssl.create_default_context(cafile=settings["authserver_ca"]),
        limits=OAUTH2_LIMITS,
        timeout=30.0,
    )
    gate = asyncio.Semaphore(settings["concurrency"])
    auth = {"Authorization": settings["authorization"]}

    async def serve(body: dict[str, Any]) -> None:
        name = body["metadata"]["name"]
        spec = body["spec"]
        async with gate:
            # A merge patch replaces the whole list: the request has no other finalizer.
            finalizer = {"metadata": {"finalizers": [FINALIZER]}}
            (
                await api.patch(
                    f"{requests}/{name}",
                    json=finalizer,
                    headers={"Content-Type": "application/merge-patch+json"},
                )
            ).raise_for_status()
            form = {
                "grant_type": "client_credentials",
                "scope": " ".join(spec["scopes"]),
                "resource": " ".join(spec["resources"]),
            }
            token = (
                (await oauth.post(settings["token_endpoint"], data=form, headers=auth))
                .raise_for_status()
                .json()
            )
            expires_at = time.time() + token["expires_in"]
            data = {
                "access_token": token["access_token"],
                "token_type": token["token_type"],
                "expires_at": str(int(expires_at)),
                "scope": token.get("scope", ""),
            }
            secret = {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name, "namespace": namespace},
                "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
            }
            (
                await api.post(f"/api/v1/namespaces/{namespace}/secrets", json=secret)
            ).raise_for_status()
            now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            status = {
                "status": {
                    "secretName": name,
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True",
                            "reason": "TokenValid",
                            "message": "",
                            "lastTransitionTime": now,
                        },
                    ],
                }
            }
            (
                await api.patch(
                    f"{requests}/{name}/status",
                    json=status,
                    headers={"Content-Type": "application/merge-patch+json"},
                )
            ).raise_for_status()

    tasks: list[asyncio.Task[None]] = []
    async with api.stream("GET", requests, params={"watch": "1"}, timeout=None) as response:
        print("watching", flush=True)
        async for line in response.aiter_lines():
            if not line:
                continue
            event = json.loads(line)
            if event["type"] == "ADDED":
                tasks.append(asyncio.create_task(serve(event["object"])))
            if len(tasks) == settings["count"]:
                break
    await asyncio.gather(*tasks)
    await api.aclose()
    await oauth.aclose()
    print("done", flush=True)


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.stdin.readline())))
    sys.stdin.read()  # until the caller has read /proc
