"""The merged listing's line-head cache (``pintracker.heads``): a head is used only for the stored value it was
formatted from, a listing writes only what changed, the file lasts one daemon run, and a broken cache never
breaks a listing. The listing's bytes with the cache are checked in ``test_pintracker_listing.py``."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from pathlib import Path

import pytest

from pincluster.pintracker.heads import HeadCache, HeadSession


def key(i: int) -> bytes:
    return b"\x12\x20" + hashlib.sha256(b"%d" % i).digest()


class Renders:
    """A stand-in for the head formatter that counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, value: bytes) -> bytes:
        self.calls += 1
        return b"head of " + value


async def listing(cache: HeadCache, pins: dict[bytes, bytes], page: int = 10) -> tuple[list[bytes], int]:
    """A listing's walk as the tracker does it: pages of the sorted pins, ending at the session's bounds."""
    session = await cache.session()
    assert session is not None
    render = Renders()
    keys = sorted(pins)
    heads: list[bytes] = []
    i = 0
    bounds = list(session.bounds)
    while i < len(keys):
        j = min(i + page, len(keys))
        while bounds and bounds[0] < keys[i]:
            bounds.pop(0)
        if bounds and keys[j - 1] > bounds[0]:  # end the page at the bound, as the state's pages do
            j = next(n for n in range(i, j) if keys[n] > bounds[0])
        ks = keys[i:j]
        heads += await session.heads(ks, [pins[k] for k in ks], render)
        i = j
    await session.finish(complete=True)
    return heads, render.calls


def blob_count(cache: HeadCache) -> int:
    with sqlite3.connect(cache.path) as conn:
        return int(conn.execute("SELECT count(*) FROM blobs").fetchone()[0])


@pytest.fixture
def cache(tmp_path: Path) -> HeadCache:
    c = HeadCache(tmp_path / "listing-cache.sqlite")
    asyncio.run(c.open())
    return c


async def test_heads_are_formatted_once_and_again_only_for_changed_pins(cache: HeadCache) -> None:
    pins = {key(i): b"v%d" % i for i in range(95)}
    heads, calls = await listing(cache, pins)
    assert heads == [b"head of " + pins[k] for k in sorted(pins)] and calls == 95
    assert cache.last_counts == (0, 95)
    assert await listing(cache, pins) == (heads, 0)  # unchanged: every head from the cache
    assert cache.last_counts == (95, 0)
    # a pin changed, one removed, two added (one inside a page's range, one past the end)
    changed = sorted(pins)[40]
    pins[changed] = b"new value"
    del pins[sorted(pins)[7]]
    pins[key(1000)] = b"added"
    pins[b"\xff" * 34] = b"last"
    heads, calls = await listing(cache, pins)
    assert heads == [b"head of " + pins[k] for k in sorted(pins)]
    assert calls == 3  # the changed pin and the two new ones
    assert await listing(cache, pins) == (heads, 0)
    await cache.close()


async def test_a_value_back_to_an_earlier_one_and_equal_values_on_other_pins(cache: HeadCache) -> None:
    """The check is the stored value: two pins with the same value share a head (the value names its CID in
    the real state), and a head is never taken from the value a pin had before."""
    pins = {key(i): b"same" for i in range(25)}
    assert (await listing(cache, pins))[1] == 25
    assert (await listing(cache, pins))[1] == 0
    first = sorted(pins)[0]
    pins[first] = b"other"
    heads, calls = await listing(cache, pins)
    assert calls == 1 and heads[0] == b"head of other" and heads[1:] == [b"head of same"] * 24
    await cache.close()


async def test_ranges_left_empty_are_deleted_by_a_complete_listing(cache: HeadCache) -> None:
    pins = {key(i): b"v%d" % i for i in range(50)}
    await listing(cache, pins)
    assert blob_count(cache) == 5
    for k in sorted(pins)[10:30]:  # two pages' pins gone
        del pins[k]
    assert (await listing(cache, pins))[1] == 0
    assert blob_count(cache) == 3
    # an incomplete listing deletes nothing
    session = await cache.session()
    assert session is not None
    await session.finish(complete=False)
    assert blob_count(cache) == 3
    pins.clear()
    await listing(cache, pins)
    assert blob_count(cache) == 0
    await cache.close()


async def test_the_file_lasts_one_run(tmp_path: Path) -> None:
    path = tmp_path / "listing-cache.sqlite"
    path.write_bytes(b"left by a crash: not a database")
    cache = HeadCache(path)
    await cache.open()
    assert cache.enabled
    pins = {key(i): b"v" for i in range(12)}
    assert (await listing(cache, pins))[1] == 12
    await cache.close()
    assert not path.exists() and not cache.enabled
    assert await cache.session() is None  # closed: listings format every head
    again = HeadCache(path)
    await again.open()
    assert (await listing(again, pins))[1] == 12  # a new run starts empty
    await again.close()


async def test_a_broken_cache_turns_itself_off(cache: HeadCache, caplog: pytest.LogCaptureFixture) -> None:
    pins = {key(i): b"v%d" % i for i in range(30)}
    await listing(cache, pins)
    session = await cache.session()
    assert session is not None
    with sqlite3.connect(cache.path) as conn:  # as if the file were damaged under the daemon
        conn.execute("DROP TABLE blobs")
    render = Renders()
    ks = sorted(pins)[:10]
    assert await session.heads(ks, [pins[k] for k in ks], render) == [b"head of " + pins[k] for k in ks]
    assert render.calls == 10 and not cache.enabled
    assert "listing cache off" in caplog.text
    await session.finish(complete=True)
    assert await cache.session() is None


async def test_a_cache_that_cannot_be_created_is_off(tmp_path: Path) -> None:
    cache = HeadCache(tmp_path / "no such folder" / "listing-cache.sqlite")
    await cache.open()
    assert not cache.enabled and await cache.session() is None
    await cache.close()


async def test_one_blob_write_at_a_time(cache: HeadCache, monkeypatch: pytest.MonkeyPatch) -> None:
    """A listing whose pages all miss keeps one blob write in flight at most (a blob is ~0.5 MB)."""
    running = peak = 0
    real = cache._call

    async def counting(fn):  # type: ignore[no-untyped-def]
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            await asyncio.sleep(0.01)
            return await real(fn)
        finally:
            running -= 1

    monkeypatch.setattr(cache, "_call", counting)
    session = HeadSession(cache, [])
    keys = sorted(key(i) for i in range(50))
    for n in range(5):
        await session.heads(keys[10 * n:10 * n + 10], [b"x%d" % i for i in range(10)], Renders())
    await session.finish(complete=False)
    assert peak == 1 and blob_count(cache) == 5
    await cache.close()
