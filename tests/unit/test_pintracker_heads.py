"""The merged listing's line-head cache (``pintracker.heads``): a head is used only for the stored value it was
formatted from, a listing writes only what changed, the file lasts one daemon run, and a broken cache never
breaks a listing. The listing's bytes with the cache are checked in ``test_pintracker_listing.py``."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from test_state_index import pin, put, varied

from pincluster.pintracker.heads import HeadCache, HeadSession, WalkPage
from pincluster.state.store import OP_DELETE, OP_PUT, SQLiteStore
from pincluster.types.codec import pin_from_state


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
        heads += await session.heads(WalkPage(ks, [b"skey"] * len(ks), [pins[k] for k in ks], None), render)
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
    assert cache.last_counts == (0, 95, 0)
    assert await listing(cache, pins) == (heads, 0)  # unchanged: every head from the cache
    assert cache.last_counts == (95, 0, 0)
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
    page = WalkPage(ks, [b"s"] * 10, [pins[k] for k in ks], None)
    assert await session.heads(page, render) == [b"head of " + pins[k] for k in ks]
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
        await session.heads(WalkPage(keys[10 * n:10 * n + 10], [b"s"] * 10, [b"x%d" % i for i in range(10)], None),
                            Renders())
    await session.finish(complete=False)
    assert peak == 1 and blob_count(cache) == 5
    await cache.close()


# --- the walk over the state store, with its change feed -------------------------------------------------------
class Reader:
    """The store, with a hook run after each range read (to make a change land between a read and its blob)."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store
        #: run after the next read that returns pins (with ``on_empty``: that returns none)
        self.after_read: Callable[[list[Any]], None] | None = None
        self.on_empty = False

    def listing_page(self, after: bytes | None, limit: int) -> list[Any]:
        return self._hook(self.store.listing_page(after, limit))

    def listing_range(self, after: bytes | None, upto: bytes, limit: int) -> list[Any]:
        return self._hook(self.store.listing_range(after, upto, limit))

    def _hook(self, rows: list[Any]) -> list[Any]:
        if self.after_read is not None and bool(rows) != self.on_empty:
            hook, self.after_read = self.after_read, None
            hook(rows)
        return rows

    def watch(self, fn: Callable[[Sequence[bytes] | None], None]) -> None:
        self.store.watch(fn)

    def unwatch(self, fn: Callable[[Sequence[bytes] | None], None]) -> None:
        self.store.unwatch(fn)


async def walk(cache: HeadCache, reader: Reader, page_size: int = 7,
               session: HeadSession | None = None) -> list[tuple[bytes, bytes | None, bytes]]:
    """A listing's walk as the tracker does it; ``(key, status key, head)`` of every pin."""
    session = session or await cache.session(reader)
    assert session is not None
    out: list[tuple[bytes, bytes | None, bytes]] = []
    async for page in session.walk(reader, page_size):
        heads = page.heads if page.heads is not None else await session.heads(page, Renders())
        out += list(zip(page.keys, page.skeys, heads, strict=True))
    await session.finish(complete=True)
    return out


def state_now(store: SQLiteStore) -> list[tuple[bytes, bytes | None, bytes]]:
    return [(k, sk, b"head of " + v) for k, v, sk in store.listing_page(None, 1 << 20)]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "state.sqlite")
    s.apply(1, 1, [put(p) for p in varied(60)])
    yield s
    s.close()


async def test_unchanged_pages_are_listed_without_reading_the_state(cache: HeadCache, store: SQLiteStore,
                                                                   tmp_path: Path) -> None:
    reader = Reader(store)
    assert await walk(cache, reader) == state_now(store)
    assert cache.last_counts == (0, 60, 0)
    assert await walk(cache, reader) == state_now(store)
    assert cache.last_counts == (60, 0, 60)  # every page from its blob
    # a changed pin (a Raft entry), then a removed and an added one (a group commit): their pages only
    changed = pin(7).replace(name="renamed")
    store.apply(2, 1, [put(changed)])
    assert await walk(cache, reader) == state_now(store)
    hits, formatted, unread = cache.last_counts
    assert formatted == 1 and hits == 59 and 60 - 14 <= unread < 60  # one page of 7 (up to 14) read again
    store.apply_many([(3, 1, [(OP_DELETE, pin(20).cid.bytes, None)]), (4, 1, [put(pin(500))])])
    assert await walk(cache, reader) == state_now(store)
    assert cache.last_counts[1] == 1 and 60 - 28 <= cache.last_counts[2] < 60
    assert await walk(cache, reader) == state_now(store) and cache.last_counts == (60, 0, 60)
    store.clear()  # every key changed
    store.apply(5, 1, [put(p) for p in varied(10)])
    assert await walk(cache, reader) == state_now(store) and cache.last_counts[2] == 0
    assert await walk(cache, reader) == state_now(store) and cache.last_counts[2] == 10
    other = SQLiteStore(tmp_path / "leader.sqlite")  # a snapshot from the leader, restored in place
    other.apply(9, 2, [put(p.replace(name="from the leader")) for p in varied(10)])
    other.snapshot_to(tmp_path / "snap.sqlite")
    other.close()
    store.restore_from(tmp_path / "snap.sqlite")
    assert await walk(cache, reader) == state_now(store) and cache.last_counts == (0, 10, 0)
    await cache.close()


async def test_a_change_between_a_read_and_its_blob_is_not_missed(cache: HeadCache, store: SQLiteStore) -> None:
    """The page read before a change landed keeps the old value in its blob: it must not count as current."""
    reader = Reader(store)
    await walk(cache, reader)
    target = pin_from_state(store.get(store.listing_page(None, 1)[0][0]) or b"")
    store.apply(2, 1, [put(target.replace(name="first change"))])  # its page is read again by the next walk
    reader.after_read = lambda rows: store.apply(3, 1, [put(target.replace(name="changed under the read"))])
    listed = await walk(cache, reader)
    assert listed != state_now(store)  # that walk read the page just before the change: the old name
    assert await walk(cache, reader) == state_now(store)  # the next one shows it


async def test_the_walk_follows_another_store(cache: HeadCache, store: SQLiteStore, tmp_path: Path) -> None:
    """A session for another store (the state reopened) trusts nothing from the first one."""
    first = Reader(store)
    await walk(cache, first)
    await walk(cache, first)
    other = SQLiteStore(tmp_path / "other.sqlite")
    other.apply(1, 1, [put(p.replace(name="other")) for p in varied(60)])
    second = Reader(other)
    assert await walk(cache, second) == state_now(other)
    assert cache.last_counts[2] == 0
    store.apply(2, 1, [put(pin(3).replace(name="unwatched now"))])  # no longer watched: no effect
    assert await walk(cache, second) == state_now(other) and cache.last_counts == (60, 0, 60)
    other.close()
    await cache.close()


async def test_a_pin_added_back_into_an_emptied_range(cache: HeadCache, store: SQLiteStore) -> None:
    """A page's range spans the empty ranges read before it: a pin added there while the page is read must not
    leave the page current (the next walk would list the page from its blob, without that pin)."""
    reader = Reader(store)
    await walk(cache, reader)
    await walk(cache, reader)
    rows = store.listing_page(None, 1 << 20)
    second = [r for r in rows[7:14]]  # the second page's pins (pages of 7)
    store.apply(2, 1, [(OP_DELETE, k, None) for k, _, _ in second])
    k, v, _ = second[3]
    reader.on_empty = True  # just after the read that finds the second range empty
    reader.after_read = lambda _rows: store.apply(3, 1, [(OP_PUT, k, v)])
    await walk(cache, reader)
    assert reader.after_read is None
    assert await walk(cache, reader) == state_now(store)
    assert k in [key for key, _, _ in await walk(cache, reader)]
    await cache.close()


async def test_a_listing_started_before_another_rewrote_its_pages(cache: HeadCache, store: SQLiteStore) -> None:
    """Listings may overlap: one whose bounds were taken before another split a page must not take the
    second half of that page for the whole range."""
    reader = Reader(store)
    await walk(cache, reader)
    await walk(cache, reader)
    early = await cache.session(reader)  # its bounds: the pages as they are now
    third = store.listing_page(None, 1 << 20)[14:21]
    lo, hi = third[0][0], third[-1][0]
    added = [p for p in (pin(i) for i in range(1000, 3000)) if lo < p.cid.bytes < hi][:10]
    store.apply(2, 1, [put(p) for p in added])  # the third page grows past two pages' worth: split
    assert await walk(cache, reader) == state_now(store)
    assert await walk(cache, reader, session=early) == state_now(store)
    await cache.close()


async def test_warming_makes_the_first_listing_read_nothing(cache: HeadCache, store: SQLiteStore) -> None:
    reader = Reader(store)
    assert await cache.warm(reader, Renders(), pause=0) == 60
    assert await walk(cache, reader) == state_now(store) and cache.last_counts == (60, 0, 60)
    off = HeadCache(cache.path.with_name("off.sqlite"))  # never opened: off
    assert await off.warm(reader, Renders(), pause=0) == 0
    await cache.close()


async def test_a_stale_blob_written_last_is_not_current(cache: HeadCache, store: SQLiteStore) -> None:
    """Two listings read the same page, one before and one after a change; the one that read the older pins
    writes its blob last: that blob replaces the newer one, and must not inherit its being current."""
    reader = Reader(store)
    await walk(cache, reader)
    await walk(cache, reader)
    older, newer = await cache.session(reader), await cache.session(reader)
    assert older is not None and newer is not None
    upto = newer.bounds[0]
    before = WalkPage.of_rows(store.listing_range(None, upto, 14), None, cache.seq)
    renamed = pin_from_state(store.get(before.keys[0]) or b"").replace(name="renamed")
    store.apply(2, 1, [put(renamed)])
    after = WalkPage.of_rows(store.listing_range(None, upto, 14), None, cache.seq)
    await newer.heads(after, Renders())
    await newer.finish(complete=False)  # its blob written, the page current
    await older.heads(before, Renders())
    await older.finish(complete=False)  # the older pins' blob, written last
    assert await walk(cache, reader) == state_now(store)
    await cache.close()
