import pytest

from oauth2_token_operator.oauth2.errors import ConfigurationError
from oauth2_token_operator.oauth2.metadata import ServerMetadata, check_url, discovery_urls


@pytest.mark.parametrize(
    ("issuer", "expected"),
    [
        ("https://as.example", [
            "https://as.example/.well-known/oauth-authorization-server",
            "https://as.example/.well-known/openid-configuration",
        ]),
        # RFC 8414 §3.1: the well-known segment goes between host and path
        ("https://as.example/tenant/1", [
            "https://as.example/.well-known/oauth-authorization-server/tenant/1",
            "https://as.example/tenant/1/.well-known/openid-configuration",
        ]),
        ("https://as.example:8443/t/", [
            "https://as.example:8443/.well-known/oauth-authorization-server/t",
            "https://as.example:8443/t/.well-known/openid-configuration",
        ]),
    ],
)  # fmt: skip
def test_discovery_urls(issuer: str, expected: list[str]) -> None:
    assert discovery_urls(issuer) == expected


def test_issuer_with_query_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="query or fragment"):
        discovery_urls("https://as.example/?tenant=1")


def test_plain_http_needs_an_explicit_opt_in() -> None:
    with pytest.raises(ConfigurationError, match="plain http"):
        check_url("http://127.0.0.1:8080", allow_http=False, what="issuer")
    check_url("http://127.0.0.1:8080", allow_http=True, what="issuer")
    check_url("https://as.example", allow_http=False, what="issuer")


@pytest.mark.parametrize("url", ["ftp://as.example", "https://", "not a url", "file:///etc/passwd"])
def test_other_schemes_and_hostless_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigurationError):
        check_url(url, allow_http=True, what="issuer")


def test_mtls_alias_is_used_only_for_mtls_clients() -> None:
    metadata = ServerMetadata(
        issuer="https://as.example",
        token_endpoint="https://as.example/token",
        introspection_endpoint="https://as.example/introspect",
        mtls_endpoint_aliases={"token_endpoint": "https://mtls.as.example/token"},
    )
    assert metadata.endpoint("token_endpoint") == "https://as.example/token"
    assert metadata.endpoint("token_endpoint", mtls=True) == "https://mtls.as.example/token"
    # no alias advertised for this endpoint: the regular one
    assert metadata.endpoint("introspection_endpoint", mtls=True) == "https://as.example/introspect"
    assert metadata.endpoint("revocation_endpoint") is None
