"""``ndjson_chunks``: listings as NDJSON chunks for a ClusterAPI without its own writer."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import pytest

from pincluster.api.common.stream import ndjson_chunks
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
