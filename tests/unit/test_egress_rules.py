"""The egress rules as pure decisions: which addresses the deny list holds, which hosts an
``--allow-issuer`` pattern admits, what each refusal says, and the condition it becomes.
(Connections: test_egress_guard.py; the operator: tests/operator/test_egress.py.)"""

from __future__ import annotations

import ipaddress

import httpx
import pytest

from oauth2_token_operator.oauth2.egress import (
    DEFAULT_DENIED,
    EgressPolicy,
    denied_network,
    host_matches,
    parse_host_pattern,
    parse_network,
)
from oauth2_token_operator.oauth2.errors import (
    AddressNotAllowedError,
    HostNotAllowedError,
    InsecureHTTPForbiddenError,
)
from oauth2_token_operator.policies.failures import classify

DEFAULT = EgressPolicy.parse(DEFAULT_DENIED)


@pytest.mark.parametrize(
    ("address", "block"),
    [
        ("127.0.0.1", "127.0.0.0/8"),
        ("127.255.0.9", "127.0.0.0/8"),
        ("::1", "::1/128"),
        ("0.0.0.0", "0.0.0.0/8"),  # noqa: S104 - an address to refuse
        ("::", "::/128"),
        ("169.254.169.254", "169.254.0.0/16"),
        ("169.254.170.2", "169.254.0.0/16"),
        ("fe80::1", "fe80::/10"),
        ("fe80::1%eth0", "fe80::/10"),
        ("fd00:ec2::254", "fd00:ec2::254/128"),
        ("fd20:ce::254", "fd20:ce::254/128"),
        ("100.100.100.200", "100.100.100.200/32"),
        ("168.63.129.16", "168.63.129.16/32"),
        # An IPv4-mapped IPv6 address reaches the IPv4 one.
        ("::ffff:169.254.169.254", "169.254.0.0/16"),
        ("::ffff:127.0.0.1", "127.0.0.0/8"),
    ],
)
def test_the_default_list_denies_the_pod_itself_and_the_metadata_servers(
    address: str, block: str
) -> None:
    assert denied_network(ipaddress.ip_address(address), DEFAULT.denied) == parse_network(block)


@pytest.mark.parametrize(
    "address",
    [
        "10.96.0.1",  # a cluster IP: in-cluster authorization servers stay reachable
        "10.244.1.7",  # a pod IP
        "172.18.0.2",
        "192.168.1.1",
        "100.100.100.201",
        "93.184.216.34",
        "2001:db8::1",
        "fd00:ec2::253",
        "::ffff:10.0.0.1",
    ],
)
def test_the_default_list_leaves_other_addresses_alone(address: str) -> None:
    assert denied_network(ipaddress.ip_address(address), DEFAULT.denied) is None


def test_an_empty_list_denies_nothing() -> None:
    assert denied_network(ipaddress.ip_address("169.254.169.254"), ()) is None
    assert EgressPolicy().refuses_nothing


def test_networks_parse_with_host_bits_dropped_and_single_addresses() -> None:
    assert parse_network("10.1.2.3/8") == ipaddress.ip_network("10.0.0.0/8")
    assert parse_network(" 192.0.2.1 ") == ipaddress.ip_network("192.0.2.1/32")
    assert parse_network("fd00::1") == ipaddress.ip_network("fd00::1/128")
    for wrong in ("", "10.0.0.0/33", "example.com", "10.0.0"):
        with pytest.raises(ValueError, match="is not an IP address or CIDR block"):
            parse_network(wrong)


@pytest.mark.parametrize(
    ("host", "pattern", "matches"),
    [
        ("login.microsoftonline.com", "login.microsoftonline.com", True),
        ("LOGIN.microsoftonline.com.", "login.microsoftonline.com", True),
        ("evil-login.microsoftonline.com", "login.microsoftonline.com", False),
        ("login.microsoftonline.com.evil.example", "login.microsoftonline.com", False),
        ("a.example.com", "*.example.com", True),
        ("a.b.example.com", "*.example.com", True),  # any depth, as Gateway API hostnames
        ("example.com", "*.example.com", False),  # not the domain itself
        ("evilexample.com", "*.example.com", False),
        ("example.com.evil.test", "*.example.com", False),
        ("xn--bcher-kva.example", "xn--bcher-kva.example", True),
        ("10.0.0.5", "10.0.0.5", True),
    ],
)
def test_host_patterns(host: str, pattern: str, matches: bool) -> None:
    assert host_matches(host, parse_host_pattern(pattern)) is matches


def test_an_internationalized_url_host_is_matched_in_its_ascii_form() -> None:
    host = httpx.URL("https://Bücher.example/x").host
    policy = EgressPolicy.parse(allowed_hosts=["xn--bcher-kva.example"])
    assert not policy.host_allowed(host)  # httpx gives the Unicode form in .host
    policy.check_request(httpx.URL("https://Bücher.example/x"))  # the request checks raw_host


@pytest.mark.parametrize(
    "wrong", ["*", "*.", "a.*.com", "*example.com", "-a.example", "bücher.example", "a b", ""]
)
def test_patterns_that_are_no_host_or_domain_are_refused(wrong: str) -> None:
    with pytest.raises(ValueError, match="is not a host name or"):
        parse_host_pattern(wrong)


def test_an_empty_allow_list_allows_every_host() -> None:
    assert EgressPolicy().host_allowed("anything.example")
    assert not EgressPolicy.parse(allowed_hosts=["*.example.com"]).host_allowed("x.example.org")


def test_a_denied_address_names_the_host_the_block_and_the_flag() -> None:
    with pytest.raises(AddressNotAllowedError) as refused:
        DEFAULT.check_address("metadata.internal", 80, ipaddress.ip_address("169.254.169.254"))
    message = str(refused.value)
    assert "metadata.internal (169.254.169.254), port 80" in message
    assert "169.254.0.0/16 is denied by the operator's --deny-cidr" in message
    assert "egress.denyCIDRs" in message
    with pytest.raises(AddressNotAllowedError, match=r"to 127\.0\.0\.1, port 443: 127\.0\.0\.0/8"):
        DEFAULT.check_request(httpx.URL("https://127.0.0.1/token"))
    with pytest.raises(AddressNotAllowedError, match=r"to ::1, port 8443"):
        DEFAULT.check_request(httpx.URL("https://[::1]:8443/"))


def test_an_issuer_host_not_allowed_is_named_an_endpoints_host_is_not() -> None:
    policy = EgressPolicy.parse(allowed_hosts=["login.example.com", "*.corp.example"])
    policy.check_issuer("https://login.example.com/tenant", allow_insecure_http=False)
    policy.check_issuer("https://idp.eu.corp.example", allow_insecure_http=False)
    with pytest.raises(HostNotAllowedError) as refused:
        policy.check_issuer("https://evil.example/", allow_insecure_http=False)
    assert str(refused.value) == (
        "the issuer's host evil.example matches no --allow-issuer pattern of the operator"
        " (login.example.com, *.corp.example); an administrator adds patterns with"
        " --allow-issuer (Helm: egress.allowIssuers)"
    )
    with pytest.raises(HostNotAllowedError) as refused:
        policy.check_endpoint(
            "token_endpoint", "https://server-chosen.example/t", issuer="https://login.example.com"
        )
    assert "server-chosen" not in str(refused.value)
    assert "the token_endpoint of https://login.example.com is on a host" in str(refused.value)
    assert "oauth2-token-operator discover https://login.example.com" in str(refused.value)
    with pytest.raises(HostNotAllowedError) as refused:
        policy.check_request(httpx.URL("https://server-chosen.example/t"))
    assert "server-chosen" not in str(refused.value)


def test_many_patterns_are_shown_up_to_five() -> None:
    policy = EgressPolicy.parse(allowed_hosts=[f"h{i}.example" for i in range(8)])
    with pytest.raises(HostNotAllowedError, match=r"h4\.example and 3 more\)"):
        policy.check_issuer("https://other.example", allow_insecure_http=False)


def test_forbidding_plain_http_refuses_a_client_that_allows_it_and_every_http_url() -> None:
    policy = EgressPolicy(forbid_insecure_http=True)
    policy.check_issuer("https://login.example.com", allow_insecure_http=False)
    with pytest.raises(InsecureHTTPForbiddenError, match=r"allowInsecureHTTP.*--forbid-insecure"):
        policy.check_issuer("https://login.example.com", allow_insecure_http=True)
    with pytest.raises(InsecureHTTPForbiddenError, match=r"no plain http request to as\.example"):
        policy.check_request(httpx.URL("http://as.example/token"))
    policy.check_request(httpx.URL("https://as.example/token"))
    EgressPolicy().check_issuer("http://as.example", allow_insecure_http=True)


@pytest.mark.parametrize(
    "refusal",
    [
        AddressNotAllowedError("no connection to 127.0.0.1"),
        HostNotAllowedError("no --allow-issuer pattern"),
        InsecureHTTPForbiddenError("--forbid-insecure-http"),
    ],
)
def test_every_refusal_is_the_condition_issuer_not_allowed_and_waits_for_a_change(
    refusal: Exception,
) -> None:
    failure = classify(refusal)
    assert (failure.reason, failure.retry) == ("IssuerNotAllowed", False)
    assert failure.message == str(refusal)
