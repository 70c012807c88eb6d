"""Specs the API must refuse, shared by the pydantic tests (no server) and the API-server
tests, so that the CEL rules in the CRDs and the models' validators provably agree."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

VALID_CLIENT: dict[str, Any] = {
    "issuer": "https://login.example.com",
    "clientId": "billing",
    "authentication": {
        "method": "client_secret_basic",
        "clientSecretRef": {"name": "billing-client", "key": "client-secret"},
    },
}
VALID_REQUEST: dict[str, Any] = {
    "clientRef": {"name": "billing"},
    "scopes": ["invoices:read"],
}


@dataclass(frozen=True)
class Invalid:
    id: str
    spec: dict[str, Any]
    message: str
    """A fragment both the API server's and pydantic's error carry."""


def _with(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(base)
    for path, value in changes.items():
        node = spec
        *parents, leaf = path.split("__")
        for parent in parents:
            node = node.setdefault(parent, {})
        if value is _DELETE:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    return spec


_DELETE = object()

INVALID_CLIENTS = [
    Invalid("no-issuer", _with(VALID_CLIENT, issuer=_DELETE), "issuer"),
    Invalid("no-client-id", _with(VALID_CLIENT, clientId=_DELETE), "clientId"),
    Invalid("empty-client-id", _with(VALID_CLIENT, clientId=""), "clientId"),
    Invalid(
        "hasty-introspection",
        _with(VALID_CLIENT, introspection={"minInterval": "1s"}),
        "at least 10s",
    ),
    Invalid(
        "too-many-namespaces",
        _with(VALID_CLIENT, allowedNamespaces={"names": [f"n{i}" for i in range(257)]}),
        "names",
    ),
    Invalid(
        "http-issuer", _with(VALID_CLIENT, issuer="http://login.example.com"), "allowInsecureHTTP"
    ),
    Invalid(
        "http-endpoint",
        _with(VALID_CLIENT, endpoints={"token": "http://login.example.com/token"}),
        "allowInsecureHTTP",
    ),
    Invalid("not-a-url", _with(VALID_CLIENT, issuer="login.example.com"), "issuer"),
    Invalid(
        "unknown-method",
        _with(VALID_CLIENT, authentication__method="client_secret_magic"),
        "method",
    ),
    Invalid(
        "basic-without-secret",
        _with(VALID_CLIENT, authentication__clientSecretRef=_DELETE),
        "clientSecretRef",
    ),
    Invalid(
        "none-with-secret",
        _with(VALID_CLIENT, authentication__method="none"),
        "clientSecretRef",
    ),
    Invalid(
        "private-key-jwt-without-key",
        _with(
            VALID_CLIENT,
            authentication={"method": "private_key_jwt"},
        ),
        "privateKeyRef",
    ),
    Invalid(
        "tls-without-secret",
        _with(VALID_CLIENT, authentication={"method": "tls_client_auth"}),
        "tlsSecretRef",
    ),
    Invalid(
        "service-account-token-without-account",
        _with(VALID_CLIENT, authentication={"method": "service_account_token"}),
        "serviceAccountRef",
    ),
    Invalid(
        "service-account-for-basic",
        _with(VALID_CLIENT, authentication__serviceAccountRef={"name": "billing"}),
        "serviceAccountRef",
    ),
    Invalid(
        "service-account-token-with-secret",
        _with(
            VALID_CLIENT,
            authentication__method="service_account_token",
            authentication__serviceAccountRef={"name": "billing"},
        ),
        "clientSecretRef",
    ),
    Invalid(
        "audience-for-basic",
        _with(VALID_CLIENT, authentication__audience="https://login.example.com"),
        "audience",
    ),
    Invalid(
        "empty-audience",
        _with(
            VALID_CLIENT,
            authentication={
                "method": "service_account_token",
                "serviceAccountRef": {"name": "billing"},
                "audience": "",
            },
        ),
        "audience",
    ),
    Invalid(
        "two-credentials",
        _with(VALID_CLIENT, authentication__privateKeyRef={"name": "k", "key": "k.pem"}),
        "privateKeyRef",
    ),
    Invalid(
        "hmac-alg-for-private-key",
        _with(
            VALID_CLIENT,
            authentication={
                "method": "private_key_jwt",
                "privateKeyRef": {"name": "k", "key": "k.pem"},
                "signingAlgorithm": "HS256",
            },
        ),
        "signingAlgorithm",
    ),
    Invalid(
        "alg-for-basic",
        _with(VALID_CLIENT, authentication__signingAlgorithm="RS256"),
        "signingAlgorithm",
    ),
    Invalid(
        "both-ca-sources",
        _with(
            VALID_CLIENT,
            tls={"caBundle": "x", "caBundleFrom": {"kind": "Secret", "name": "ca", "key": "c"}},
        ),
        "caBundleFrom",
    ),
    Invalid("bad-scope", _with(VALID_CLIENT, defaultScopes=["has space"]), "defaultScopes"),
    Invalid(
        "bad-duration",
        _with(VALID_CLIENT, introspection={"minInterval": "thirty seconds"}),
        "minInterval",
    ),
    Invalid(
        "bad-secret-name",
        _with(VALID_CLIENT, authentication__clientSecretRef={"name": "Not_A_Name", "key": "k"}),
        "name",
    ),
    Invalid(
        "bad-namespace-name",
        _with(VALID_CLIENT, allowedNamespaces={"names": ["UPPER"]}),
        "names",
    ),
]

EXCHANGE = {"subjectTokenFrom": {"accessTokenRequestRef": {"name": "service"}}}
"""A `tokenExchange` exchanging the token of the request `service`."""
SA_EXCHANGE_SOURCE = {
    "serviceAccountRef": {"name": "billing", "audience": "https://sts.example.com"}
}
"""A `subjectTokenFrom` naming a token of ServiceAccount `billing`."""

INVALID_REQUESTS = [
    Invalid("no-client-ref", _with(VALID_REQUEST, clientRef=_DELETE), "clientRef"),
    Invalid("unknown-grant", _with(VALID_REQUEST, grant="password"), "grant"),
    Invalid(
        "refresh-without-secret",
        _with(VALID_REQUEST, grant="refresh_token"),
        "refreshTokenSecretRef",
    ),
    Invalid(
        "refresh-secret-for-client-credentials",
        _with(VALID_REQUEST, refreshTokenSecretRef={"name": "rt", "key": "refresh_token"}),
        "refreshTokenSecretRef",
    ),
    Invalid("register-without-secret", _with(VALID_REQUEST, grant="register"), "tokenSecretRef"),
    Invalid(
        "register-with-audience",
        _with(
            VALID_REQUEST,
            grant="register",
            tokenSecretRef={"name": "t", "key": "access_token"},
            audience="api",
        ),
        "audience",
    ),
    Invalid(
        "exchange-without-source", _with(VALID_REQUEST, grant="token_exchange"), "tokenExchange"
    ),
    Invalid(
        "exchange-source-for-client-credentials",
        _with(VALID_REQUEST, tokenExchange=EXCHANGE),
        "tokenExchange",
    ),
    Invalid(
        "exchange-with-no-subject-source",
        _with(VALID_REQUEST, grant="token_exchange", tokenExchange={"subjectTokenFrom": {}}),
        "set exactly one of accessTokenRequestRef and serviceAccountRef",
    ),
    Invalid(
        "exchange-with-both-sources",
        _with(
            VALID_REQUEST,
            grant="token_exchange",
            tokenExchange={
                "subjectTokenFrom": {**EXCHANGE["subjectTokenFrom"], **SA_EXCHANGE_SOURCE}
            },
        ),
        "set exactly one of accessTokenRequestRef and serviceAccountRef",
    ),
    Invalid(
        "exchange-bad-service-account-name",
        _with(
            VALID_REQUEST,
            grant="token_exchange",
            tokenExchange={"subjectTokenFrom": {"serviceAccountRef": {"name": "Not_A_Name"}}},
        ),
        "name",
    ),
    Invalid(
        "exchange-service-account-audience-with-space",
        _with(
            VALID_REQUEST,
            grant="token_exchange",
            tokenExchange={
                "subjectTokenFrom": {"serviceAccountRef": {"name": "billing", "audience": "a b"}}
            },
        ),
        "audience",
    ),
    Invalid(
        "exchange-bad-request-name",
        _with(
            VALID_REQUEST,
            grant="token_exchange",
            tokenExchange={"subjectTokenFrom": {"accessTokenRequestRef": {"name": "Not_A_Name"}}},
        ),
        "name",
    ),
    Invalid(
        "both-renewal-settings",
        _with(VALID_REQUEST, renewBefore="5m", renewBeforePercentage=30),
        "renewBeforePercentage",
    ),
    Invalid(
        "percentage-too-high",
        _with(VALID_REQUEST, renewBeforePercentage=100),
        "renewBeforePercentage",
    ),
    Invalid("bad-renew-before", _with(VALID_REQUEST, renewBefore="-5m"), "renewBefore"),
    # Found by the fuzzer: well-formed, but no lead at all.
    Invalid("zero-renew-before", _with(VALID_REQUEST, renewBefore="0s"), "longer than zero"),
    Invalid("tiny-assumed-lifetime", _with(VALID_REQUEST, assumedLifetime="1s"), "at least 10s"),
    Invalid("bad-scope", _with(VALID_REQUEST, scopes=['quote"d']), "scopes"),
    Invalid("too-many-scopes", _with(VALID_REQUEST, scopes=[f"s{i}" for i in range(65)]), "scopes"),
    Invalid("relative-resource", _with(VALID_REQUEST, resources=["/api"]), "resources"),
    Invalid("resource-fragment", _with(VALID_REQUEST, resources=["https://a/#x"]), "resources"),
    Invalid("bad-secret-name", _with(VALID_REQUEST, secretName="has_underscore"), "secretName"),
    Invalid(
        "bad-introspection-interval",
        _with(VALID_REQUEST, introspection={"interval": "1d"}),
        "interval",
    ),
    Invalid(
        "too-many-labels",
        _with(VALID_REQUEST, secretTemplate={"labels": {f"l{i}": "v" for i in range(65)}}),
        "labels",
    ),
    # One tenant cannot make the operator introspect in a tight loop (issue 22).
    Invalid(
        "hasty-introspection",
        _with(VALID_REQUEST, introspection={"interval": "5s"}),
        "at least 10s",
    ),
    # The token Secret is never one of Kubernetes' own types (issue 22, item 5): a
    # service-account-token Secret would be filled with a ServiceAccount's token.
    *(
        Invalid(
            f"template-type-{kind.rsplit('/', 1)[-1]}",
            _with(VALID_REQUEST, secretTemplate={"type": kind}),
            "Opaque or a type of your own",
        )
        for kind in (
            "kubernetes.io/service-account-token",
            "kubernetes.io/dockerconfigjson",
            "kubernetes.io/tls",
        )
    ),
    # Nor does the request grant the operator the use of the Secret it gets.
    Invalid(
        "template-grants-use",
        _with(
            VALID_REQUEST,
            secretTemplate={"labels": {"oauth2.token-operator.io/usable-by-operator": "true"}},
        ),
        "only whoever may write a Secret grants",
    ),
    # secretTemplate.data (issue 25): extra keys only, named as Secret keys, of known fields.
    Invalid(
        "template-sets-a-standard-key",
        _with(VALID_REQUEST, secretTemplate={"data": {"access_token": "x"}}),
        "standard key",
    ),
    Invalid(
        "template-bad-key",
        _with(VALID_REQUEST, secretTemplate={"data": {"has space": "$access_token"}}),
        "Secret keys",
    ),
    Invalid(
        "template-too-many-keys",
        _with(VALID_REQUEST, secretTemplate={"data": {f"k{i}": "x" for i in range(17)}}),
        "data",
    ),
]

INVALID_TEMPLATES = [
    ("unknown-field", {"netrc": "password $client_secret"}, "names client_secret"),
    ("bad-syntax", {"netrc": "cost: $5"}, "not a valid template"),
]
"""Templates the CRD admits that pydantic refuses (CEL cannot parse a template)."""

ACCEPTED_TEMPLATE_TYPES = ["Opaque", "example.com/token", "kubernetes.io.example.com/token"]
"""Secret types a request may choose for its token Secret."""
