"""What a failed connection says: the address and the timeout, and no errno that belongs
to something else (issue 21: a connect timeout read "no such file or directory").

The unanswered connection is a real one: a listening socket on 127.0.0.1 whose accept
queue is full, so the kernel drops every further SYN and the connect hangs until the
client gives up, as a server behind a firewall that drops packets would.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import ssl
from collections.abc import Iterator

import pytest
import trustme

from oauth2_token_operator.oauth2.errors import NoResponseError
from oauth2_token_operator.oauth2.transport import (
    OAuth2Transport,
    ProxySettings,
    Replay,
    RetryPolicy,
    Timeouts,
    TLSConfig,
)
from tests.faults import Respond, fault_server

PROBE_TIMEOUT = 0.3


@contextlib.contextmanager
def unanswered_port() -> Iterator[int]:
    """A port on 127.0.0.1 that accepts no more connections: its listener's backlog is
    full (and never accepted from), checked with a probe that must time out."""
    listener = socket.socket()
    fillers: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port: int = listener.getsockname()[1]
        for _ in range(16):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
            fillers.append(filler)
        with socket.socket() as probe:
            probe.settimeout(PROBE_TIMEOUT)
            with pytest.raises(TimeoutError):
                probe.connect(("127.0.0.1", port))
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def transport() -> OAuth2Transport:
    return OAuth2Transport(
        timeouts=Timeouts(connect=0.4, total=10.0),
        retry=RetryPolicy(attempts=1),
        proxy=ProxySettings(),
    )


async def test_a_connect_timeout_names_the_address_and_no_stray_errno() -> None:
    """The call is made while a FileNotFoundError is being handled (as when an earlier
    step caught one): its errno is in the timeout's implicit context, not its cause."""
    t = transport()
    with unanswered_port() as port:
        try:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), "/nonexistent")
        except FileNotFoundError:
            with pytest.raises(NoResponseError) as caught:
                await t.request(
                    "POST", f"http://127.0.0.1:{port}/token", endpoint="token_endpoint",
                    tls=TLSConfig(), replay=Replay.SAFE, data={"grant_type": "x"},
                )  # fmt: skip
    await t.aclose()
    message = str(caught.value)
    assert message == (
        f"token_endpoint: ConnectTimeout (connection to 127.0.0.1:{port} timed out"
        " after 0.4 s) after 1 attempt(s)"
    )
    assert "no such file" not in message.lower()


async def test_a_refused_connection_still_names_the_os_reason() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    t = transport()
    with pytest.raises(NoResponseError) as caught:
        await t.request(
            "POST", f"http://127.0.0.1:{port}/token", endpoint="token_endpoint",
            tls=TLSConfig(), replay=Replay.SAFE,
        )  # fmt: skip
    await t.aclose()
    assert "connection refused" in str(caught.value)
    assert f"talking to http://127.0.0.1:{port}" in str(caught.value)


async def test_a_certificate_failure_carries_no_errno_text() -> None:
    """An ssl.SSLError's errno is OpenSSL's code: 1 is not "operation not permitted"."""
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(server_context)
    t = transport()
    async with fault_server(Respond(200), tls=server_context) as server:
        with pytest.raises(NoResponseError) as caught:
            await t.request(
                "POST", f"{server.url}/token", endpoint="token_endpoint",
                tls=TLSConfig(), replay=Replay.SAFE,
            )  # fmt: skip
    await t.aclose()
    message = str(caught.value)
    assert "CERTIFICATE_VERIFY_FAILED" in message
    assert "not permitted" not in message.lower()
