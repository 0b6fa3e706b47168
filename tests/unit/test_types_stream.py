"""NDJSON streaming (``api.common.stream``) over a real aiohttp server on 127.0.0.1: batching with
back-pressure, flushing a slow producer item by item, errors in the trailer, and the bytes of every line."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import pytest
from aiohttp import web

from pincluster.api.common.stream import stream_ndjson
from pincluster.p2p.keys import PrivateKey
from pincluster.types.cid import CID, sha256_multihash
from pincluster.types.codec import _to_json_generic
from pincluster.types.models import GlobalPinInfo, PinInfo
from pincluster.types.status import TrackerStatus

pytestmark = pytest.mark.timeout(60)

_PEER = PrivateKey.generate_ed25519().public_key().peer_id()
_TS = datetime(2025, 1, 2, 3, 4, 5, 120000, UTC)


def _status(i: int) -> GlobalPinInfo:
    cid = CID(sha256_multihash(i.to_bytes(4, "big")))
    return PinInfo(cid=cid, peer=_PEER, name=f"n<{i}>", status=TrackerStatus.PINNED, timestamp=_TS).to_global()


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _serve(handler: Handler) -> tuple[web.AppRunner, int]:
    app = web.Application()
    app.router.add_get("/s", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, port


async def _open(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(b"GET /s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    await w.drain()
    return r, w


def _dechunk(data: bytes) -> tuple[bytes, bytes, int]:
    """(body, trailer block, number of chunks) of a chunked HTTP/1.1 response."""
    _head, rest = data.split(b"\r\n\r\n", 1)
    body, chunks = b"", 0
    while True:
        size_line, rest = rest.split(b"\r\n", 1)
        size = int(size_line, 16)
        if size == 0:
            return body, rest, chunks
        body += rest[:size]
        rest = rest[size + 2 :]
        chunks += 1


async def test_many_items_batched_with_back_pressure() -> None:
    items = [_status(i) for i in range(3000)]

    async def source() -> AsyncIterator[GlobalPinInfo]:
        for i, g in enumerate(items):
            if i % 500 == 0:
                await asyncio.sleep(0)  # let the writer run mid-stream
            yield g

    async def handler(request: web.Request) -> web.StreamResponse:
        return await stream_ndjson(request, source(), queue_size=32, batch_bytes=8192)

    runner, port = await _serve(handler)
    try:
        r, w = await _open(port)
        data = await asyncio.wait_for(r.read(), 30)
        w.close()
    finally:
        await runner.cleanup()
    body, trailer, chunks = _dechunk(data)
    assert body == b"".join(_to_json_generic(g) + b"\n" for g in items)
    assert trailer == b"X-Stream-Error: \r\n\r\n"
    assert 1 < chunks < len(items) // 4  # batched, yet not one huge write


async def test_slow_producer_is_flushed_item_by_item() -> None:
    gate = asyncio.Event()

    async def source() -> AsyncIterator[GlobalPinInfo]:
        yield _status(1)
        await gate.wait()  # only opened once the client has seen the first line
        yield _status(2)

    async def handler(request: web.Request) -> web.StreamResponse:
        return await stream_ndjson(request, source())

    runner, port = await _serve(handler)
    try:
        r, w = await _open(port)
        seen = b""
        first = _to_json_generic(_status(1)) + b"\n"
        while first not in seen:
            chunk = await asyncio.wait_for(r.read(4096), 10)
            assert chunk, "connection closed before the first item"
            seen += chunk
        gate.set()
        seen += await asyncio.wait_for(r.read(), 10)
        w.close()
    finally:
        await runner.cleanup()
    body, trailer, _ = _dechunk(seen)
    assert body == first + _to_json_generic(_status(2)) + b"\n"
    assert trailer == b"X-Stream-Error: \r\n\r\n"


async def test_error_after_items_goes_to_the_trailer() -> None:
    async def source() -> AsyncIterator[GlobalPinInfo]:
        for i in range(100):
            yield _status(i)
        raise RuntimeError("peer QmX went away")

    async def handler(request: web.Request) -> web.StreamResponse:
        return await stream_ndjson(request, source(), queue_size=8)

    runner, port = await _serve(handler)
    try:
        r, w = await _open(port)
        data = await asyncio.wait_for(r.read(), 10)
        w.close()
    finally:
        await runner.cleanup()
    body, trailer, _ = _dechunk(data)
    assert body.count(b"\n") == 100
    assert trailer == b"X-Stream-Error: peer QmX went away\r\n\r\n"


async def test_custom_encoder_and_error_before_first_item() -> None:
    async def source() -> AsyncIterator[int]:
        for i in range(5):
            yield i

    async def failing() -> AsyncIterator[int]:
        raise ValueError("bad filter")
        yield 0  # pragma: no cover

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.query.get("fail"):
            return await stream_ndjson(request, failing())
        return await stream_ndjson(request, source(), encode=lambda i: b'{"n":%d}' % i)

    runner, port = await _serve(handler)
    try:
        r, w = await _open(port)
        data = await asyncio.wait_for(r.read(), 10)
        w.close()
        r2, w2 = await asyncio.open_connection("127.0.0.1", port)
        w2.write(b"GET /s?fail=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        failed = await asyncio.wait_for(r2.read(), 10)
        w2.close()
    finally:
        await runner.cleanup()
    body, _, _ = _dechunk(data)
    assert body == b"".join(b'{"n":%d}\n' % i for i in range(5))
    assert failed.split(b" ", 2)[1] != b"200" and b"bad filter" in failed
