"""A hostile authorization server cannot exhaust the operator's memory (issue 22, item 2).

A gzip bomb or an endless body comes from the scripted server: no real authorization
server answers so. Every body is streamed and decompressed with a cap (`oauth2.bounded`):
64 KiB for token, introspection and revocation answers, 1 MiB for metadata; the call
fails with an error naming the cap, never the content, and memory stays flat (measured
with tracemalloc: everything the body costs is Python allocations)."""

from __future__ import annotations

import gc
import gzip
import tracemalloc
import zlib

import pytest

from oauth2_token_operator.oauth2 import OAuth2Transport, Timeouts
from oauth2_token_operator.oauth2.bounded import MAX_RESPONSE, ResponseTooLargeError
from oauth2_token_operator.oauth2.errors import MalformedResponseError, UnexpectedStatusError
from oauth2_token_operator.oauth2.metadata import IssuerConfig, MetadataCache, ServerMetadata
from oauth2_token_operator.oauth2.tls import TLSConfig
from oauth2_token_operator.oauth2.transport import Replay
from tests.faults import Endless, RawRespond, fault_server

MiB = 1024 * 1024
BOMB = gzip.compress(b"\0" * (200 * MiB), compresslevel=9)  # some 200 KB on the wire


async def post(t: OAuth2Transport, url: str) -> bytes:
    response = await t.request(
        "POST", url, endpoint="token_endpoint", tls=TLSConfig(), replay=Replay.SAFE, data={}
    )
    return response.content


async def peak_of(call: object) -> int:
    """Bytes of Python memory at the peak of awaiting `call`, above where it started."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        start, _ = tracemalloc.get_traced_memory()
        with pytest.raises(ResponseTooLargeError) as caught:
            await call  # type: ignore[misc]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "64 KiB" in str(caught.value) or "1024 KiB" in str(caught.value)
    return peak - start


async def test_a_gzip_bomb_fails_on_the_cap_with_flat_memory() -> None:
    assert len(BOMB) < 300_000
    async with fault_server(RawRespond(BOMB, {"Content-Encoding": "gzip"})) as server:
        t = OAuth2Transport(timeouts=Timeouts(total=10.0))
        try:
            grown = await peak_of(post(t, f"{server.url}/token"))
        finally:
            await t.aclose()
    print(
        f"gzip bomb ({len(BOMB) // 1024} KB, 200 MiB inflated): {grown / MiB:.2f} MiB at the peak"
    )
    assert grown < 20 * MiB, f"{grown / MiB:.1f} MiB"


async def test_an_endless_body_fails_on_the_cap() -> None:
    async with fault_server(Endless()) as server:
        t = OAuth2Transport(timeouts=Timeouts(total=10.0))
        try:
            grown = await peak_of(post(t, f"{server.url}/token"))
        finally:
            await t.aclose()
    assert grown < 20 * MiB


async def test_metadata_may_be_larger_but_not_a_bomb() -> None:
    big = b'{"issuer": "x", "padding": "' + b"a" * (512 * 1024) + b'"}'
    async with fault_server(RawRespond(BOMB, {"Content-Encoding": "gzip"})) as server:
        t = OAuth2Transport(timeouts=Timeouts(total=10.0))
        try:
            config = IssuerConfig(server.url, allow_insecure_http=True)
            grown = await peak_of(MetadataCache(t).get(config))
        finally:
            await t.aclose()
    assert grown < 20 * MiB
    # Half a megabyte of metadata passes the 1 MiB cap (but not the 64 KiB one).
    async with fault_server(RawRespond(gzip.compress(big), {"Content-Encoding": "gzip"})) as s:
        t = OAuth2Transport(timeouts=Timeouts(total=10.0))
        try:
            response = await t.request(
                "GET", s.url, endpoint="discovery", tls=TLSConfig(), replay=Replay.SAFE,
                max_body=1024 * 1024,
            )  # fmt: skip
            assert response.content == big
            with pytest.raises(ResponseTooLargeError):
                await post(t, s.url)
        finally:
            await t.aclose()


@pytest.mark.parametrize(
    ("body", "encoding", "expected"),
    [
        (b'{"a": 1}', None, b'{"a": 1}'),
        (gzip.compress(b'{"a": 1}'), "gzip", b'{"a": 1}'),
        (zlib.compress(b'{"a": 1}'), "deflate", b'{"a": 1}'),
    ],
)
async def test_small_answers_are_read_as_sent(
    body: bytes, encoding: str | None, expected: bytes
) -> None:
    headers = {"Content-Encoding": encoding} if encoding else {}
    async with fault_server(RawRespond(body, headers)) as server:
        t = OAuth2Transport()
        try:
            assert await post(t, server.url) == expected
        finally:
            await t.aclose()


async def test_an_encoding_not_asked_for_or_a_damaged_stream_is_refused() -> None:
    async with fault_server(
        RawRespond(b"xx", {"Content-Encoding": "br"}),
        RawRespond(b"not gzip at all", {"Content-Encoding": "gzip"}),
    ) as server:
        t = OAuth2Transport()
        try:
            with pytest.raises(MalformedResponseError, match="not asked for"):
                await post(t, server.url)
            with pytest.raises(MalformedResponseError, match="damaged"):
                await post(t, server.url)
        finally:
            await t.aclose()
    assert MAX_RESPONSE == 64 * 1024


def test_metadata_keeps_only_the_fields_the_operator_uses() -> None:
    document = {"issuer": "https://as.example", "token_endpoint": "https://as.example/t",
                "padding": "a" * 100_000, "x_vendor": {"deep": ["structure"]}}  # fmt: skip
    metadata = ServerMetadata.model_validate(document)
    assert metadata.model_extra in (None, {})
    assert "padding" not in metadata.model_dump()


async def test_the_metadata_cache_forgets_the_least_used_issuers() -> None:
    """Issuers are tenants' choice: a thousand clients of a thousand issuers keep at most
    `max_entries` documents."""
    async with fault_server(
        RawRespond(b"")  # unused: every issuer below skips discovery
    ) as server:
        t = OAuth2Transport()
        try:
            cache = MetadataCache(t, max_entries=3)
            configs = [
                IssuerConfig(f"{server.url}/tenant-{i}", allow_insecure_http=True, discovery=False)
                for i in range(5)
            ]
            for config in configs:
                await cache.get(config)
            await cache.get(configs[2])  # used again: kept
            await cache.get(configs[0])  # fetched again: the least used goes
            kept = list(cache._entries)
            assert len(kept) == 3
            assert kept == [c.cache_key for c in (configs[4], configs[2], configs[0])]
        finally:
            await t.aclose()


async def test_failed_discoveries_keep_no_bodies_alive() -> None:
    """The metadata cache keeps each issuer's last error (to answer without asking again
    too soon). A kept error that had been raised held its traceback, its frames, and the
    body buffer in them: about a megabyte per hostile issuer, until the cyclic garbage
    collector happened to run (measured on the operator process: +1 MiB RSS per bomb)."""
    issuers = 12
    async with fault_server(RawRespond(BOMB, {"Content-Encoding": "gzip"})) as server:
        t = OAuth2Transport(timeouts=Timeouts(total=10.0))
        cache = MetadataCache(t)
        gc.collect()
        gc.disable()  # as between two runs of the collector
        tracemalloc.start()
        try:
            start, _ = tracemalloc.get_traced_memory()
            for i in range(issuers):
                with pytest.raises(ResponseTooLargeError):
                    await cache.get(IssuerConfig(f"{server.url}/t{i}", allow_insecure_http=True))
            kept, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            gc.enable()
            await t.aclose()
    print(f"{issuers} failed discoveries keep {(kept - start) / MiB:.2f} MiB")
    assert kept - start < 2 * MiB, f"{(kept - start) / MiB:.1f} MiB kept"
    errors = [entry.last_error for entry in cache._entries.values()]
    assert all(e is not None and e.__traceback__ is None for e in errors)


def test_a_detached_error_is_the_same_error_without_its_past() -> None:
    try:
        try:
            raise ValueError("inner")
        except ValueError:
            raise UnexpectedStatusError(
                "HTTP 503", endpoint="token_endpoint", status_code=503
            ) from None
    except UnexpectedStatusError as exc:
        raised = exc
    kept = raised.detached()
    assert type(kept) is UnexpectedStatusError
    assert (str(kept), kept.status_code, kept.endpoint, kept.retryable) == (
        str(raised), 503, "token_endpoint", raised.retryable,
    )  # fmt: skip
    assert raised.__traceback__ is not None
    assert raised.__context__ is not None
    assert kept.__traceback__ is None
    assert kept.__context__ is None
