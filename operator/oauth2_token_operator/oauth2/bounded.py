"""Reading a response body with a cap on its size, after decompression.

An authorization server is a tenant's choice and may be hostile: a body is never read
whole. It is streamed, and decompressed here rather than by httpx, whose decoders
expand each raw chunk in full: a 200 KB gzip answer once took the operator from 39 to
657 MiB. Only `gzip` and `deflate` are accepted (the transport asks for nothing else),
and decompression stops one byte past the cap.
"""

from __future__ import annotations

import zlib

import httpx

from oauth2_token_operator.oauth2.errors import MalformedResponseError

KiB = 1024
MAX_RESPONSE = 64 * KiB
"""Token, introspection and revocation answers."""
MAX_DOCUMENT = 1024 * KiB
"""Metadata documents and key sets."""
ACCEPT_ENCODING = "gzip, deflate"

_GZIP_OR_ZLIB = 32 + zlib.MAX_WBITS
"""zlib's "detect the header" mode: a gzip or a zlib stream."""


class ResponseTooLargeError(MalformedResponseError):
    """A body larger than the cap (counted after decompression)."""


async def read_bounded(response: httpx.Response, limit: int, *, endpoint: str) -> bytes:
    """`response`'s body (a streamed one), decompressed, at most `limit` bytes."""
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity", "gzip", "x-gzip", "deflate"):
        raise MalformedResponseError(
            "the answer uses a content encoding that was not asked for", endpoint=endpoint
        )
    inflate = None if encoding in ("", "identity") else zlib.decompressobj(_GZIP_OR_ZLIB)
    body = bytearray()
    raw = 0
    try:
        async for chunk in response.aiter_raw():
            raw += len(chunk)
            if inflate is None:
                body += chunk
            else:
                body += inflate.decompress(chunk, limit + 1 - len(body))
                if inflate.unconsumed_tail:
                    body += b"\0"  # more output waits: over the cap
            if len(body) > limit or raw > limit:
                raise ResponseTooLargeError(
                    f"the answer is larger than {limit // KiB} KiB", endpoint=endpoint
                )
        if inflate is not None:
            body += inflate.flush()
    except zlib.error:
        body.clear()
        raise MalformedResponseError(
            "the answer's compressed body is damaged", endpoint=endpoint
        ) from None
    except BaseException:
        # The traceback keeps this frame, and so `body`, alive until the cyclic garbage
        # collector finds it (it counts objects, not bytes): a megabyte per failed read
        # piled up while a hostile server was asked again and again. Dropped at once.
        body.clear()
        raise
    if len(body) > limit:
        raise ResponseTooLargeError(
            f"the answer is larger than {limit // KiB} KiB", endpoint=endpoint
        )
    return bytes(body)
