"""Run inside a workload pod (the operator's image: Python and httpx), as
``python3 -c <this file's source> COMMAND ...``, by ``tests/e2e/ship.py``.

Commands (answers are one JSON line; tokens are never printed, only a hash of them):

* ``sample DIR URL CLIENT_ID SECRET CA_PEM``: read the token Secret mounted at DIR and
  introspect (RFC 7662) its ``access_token`` at URL: ``{"sha": ..., "expires_at": ...,
  "now": ..., "active": ..., "exp": ...}``;
* ``introspect URL CLIENT_ID SECRET CA_PEM TOKEN``: ``{"active": ..., "exp": ..., "sub": ...}``;
* ``password URL CLIENT_ID SECRET CA_PEM USER PASSWORD SCOPE RESOURCE``: a password grant;
  ``{"refresh_token": ...}`` (the test puts it into a Secret).

Clients authenticate with client_secret_basic (RFC 6749 §2.3.1 encoding).
"""

from __future__ import annotations

import base64
import hashlib
import json
import ssl
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import httpx


def _post(url: str, client_id: str, secret: str, ca_pem: str, data: dict[str, str]) -> Any:
    basic = base64.b64encode(f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()).decode()
    context = ssl.create_default_context(cadata=ca_pem)
    response = httpx.post(
        url, data=data, headers={"Authorization": f"Basic {basic}"}, verify=context, timeout=10
    )
    response.raise_for_status()
    return response.json()


def _introspect(url: str, client_id: str, secret: str, ca_pem: str, token: str) -> dict[str, Any]:
    answer = _post(url, client_id, secret, ca_pem, {"token": token})
    return {"active": answer.get("active"), "exp": answer.get("exp"), "sub": answer.get("sub")}


def main(argv: list[str]) -> dict[str, Any]:
    command, args = argv[0], argv[1:]
    if command == "sample":
        directory, url, client_id, secret, ca_pem = args
        now = time.time()
        token = (Path(directory) / "access_token").read_text()
        expires_at = (Path(directory) / "expires_at").read_text()
        return {
            "sha": hashlib.sha256(token.encode()).hexdigest()[:16],
            "expires_at": datetime.fromisoformat(expires_at).timestamp() if expires_at else None,
            "now": now,
            **_introspect(url, client_id, secret, ca_pem, token),
        }
    if command == "introspect":
        url, client_id, secret, ca_pem, token = args
        return _introspect(url, client_id, secret, ca_pem, token)
    if command == "password":
        url, client_id, secret, ca_pem, user, password, scope, resource = args
        data = {"grant_type": "password", "username": user, "password": password}
        data |= {"scope": scope, "resource": resource}
        answer = _post(url, client_id, secret, ca_pem, data)
        return {"refresh_token": answer["refresh_token"]}
    raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
