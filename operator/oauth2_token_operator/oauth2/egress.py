"""Where the operator may send an OAuth2 call: its administrator's egress rules. Pure.

An OAuth2Client's author chooses the URLs the operator's pod calls. That is the feature;
these rules keep it from being a probe of the pod's network:

- ``denied``: address blocks no connection may go to (``--deny-cidr``), checked on the
  address actually connected to, after name resolution (``guarded_backend``), and on
  any URL whose host is an address;
- ``allowed_hosts``: host patterns every URL called must match (``--allow-issuer``;
  empty: every host), so neither a tenant nor a discovery document can point the
  operator at another host;
- ``forbid_insecure_http``: plain http is refused even where a client allows it.

A refusal raises an ``EgressRefusedError`` whose message names the rule and how an
administrator changes it, never anything a server sent. The library's default policy
refuses nothing; the operator's defaults are ``DEFAULT_DENIED``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

import httpx

from oauth2_token_operator.oauth2.errors import (
    AddressNotAllowedError,
    HostNotAllowedError,
    InsecureHTTPForbiddenError,
)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_DENIED: tuple[str, ...] = (
    "127.0.0.0/8",  # loopback: the pod itself (the operator's own ports, sidecars)
    "::1/128",
    "0.0.0.0/8",  # "this network": a connection to 0.0.0.0 reaches the pod itself on Linux
    "::/128",  # the unspecified IPv6 address, likewise
    "169.254.0.0/16",  # link-local: the metadata servers of AWS, GCP, Azure, OCI,
    # DigitalOcean, OpenStack (169.254.169.254), AWS ECS task credentials (169.254.170.2)
    "fe80::/10",  # IPv6 link-local
    "fd00:ec2::254/128",  # AWS instance metadata over IPv6
    "fd20:ce::254/128",  # GCP metadata server over IPv6
    "100.100.100.200/32",  # Alibaba Cloud metadata
    "168.63.129.16/32",  # Azure WireServer (the host agent's endpoint)
)
"""The operator's default ``--deny-cidr``: the pod itself and the cloud metadata servers,
whose credentials a call from the operator's pod would reach. Private ranges are not in
it: authorization servers often run inside the cluster (cluster and pod IPs are private)."""

_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_HOST_PATTERN = re.compile(rf"(\*\.)?{_LABEL}(\.{_LABEL})*")
_SHOWN_PATTERNS = 5


def parse_network(text: str) -> IPNetwork:
    """``169.254.0.0/16``, ``fd00::/8`` or one address (a /32 or /128); host bits set
    are dropped (``10.1.2.3/8`` is ``10.0.0.0/8``). ``ValueError`` says what is wrong."""
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address or CIDR block") from None


def parse_host_pattern(text: str) -> str:
    """A host name (``login.example.com``) or ``*.`` and a domain (``*.example.com``: its
    subdomains at any depth, not the domain itself), in lower case. Internationalized
    names are written in their ASCII form (``xn--…``), as URLs carry them."""
    pattern = text.strip().lower().removesuffix(".")
    if not _HOST_PATTERN.fullmatch(pattern):
        raise ValueError(
            f"{text!r} is not a host name or *.domain pattern (internationalized names"
            " in their xn-- form)"
        )
    return pattern


def host_matches(host: str, pattern: str) -> bool:
    """Does a URL's host (ASCII, any case, perhaps with a final dot) match ``pattern``?"""
    host = host.lower().removesuffix(".")
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return host == pattern


def address_of(host: str) -> IPAddress | None:
    """The address a host is, when it is one (``[::1]`` too); ``None`` for a name."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def denied_network(address: IPAddress, denied: Iterable[IPNetwork]) -> IPNetwork | None:
    """The first block of ``denied`` that holds ``address``, or ``None``. An IPv4 address
    mapped into IPv6 (``::ffff:169.254.169.254``) reaches its IPv4 address, and is
    checked as that too."""
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    for network in denied:
        if address in network or (mapped is not None and mapped in network):
            return network
    return None


@dataclass(frozen=True)
class EgressPolicy:
    denied: tuple[IPNetwork, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    """Patterns of ``parse_host_pattern``; empty: every host."""
    forbid_insecure_http: bool = False

    @classmethod
    def parse(
        cls,
        denied: Iterable[str] = (),
        allowed_hosts: Iterable[str] = (),
        *,
        forbid_insecure_http: bool = False,
    ) -> EgressPolicy:
        """From the flags' texts; ``ValueError`` names a value that is wrong."""
        return cls(
            denied=tuple(parse_network(text) for text in denied),
            allowed_hosts=tuple(parse_host_pattern(text) for text in allowed_hosts),
            forbid_insecure_http=forbid_insecure_http,
        )

    @property
    def refuses_nothing(self) -> bool:
        return not (self.denied or self.allowed_hosts or self.forbid_insecure_http)

    def host_allowed(self, host: str) -> bool:
        return not self.allowed_hosts or any(host_matches(host, p) for p in self.allowed_hosts)

    def check_address(self, host: str, port: int, address: IPAddress) -> None:
        """Refuse a connection to ``address`` (what ``host`` is or resolved to)."""
        network = denied_network(address, self.denied)
        if network is None:
            return
        what = host if address_of(host) == address else f"{host} ({address})"
        raise AddressNotAllowedError(
            f"no connection to {what}, port {port}: {network} is denied by the operator's"
            f" --deny-cidr; {_ADMIN_DENY}"
        )

    def check_issuer(self, issuer: str, *, allow_insecure_http: bool) -> None:
        """An issuer as its client configures it (a tenant's choice, named in messages)."""
        if allow_insecure_http and self.forbid_insecure_http:
            raise InsecureHTTPForbiddenError(
                "the client allows plain http (allowInsecureHTTP), which the operator"
                f" forbids (--forbid-insecure-http); {_ADMIN_HTTP}"
            )
        host = _host(httpx.URL(issuer))
        if not self.host_allowed(host):
            raise HostNotAllowedError(
                f"the issuer's host {host} matches no --allow-issuer pattern of the"
                f" operator ({self._patterns()}); {_ADMIN_ALLOW}"
            )

    def check_endpoint(self, name: str, url: str, *, issuer: str) -> None:
        """An endpoint the operator would call, from its client's spec or from the
        issuer's metadata: its host is not named (it may be the server's text)."""
        if not self.host_allowed(_host(httpx.URL(url))):
            raise HostNotAllowedError(
                f"the {name} of {issuer} is on a host that matches no --allow-issuer"
                f" pattern of the operator ({self._patterns()}); the host is not repeated"
                f" here (`oauth2-token-operator discover {issuer}` shows it); {_ADMIN_ALLOW}"
            )

    def check_request(self, url: httpx.URL) -> None:
        """Every request, whatever its URL's origin: the last line of the rules above
        (the connection itself is checked by ``guarded_backend``)."""
        host = _host(url)
        if self.forbid_insecure_http and url.scheme == "http":
            raise InsecureHTTPForbiddenError(
                f"no plain http request to {host}: the operator forbids plain http"
                f" (--forbid-insecure-http); {_ADMIN_HTTP}"
            )
        if not self.host_allowed(host):
            raise HostNotAllowedError(
                f"no request to a host that matches no --allow-issuer pattern of the"
                f" operator ({self._patterns()}); {_ADMIN_ALLOW}"
            )
        address = address_of(host)
        if address is not None:
            self.check_address(host, url.port or _PORTS.get(url.scheme, 443), address)

    def _patterns(self) -> str:
        shown = ", ".join(self.allowed_hosts[:_SHOWN_PATTERNS])
        more = len(self.allowed_hosts) - _SHOWN_PATTERNS
        return f"{shown} and {more} more" if more > 0 else shown


def _host(url: httpx.URL) -> str:
    """A URL's host as connections and patterns name it: ASCII (``xn--…``), lower case."""
    return url.raw_host.decode("ascii").lower()


_PORTS = {"http": 80, "https": 443}
_ADMIN_DENY = "an administrator changes that list with --deny-cidr (Helm: egress.denyCIDRs)"
_ADMIN_ALLOW = "an administrator adds patterns with --allow-issuer (Helm: egress.allowIssuers)"
_ADMIN_HTTP = (
    "use https, or an administrator drops --forbid-insecure-http (Helm: egress.forbidInsecureHTTP)"
)
