"""Egress proxy selection from ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY``.

Follows Go's ``http.ProxyFromEnvironment`` (``golang.org/x/net/http/httpproxy``),
which is what the rest of a Kubernetes cluster (kubelet, controllers) obeys:

- ``https`` URLs use ``HTTPS_PROXY``, ``http`` URLs use ``HTTP_PROXY``; the
  upper-case name wins over the lower-case one; an empty value means unset.
  ``ALL_PROXY`` is not used.
- A proxy value without a scheme means ``http://``.
- ``localhost`` and loopback addresses are never proxied.
- ``NO_PROXY`` is a comma-separated list: ``*`` (no proxy at all), an IP
  address or CIDR block, a host name that matches itself and its subdomains
  (``example.com``), a leading dot or ``*.`` for subdomains only
  (``.example.com``), each optionally with ``:port``. Names never match IP
  addresses and the reverse.

Only these three variables are read, once, when a transport is created.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

import httpx

from oauth2_token_operator.oauth2.errors import ConfigurationError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_DEFAULT_PORTS = {"http": 80, "https": 443}
_PROXY_SCHEMES = ("http", "https")


@dataclass(frozen=True)
class _DomainRule:
    suffix: str
    """Always starts with a dot."""
    port: int | None
    match_host: bool
    """``example.com`` also matches ``example.com`` itself; ``.example.com`` does not."""

    def matches(self, host: str, port: int) -> bool:
        named = host.endswith(self.suffix) or (self.match_host and host == self.suffix[1:])
        return named and self.port in (None, port)


@dataclass(frozen=True)
class _AddressRule:
    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    port: int | None

    def matches(self, ip: IPAddress, port: int) -> bool:
        return ip in self.network and self.port in (None, port)


@dataclass(frozen=True)
class _NoProxy:
    everything: bool = False
    addresses: tuple[_AddressRule, ...] = ()
    domains: tuple[_DomainRule, ...] = ()


@dataclass(frozen=True)
class ProxySettings:
    """Proxy URLs and exclusions; ``from_environment()`` reads them like Go does.

    The URLs may carry credentials (``http://user:pass@proxy:3128``), so they
    stay out of ``repr``.
    """

    https_proxy: str | None = field(default=None, repr=False)
    http_proxy: str | None = field(default=None, repr=False)
    no_proxy: str = ""

    def __post_init__(self) -> None:
        # Fail at construction, not on the first request.
        _ = self._https, self._http, self._exclusions

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> ProxySettings:
        env = os.environ if environ is None else environ

        def first(*names: str) -> str | None:
            for name in names:
                if value := env.get(name, ""):
                    return value
            return None

        return cls(
            https_proxy=first("HTTPS_PROXY", "https_proxy"),
            http_proxy=first("HTTP_PROXY", "http_proxy"),
            no_proxy=first("NO_PROXY", "no_proxy") or "",
        )

    def proxy_for(self, url: httpx.URL | str) -> httpx.URL | None:
        """The proxy for a request to ``url``, or ``None`` to connect directly."""
        url = httpx.URL(url)
        proxy = {"https": self._https, "http": self._http}.get(url.scheme)
        if proxy is None:
            return None
        port = url.port or _DEFAULT_PORTS[url.scheme]
        host = url.raw_host.decode("ascii").lower()  # IDNA (punycode) form
        return proxy if self._use_proxy(host, port) else None

    def _use_proxy(self, host: str, port: int) -> bool:
        if host == "localhost":
            return False
        ip = _ip(host)
        if ip is not None and ip.is_loopback:
            return False
        rules = self._exclusions
        if rules.everything:
            return False
        if ip is not None:
            return not any(rule.matches(ip, port) for rule in rules.addresses)
        return not any(rule.matches(host, port) for rule in rules.domains)

    @cached_property
    def _https(self) -> httpx.URL | None:
        return _parse_proxy(self.https_proxy, "HTTPS_PROXY")

    @cached_property
    def _http(self) -> httpx.URL | None:
        return _parse_proxy(self.http_proxy, "HTTP_PROXY")

    @cached_property
    def _exclusions(self) -> _NoProxy:
        return _parse_no_proxy(self.no_proxy)


def _parse_proxy(value: str | None, name: str) -> httpx.URL | None:
    if not value:
        return None
    text = value.strip()
    if "://" not in text:
        text = "http://" + text
    try:
        url = httpx.URL(text)
    except httpx.InvalidURL:
        url = None
    # The message names the variable, never its value: it may hold a password.
    if url is None or not url.host:
        raise ConfigurationError(f"{name} is not a valid proxy URL")
    if url.scheme not in _PROXY_SCHEMES:
        raise ConfigurationError(
            f"{name} uses the unsupported scheme {url.scheme!r} (supported: http, https)"
        )
    return url


def _parse_no_proxy(value: str) -> _NoProxy:
    addresses: list[_AddressRule] = []
    domains: list[_DomainRule] = []
    for raw in value.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return _NoProxy(everything=True)
        if "/" in entry:
            # Go ignores entries it cannot parse; so do we.
            with contextlib.suppress(ValueError):
                addresses.append(_AddressRule(ipaddress.ip_network(entry, strict=False), None))
            continue
        host, port = _split_host_port(entry)
        if not host:
            continue
        ip = _ip(host)
        if ip is not None:
            addresses.append(_AddressRule(ipaddress.ip_network(ip), port))
            continue
        if host.startswith("*."):
            host = host[1:]
        match_host = not host.startswith(".")
        domains.append(_DomainRule("." + _idna(host.lstrip(".")), port, match_host))
    return _NoProxy(addresses=tuple(addresses), domains=tuple(domains))


def _split_host_port(entry: str) -> tuple[str, int | None]:
    """``host``, ``host:port``, ``[v6]``, ``[v6]:port`` or a bare IPv6 address."""
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif entry.count(":") == 1:
        host, _, port_text = entry.partition(":")
    else:
        host, port_text = entry, ""
    return host, int(port_text) if port_text.isdigit() else None


def _ip(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _idna(name: str) -> str:
    """URL hosts are compared in their ASCII (punycode) form, as httpx gives them."""
    try:
        return name.encode("idna").decode("ascii")
    except UnicodeError:
        return name
