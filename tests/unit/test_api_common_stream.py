"""``ndjson_chunks``: listings as NDJSON chunks for a ClusterAPI without its own writer."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

import pytest

from pincluster.api.common.stream import _Buffer, _produce, ndjson_chunks
from pincluster.types.cid import CID
from pincluster.types.codec import to_json
from pincluster.types.models import Pin


def _pins(n: int) -> list[Pin]:
    return [Pin(cid=CID.v0(hashlib.sha256(b"chunk-%d" % i).digest()), name=f"pin {i}") for i in range(n)]


async def _source(pins: list[Pin], fail_after: int | None = None) -> AsyncIterator[Pin]:
    for i, p in enumerate(pins):
        if fail_after is not None and i == fail_after:
            raise RuntimeError("the listing broke")
        yield p


async def test_chunks_hold_whole_lines_in_order() -> None:
    pins = _pins(7)
    chunks = [c async for c in ndjson_chunks(_source(pins), per_chunk=3)]
    assert [c.count(b"\n") for c in chunks] == [3, 3, 1]
    assert b"".join(chunks) == b"".join(to_json(p) + b"\n" for p in pins)


async def test_lines_before_a_failure_go_out_before_it() -> None:
    pins = _pins(5)
    got: list[bytes] = []
    with pytest.raises(RuntimeError, match="the listing broke"):
        async for c in ndjson_chunks(_source(pins, fail_after=4), per_chunk=3):
            got.append(c)
    assert b"".join(got) == b"".join(to_json(p) + b"\n" for p in pins[:4])


async def test_byte_chunks_ahead_of_the_client_are_bounded_by_size() -> None:
    """A producer of large chunks (a merged listing's pages, ~2 MB) waits once ``limit_bytes`` are pending,
    whatever their count: what a slow client leaves waiting stays bounded."""
    buf = _Buffer(limit=8, limit_bytes=3_000_000)
    made = 0

    async def pages() -> AsyncIterator[bytes]:
        nonlocal made
        for _ in range(10):
            made += 1
            yield b"x" * 1_000_000

    producer = asyncio.create_task(_produce(pages(), buf))
    await asyncio.sleep(0.05)
    assert made == 3 and buf.size == 3_000_000  # waiting for the writer
    assert len(await buf.take()) == 3
    await asyncio.sleep(0.05)
    assert made == 6
    got = 3
    while got < 10:
        got += sum(1 for item in await buf.take() if type(item) is bytes)
    await producer
    assert made == 10
