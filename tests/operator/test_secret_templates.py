"""`secretTemplate.data` on the real API server (issue 25): the Secret gets the rendered
keys beside the standard ones, a renewal renders them anew, and a changed template is
written without a new token."""

from __future__ import annotations

import json

from tests.operator.conftest import Namespace, wait_for
from tests.operator.runner import OperatorThread

NETRC = "machine api.example.com login svc password $access_token"
JSON = '{"token": ${access_token_json}, "expires": ${expires_at_json}}'


def test_extra_keys_are_rendered_and_follow_the_template(
    ns: Namespace, operator: OperatorThread
) -> None:
    ns.client("idp", ns.authserver.clients["client_secret_basic"])
    ns.request("api", "idp", secretTemplate={"data": {".netrc": NETRC, "token.json": JSON}})
    ns.wait_ready("api")
    data = ns.token_secret("api") or {}
    token = data["access_token"]
    assert data[".netrc"] == f"machine api.example.com login svc password {token}"
    assert json.loads(data["token.json"]) == {"token": token, "expires": data["expires_at"]}

    ns.patch("accesstokenrequests", "api", {"spec": {"secretTemplate": {"data": {
        ".netrc": None, "header": "Authorization: $authorization"}}}})  # fmt: skip
    wait_for(
        "the new template in the Secret",
        lambda: "header" in (ns.token_secret("api") or {}),
        timeout=20,
    )
    data = ns.token_secret("api") or {}
    assert data["access_token"] == token, "the same token, written anew"
    assert data["header"] == f"Authorization: Bearer {token}"
    assert ".netrc" not in data
    status = (ns.get("accesstokenrequests", "api") or {})["status"]
    assert status["revision"] == 1
