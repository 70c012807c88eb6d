"""Whether the operator may mint a token of a ServiceAccount for an OAuth2Client
(`service_account_token`), and for which audience. Pure.

Minting (`serviceaccounts/token` create) is a privilege the operator holds for every
tenant it serves. Two guards keep it from becoming one of theirs:

- **The ServiceAccount opts in**, with the label referenced Secrets carry
  (`api.labels.USABLE_BY_OPERATOR`): whoever may create OAuth2Clients in a namespace is
  not thereby whoever may act as each of its ServiceAccounts.
- **The audience is never one the Kubernetes API server accepts** (its
  `--api-audiences`; the operator's `--kubernetes-api-audience`): a minted token, sent to
  a server the tenant chose, could otherwise be used against the cluster itself, with the
  ServiceAccount's rights. Compared after normalising what URL comparison forgives (case
  of scheme and host, a default port, a final slash), so a spelling variant is refused too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from oauth2_token_operator.api.labels import USABLE_BY_OPERATOR, USABLE_VALUE

AUDIENCE_NOT_ALLOWED = "AudienceNotAllowed"

DEFAULT_API_AUDIENCES = (
    "https://kubernetes.default.svc",
    "https://kubernetes.default.svc.cluster.local",
)
"""The audiences a Kubernetes API server accepts by default (its issuer's usual names)."""

MIN_EXPIRATION_SECONDS = 600
"""The shortest lifetime the API server grants a requested token (TokenRequest)."""

_DEFAULT_PORTS = {"http": 80, "https": 443}


def usable(service_account: Mapping[str, Any]) -> bool:
    """Whether the ServiceAccount (as the API server returned it) grants its use."""
    labels = (service_account.get("metadata") or {}).get("labels") or {}
    return bool(labels.get(USABLE_BY_OPERATOR) == USABLE_VALUE)


def normalised(audience: str) -> str:
    """`audience` as URL comparison sees it: scheme and host lower-cased, a default
    port and trailing slashes dropped. A value that is no URL is only lower-cased and
    stripped of trailing slashes (an audience is compared as a string by the API server,
    but a refusal errs on the side of refusing)."""
    text = audience.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return text.lower().rstrip("/")
    if not parts.scheme or not parts.hostname:
        return text.lower().rstrip("/")
    scheme = parts.scheme.lower()
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None or port == _DEFAULT_PORTS.get(scheme) else f"{host}:{port}"
    path = parts.path.rstrip("/")
    query = f"?{parts.query}" if parts.query else ""
    return f"{scheme}://{netloc}{path}{query}"


def audience_refusal(audience: str, api_audiences: Iterable[str]) -> str | None:
    """Why tokens for `audience` may not be minted; `None` if they may."""
    wanted = normalised(audience)
    for forbidden in api_audiences:
        if audience == forbidden or wanted == normalised(forbidden):
            return (
                f"the audience {audience!r} is one the Kubernetes API server accepts"
                f" ({forbidden}): a token minted for it would be a credential for the"
                " cluster itself, so none is minted. Set authentication.audience to what the"
                " authorization server expects (its issuer, by default)"
            )
    return None
