"""Proxy selection follows Go's ProxyFromEnvironment (golang.org/x/net/http/httpproxy)."""

from __future__ import annotations

import pytest

from oauth2_token_operator.oauth2 import ConfigurationError, ProxySettings

PROXY = "http://proxy.internal:3128"
NO_PROXY = (
    "foobar.com, .barbaz.net, *.wildcard.io, 192.168.1.1, 192.168.1.2:81, 192.168.1.3:80, "
    "10.0.0.0/30, 2001:db8::52:0:1, [2001:db8::52:0:2]:443, [2001:db8::52:0:3]:80, "
    "2002:db8:a::45/64, bücher.example"
)


@pytest.mark.parametrize(
    ("host", "proxied"),
    [
        # never proxied: localhost and loopback addresses
        ("localhost", False),
        ("127.0.0.1", False),
        ("127.0.0.2", False),
        ("[::1]", False),
        ("[::2]", True),  # not loopback
        # addresses, with and without ports (the request's port is 80)
        ("192.168.1.1", False),
        ("192.168.1.2", True),  # entry is for port 81
        ("192.168.1.3", False),
        ("192.168.1.4", True),
        ("10.0.0.2", False),  # inside 10.0.0.0/30
        ("10.0.0.4", True),  # outside it
        ("[2001:db8::52:0:1]", False),
        ("[2001:db8::52:0:2]", True),  # entry is for port 443
        ("[2001:db8::52:0:3]", False),
        ("[2002:db8:a::123]", False),  # inside the /64
        ("[fe80::424b:c8be:1643:a1b6]", True),
        # names: "foobar.com" matches itself and subdomains, ".barbaz.net" only subdomains
        ("barbaz.net", True),
        ("www.barbaz.net", False),
        ("foobar.com", False),
        ("www.foobar.com", False),
        ("FooBar.COM", False),  # case does not matter
        ("foofoobar.com", True),
        ("baz.com", True),
        ("localhost.net", True),
        ("local.localhost", True),
        ("barbarbaz.net", True),
        ("wildcard.io", True),  # "*.wildcard.io" means subdomains only
        ("nested.wildcard.io", False),
        ("awildcard.io", True),
        ("www.bücher.example", False),  # compared in punycode
    ],
)
def test_no_proxy_matching(host: str, proxied: bool) -> None:
    settings = ProxySettings(http_proxy=PROXY, no_proxy=NO_PROXY)
    assert (settings.proxy_for(f"http://{host}:80/") is not None) is proxied


def test_a_name_does_not_match_an_address_entry_nor_the_reverse() -> None:
    settings = ProxySettings(https_proxy=PROXY, no_proxy="10.1.2.3, example.com")
    assert settings.proxy_for("https://10.1.2.3.example.org/") is not None
    assert settings.proxy_for("https://10.1.2.3/") is None


def test_star_disables_the_proxy_and_ports_default_by_scheme() -> None:
    assert ProxySettings(https_proxy=PROXY, no_proxy="*").proxy_for("https://a.example/") is None
    by_port = ProxySettings(https_proxy=PROXY, no_proxy="a.example:443")
    assert by_port.proxy_for("https://a.example/") is None
    assert by_port.proxy_for("https://a.example:8443/") is not None


def test_each_scheme_uses_its_own_variable() -> None:
    only_https = ProxySettings.from_environment({"HTTPS_PROXY": PROXY})
    assert only_https.proxy_for("https://as.example/token") == PROXY
    assert only_https.proxy_for("http://as.example/token") is None
    only_http = ProxySettings.from_environment({"HTTP_PROXY": PROXY})
    assert only_http.proxy_for("https://as.example/token") is None
    assert only_http.proxy_for("http://as.example/token") == PROXY


def test_upper_case_wins_and_empty_means_unset() -> None:
    env = {
        "HTTPS_PROXY": "http://upper:1",
        "https_proxy": "http://lower:2",
        "NO_PROXY": "",
        "no_proxy": "as.example",
    }
    settings = ProxySettings.from_environment(env)
    assert settings.proxy_for("https://other.example/") == "http://upper:1"
    assert settings.proxy_for("https://as.example/") is None  # empty NO_PROXY: no_proxy counts
    lower = ProxySettings.from_environment({"https_proxy": "http://lower:2"})
    assert lower.proxy_for("https://other.example/") == "http://lower:2"


def test_nothing_else_from_the_environment_is_read() -> None:
    env = {"ALL_PROXY": PROXY, "all_proxy": PROXY, "REQUEST_METHOD": "GET"}
    assert ProxySettings.from_environment(env) == ProxySettings()
    assert ProxySettings.from_environment(env).proxy_for("https://as.example/") is None


def test_a_proxy_without_scheme_is_http_and_credentials_are_kept() -> None:
    settings = ProxySettings(https_proxy="user:pw@proxy.internal:3128")
    proxy = settings.proxy_for("https://as.example/")
    assert proxy == "http://user:pw@proxy.internal:3128"
    assert "pw" not in repr(settings)


@pytest.mark.parametrize("value", ["socks5://proxy:1080", "http://", "ftp://proxy:21"])
def test_unusable_proxies_are_configuration_errors(value: str) -> None:
    with pytest.raises(ConfigurationError, match="HTTPS_PROXY"):
        ProxySettings.from_environment({"HTTPS_PROXY": value})
