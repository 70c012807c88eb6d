import asyncio
import os
import ssl
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import trustme

from oauth2_token_operator.oauth2 import NoResponseError
from oauth2_token_operator.oauth2.transport import (
    OAuth2Transport,
    Replay,
    TLSConfig,
    parse_retry_after,
)
from tests.faults import Respond, Trickle, fault_server


async def test_one_pooled_client_per_tls_configuration() -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("client.example")
    transport = OAuth2Transport()
    plain = TLSConfig()
    custom_ca = TLSConfig(ca_pem=ca.cert_pem.bytes().decode())
    mtls = TLSConfig(
        ca_pem=custom_ca.ca_pem,
        client_cert_pem=cert.cert_chain_pems[0].bytes().decode(),
        client_key_pem=cert.private_key_pem.bytes().decode(),
    )
    assert transport.client(plain) is transport.client(TLSConfig())
    assert transport.client(custom_ca) is transport.client(
        TLSConfig(ca_pem=ca.cert_pem.bytes().decode())
    )
    assert len({id(transport.client(c)) for c in (plain, custom_ca, mtls)}) == 3
    await transport.aclose()


def distinct_tls(count: int) -> list[TLSConfig]:
    return [TLSConfig(ca_pem=trustme.CA().cert_pem.bytes().decode()) for _ in range(count)]


async def get(transport: OAuth2Transport, url: str, tls: TLSConfig) -> int:
    response = await transport.request("GET", url, endpoint="e", tls=tls, replay=Replay.SAFE)
    return response.status_code


async def test_pools_are_bounded_and_the_least_recently_used_one_is_closed() -> None:
    a, b, c = distinct_tls(3)
    async with fault_server(Respond(200)) as server:
        transport = OAuth2Transport(max_pools=2)
        await get(transport, server.url, a)
        await get(transport, server.url, b)
        client_a, client_b = transport.client(a), transport.client(b)
        transport.client(a)  # a is now the most recently used
        await get(transport, server.url, c)
        assert transport.pool_count == 2
        assert client_b.is_closed
        assert not client_a.is_closed
        assert transport.client(a) is client_a
        await transport.aclose()
    assert client_a.is_closed


async def test_a_busy_pool_is_closed_only_when_its_request_ends() -> None:
    a, b = distinct_tls(2)
    async with fault_server(Trickle(interval=0.1, length=3), Respond(200)) as server:
        transport = OAuth2Transport(max_pools=1)
        slow = asyncio.create_task(get(transport, server.url, a))
        await asyncio.wait_for(server.wait_for_requests(1), 10)
        client_a = transport.client(a)
        assert await get(transport, server.url, b) == 200  # evicts a, in use
        assert not client_a.is_closed
        assert await slow == 200
        assert client_a.is_closed
        assert transport.pool_count == 1
        await transport.aclose()


async def test_close_pool_drops_one_configuration() -> None:
    a, b = distinct_tls(2)
    transport = OAuth2Transport()
    old_a, kept_b = transport.client(a), transport.client(b)
    await transport.close_pool(a)
    assert old_a.is_closed
    assert transport.client(a) is not old_a
    assert transport.client(b) is kept_b
    await transport.close_pool(TLSConfig(ca_pem="never used"))  # unknown: nothing to do
    await transport.aclose()


async def test_a_closed_transport_refuses_to_reopen() -> None:
    transport = OAuth2Transport()
    transport.client(TLSConfig())
    await transport.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        transport.client(TLSConfig())
    with pytest.raises(RuntimeError, match="closed"):
        await transport.request(
            "GET", "https://as.example/", endpoint="e", tls=TLSConfig(), replay=Replay.SAFE
        )
    assert transport.pool_count == 0


def test_tls_contexts_verify_by_default() -> None:
    context = TLSConfig().ssl_context()
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname


def test_client_key_material_stays_out_of_repr() -> None:
    config = TLSConfig(client_cert_pem="CERT", client_key_pem="PRIVATE-KEY-MATERIAL")
    assert "PRIVATE-KEY-MATERIAL" not in repr(config)


class FileWrites:
    """Records, through an audit hook, every file opened for writing or created.

    Audit hooks cannot be removed: this one records only while ``active``.
    """

    def __init__(self) -> None:
        self.active = False
        self.seen: list[str] = []
        sys.addaudithook(self._hook)

    def _hook(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.active:
            return
        if event.startswith("tempfile."):
            self.seen.append(event)
        elif event == "open":
            path, mode, flags = args
            writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT
            if (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & writes
            ):
                self.seen.append(f"open {path}")


async def test_the_client_key_never_touches_the_filesystem(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """readOnlyRootFilesystem: no temporary file may be needed, or left behind."""
    ca = trustme.CA()
    client = ca.issue_cert("client.example")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    ca.configure_trust(server_context)
    server_context.verify_mode = ssl.CERT_REQUIRED  # no client certificate, no handshake
    mtls = TLSConfig(
        ca_pem=ca.cert_pem.bytes().decode(),
        client_cert_pem=client.cert_chain_pems[0].bytes().decode(),
        client_key_pem=client.private_key_pem.bytes().decode(),
    )
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "does-not-exist"))
    writes = FileWrites()
    writes.active = True
    try:
        context = mtls.ssl_context()
    finally:
        writes.active = False
    assert writes.seen == []
    assert context.verify_mode is ssl.CERT_REQUIRED

    async with fault_server(Respond(200), tls=server_context) as server:
        transport = OAuth2Transport()
        assert await get(transport, server.url, mtls) == 200
        without_certificate = TLSConfig(ca_pem=mtls.ca_pem)
        with pytest.raises(NoResponseError):
            await get(transport, server.url, without_certificate)
        await transport.aclose()
    assert server.requests[0].method == "GET"


def test_retry_after_forms() -> None:
    assert parse_retry_after("120", now=0) == 120
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0
    assert parse_retry_after("soon", now=0) is None
    assert parse_retry_after(None, now=0) is None
