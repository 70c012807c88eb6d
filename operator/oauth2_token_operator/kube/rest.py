"""Calls by path through the official client's `ApiClient`, without its typed APIs.

The typed `CoreV1Api` wraps each of its several hundred methods in pydantic's
`validate_call` and imports some 250 models when first touched: 19.5 MiB of the
operator's memory (measured: RSS after `k8s.CoreV1Api` is first looked up, Python 3.11,
kubernetes 37) for the handful of calls the operator makes on Secrets, ConfigMaps and
Namespaces. `ApiClient` itself does everything else those methods do: authentication
(bearer tokens and their refresh), TLS, the connection pool, query and path encoding,
body serialization. What comes back is the raw urllib3 response, as the typed methods
return it with ``_preload_content=False``, and a status outside 2xx raises the same
`ApiException`, so callers keep one error contract.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

QUERY_NAMES = {
    "_continue": "continue",
    "allow_watch_bookmarks": "allowWatchBookmarks",
    "field_manager": "fieldManager",
    "label_selector": "labelSelector",
    "limit": "limit",
    "resource_version": "resourceVersion",
    "timeout_seconds": "timeoutSeconds",
    "watch": "watch",
}
"""The typed methods' keyword names for the query parameters the operator sends."""

Lister = Callable[..., urllib3.BaseHTTPResponse]
"""Lists or watches one collection: called with the typed list methods' keywords
(`label_selector`, `_continue`, `watch`, `_request_timeout`...), as `kube.informer` does."""


class PathApi:
    """`call("GET", "/api/v1/namespaces/{namespace}/secrets/{name}", path=...)`."""

    def __init__(self, api_client: k8s.ApiClient) -> None:
        self.api_client = api_client

    def call(
        self,
        method: str,
        template: str,
        *,
        path: Mapping[str, str] | None = None,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: Any = None,
    ) -> urllib3.BaseHTTPResponse:
        """The response, its body unread; `ApiException` for a status outside 2xx.

        `query` takes the typed methods' keyword names (`QUERY_NAMES`); None values are
        left out. `timeout` is urllib3's: seconds, or (connect, read)."""
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        query_params = [
            (QUERY_NAMES[name], value) for name, value in (query or {}).items() if value is not None
        ]
        request = self.api_client.param_serialize(
            method=method,
            resource_path=template,
            path_params=dict(path or {}),
            query_params=query_params,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        answer = self.api_client.call_api(*request, _request_timeout=timeout)
        if not 200 <= answer.status <= 299:
            answer.read()  # type: ignore[no-untyped-call]
            raise ApiException.from_response(http_resp=answer, body=None, data=None)
        response: urllib3.BaseHTTPResponse = answer.response
        return response

    def lister(self, template: str, **path: str) -> Lister:
        """The collection at `template` (its `path` parameters bound), for an informer."""

        def list_or_watch(
            _request_timeout: Any = None, _preload_content: bool = False, **query: Any
        ) -> urllib3.BaseHTTPResponse:
            # `_preload_content` is taken as the typed methods take it; the response is
            # always returned unread.
            return self.call("GET", template, path=path, query=query, timeout=_request_timeout)

        return list_or_watch
