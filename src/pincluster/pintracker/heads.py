"""The merged listing's line heads, kept from one listing to the next (``GET /pins``).

A line of the merged listing starts with fields of the stored pin (CID, name, allocations, origins, created,
metadata): its *head*, ~250 bytes. Formatting it costs ~3 µs a pin, half of what the asked peer spent on a
line, and gives the same bytes in every listing while the pin is unchanged. Reading the pin from the state
costs another ~1 µs. This cache keeps, for each page of the last listing, one *blob*: the page's keys, status
keys and heads. A page whose pins did not change since is listed from its blob alone (one row read and one
msgpack decode for 1,000 pins), without reading the state.

Why it is shaped so:

- **Outside the Raft state.** Keeping the heads with the pins made every peer format every pin it applied: the
  ingest lost 10-20%. Here only a listing writes, and only what changed since the one before.
- **Told of every change.** The state store calls the cache after each committed write with the keys it
  changed (``SQLiteStore.watch``): a Raft entry, a group of them, a snapshot restored (every key). A page is
  listed from its blob only while no change has reached its key range since the listing that read it (a
  change between that read and the blob's write counts too: the blob is then used for its heads only).
- **Checked against the stored value.** A page read from the state takes a head from the cache only for a pin
  whose stored value has the same ``hash()`` as when the head was made: a pin changed is formatted again.
  ``hash()`` of bytes is salted per process, so the file is made anew at each start (one left by a crash is
  deleted) and deleted at shutdown: its format may change between releases with no upgrade.
- **Pages follow the blobs.** A listing walks the pinset in the key ranges of the blobs, so a pin added or
  removed changes one page, not the alignment of every page after it.
- **Bounded.** Memory holds one page's blob, and the key ranges (one key per 1,000 pins). The disk holds ~270
  bytes per pin listed; a complete listing deletes the blobs of ranges it found empty.
- **Never in the way.** A cache error (a full disk, a deleted file) is logged, and the cache is off until the
  next start: listings read and format every pin, as without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import sqlite3
import threading
from array import array
from bisect import bisect_left, insort
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol, TypeVar

import msgspec

log = logging.getLogger("pintracker")

#: The cache's file, in the peer's configuration folder.
HEAD_CACHE_FILE: Final = "listing-cache.sqlite"

_T = TypeVar("_T")
_ABSENT: Final = object()
_Row = tuple[bytes, bytes, bytes | None]


class RangeReader(Protocol):
    """What the walk reads the pinset with (``state.store.SQLiteStore``): pages in key order, on the calling
    thread, and a feed of the keys each committed write changed."""

    def listing_page(self, after: bytes | None, limit: int) -> list[_Row]: ...

    def listing_range(self, after: bytes | None, upto: bytes, limit: int) -> list[_Row]: ...

    def watch(self, fn: Callable[[Sequence[bytes] | None], None]) -> None: ...

    def unwatch(self, fn: Callable[[Sequence[bytes] | None], None]) -> None: ...


class _Blob(msgspec.Struct, array_like=True):
    """One page: the ``hash()`` of each stored value (``array("q")`` bytes, compared at C speed), the keys, the
    distinct status keys and each pin's index among them (``array("H")`` bytes), and the heads."""

    tags: bytes
    keys: list[bytes]
    skey_table: list[bytes]
    skey_index: bytes
    heads: list[bytes]

    def skeys(self) -> list[bytes]:
        table = self.skey_table
        return [table[i] for i in array("H", self.skey_index)]


_ENCODER: Final = msgspec.msgpack.Encoder()
_DECODER: Final = msgspec.msgpack.Decoder(_Blob)


@dataclass(slots=True)
class WalkPage:
    """A page of the walk: ``values`` and ``seq`` when read from the state (heads still to find), ``heads`` when
    listed from the cache."""

    keys: list[bytes]
    skeys: Sequence[bytes | None]
    values: list[bytes] | None
    heads: list[bytes] | None
    #: the key after which the page's range starts (None: the first page)
    after: bytes | None = None
    #: the cache's change count when the page was read (None: read without the change feed)
    seq: int | None = None

    @classmethod
    def of_rows(cls, rows: list[_Row], after: bytes | None = None, seq: int | None = None) -> WalkPage:
        return cls([r[0] for r in rows], [r[2] for r in rows], [r[1] for r in rows], None, after, seq)


class HeadCache:
    """The pages of the last listing, kept in a SQLite file of this daemon run (see the module docstring).

    Thread-safe: one SQLite connection, used under a lock; the change feed arrives in the state's writing
    thread and updates the in-memory record of which pages are current under another."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        #: (heads from the cache, heads formatted, pins not read from the state) in the last complete listing
        self.last_counts: tuple[int, int, int] = (0, 0, 0)
        # The pages known current: the last key of each (sorted) and the key its range starts after.
        self._tlock = threading.Lock()
        self._seq = 0  # changes seen
        self._current: dict[bytes, bytes | None] = {}
        self._lasts: list[bytes] = []
        self._reader: RangeReader | None = None

    @property
    def enabled(self) -> bool:
        return self._conn is not None

    async def open(self) -> None:
        """Start with an empty cache (one left by an earlier run cannot be read: see the module docstring)."""
        try:
            await asyncio.to_thread(self._open)
        except (OSError, sqlite3.Error) as exc:
            log.warning("listing cache off: cannot create %s: %s", self.path, exc)

    def _open(self) -> None:
        _remove(self.path)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA page_size=65536")  # a blob in a few pages, not dozens: read 6x faster
            conn.execute("PRAGMA journal_mode=OFF")  # made anew at each start: nothing to recover
            conn.execute("PRAGMA synchronous=OFF")
            conn.execute("CREATE TABLE blobs (last BLOB PRIMARY KEY, first BLOB NOT NULL, data BLOB NOT NULL)")
        except sqlite3.Error:
            conn.close()
            raise
        with self._lock:
            self._conn = conn

    async def close(self) -> None:
        """Stop watching the state; close and delete the file."""
        self._attach(None)
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()
                _remove(self.path)
        self._forget(None)

    async def session(self, reader: RangeReader | None = None) -> HeadSession | None:
        """A listing's use of the cache (None when it is off). With ``reader`` (the state store), the listing
        walks it through the session (``HeadSession.walk``), which watches it for changes."""
        if reader is not self._reader:
            self._attach(reader)
        bounds = await self._call(lambda c: [bytes(r[0]) for r in c.execute("SELECT last FROM blobs ORDER BY last")])
        return None if bounds is None else HeadSession(self, bounds)

    async def warm(self, reader: RangeReader, render: Callable[[bytes], bytes], *, pause: float = 0.005) -> int:
        """Walk the pinset once as a listing would, writing the blobs, so that the first listing after a start
        does not format every head (~4 µs a pin: ~4 s for a million, spread out by ``pause`` after each page
        so that requests and Raft go first). Returns the pins walked (0 when the cache is off)."""
        session = await self.session(reader)
        if session is None:
            return 0
        complete, n = False, 0
        try:
            async for page in session.walk(reader):
                n += len(page.keys)
                if page.heads is None and None not in page.skeys:
                    await session.heads(page, render)
                await asyncio.sleep(pause)
            complete = True
        finally:
            await session.finish(complete=complete)
        return n

    # -- which pages are current ------------------------------------------------------------------------
    def _attach(self, reader: RangeReader | None) -> None:
        if self._reader is not None:
            self._reader.unwatch(self._on_change)
        self._reader = reader
        self._forget(None)
        if reader is not None:
            reader.watch(self._on_change)

    def _on_change(self, keys: Sequence[bytes] | None) -> None:
        """The state's change feed (its writing thread): the pages holding ``keys`` (None: all) are not current."""
        self._forget(keys)

    def _forget(self, keys: Sequence[bytes] | None) -> None:
        """A change: the pages holding ``keys`` (None: all) are not current, nor is any page read before it."""
        with self._tlock:
            self._seq += 1
            self._drop_locked(keys)

    def _drop(self, lasts: Sequence[bytes]) -> None:
        """The pages ending at ``lasts``, whose blobs this cache replaces or deletes: not current."""
        with self._tlock:
            for last in lasts:
                if self._current.pop(last, _ABSENT) is not _ABSENT:
                    del self._lasts[bisect_left(self._lasts, last)]

    def _drop_locked(self, keys: Sequence[bytes] | None) -> None:
        if keys is None:
            self._current.clear()
            self._lasts.clear()
            return
        lasts = self._lasts
        for k in keys:
            if not lasts:
                return
            # the page whose range holds k, if current: the first with a last key >= k (a key in a range not
            # current at all only costs the next page its status)
            i = bisect_left(lasts, k)
            if i < len(lasts):
                del self._current[lasts[i]]
                del lasts[i]

    @property
    def seq(self) -> int:
        with self._tlock:
            return self._seq

    def _is_current(self, last: bytes, after: bytes | None) -> bool:
        with self._tlock:
            return last in self._current and self._current[last] == after

    def _mark_current(self, last: bytes, after: bytes | None, seq: int) -> None:
        """The page ending at ``last`` and starting after ``after`` was read at change count ``seq``, and its
        blob is written: current, unless a change came since the read (it may have missed it)."""
        with self._tlock:
            if seq != self._seq:
                return
            if last not in self._current:
                insort(self._lasts, last)
            self._current[last] = after

    # Under ``_lock`` (through ``_locked``), so that a blob and whether it is current change together: a
    # listing never takes a blob as current that another listing is replacing.
    def _current_blob(self, conn: sqlite3.Connection, last: bytes, after: bytes | None) -> bytes | None:
        return _blob_at(conn, last) if self._is_current(last, after) else None

    def _page_blobs(self, conn: sqlite3.Connection, page: WalkPage, tags: bytes) -> list[_Blob] | _Blob:
        """The blob of exactly this page's pins as read (marked current when the page's read allows), or else
        the blobs whose keys meet the page's range (for the heads they hold)."""
        first, last = page.keys[0], page.keys[-1]
        found = _read_blobs(conn, first, last)
        if len(found) == 1 and found[0][0] == first and found[0][1] == last:
            blob = _DECODER.decode(found[0][2])
            if blob.tags == tags:  # the page as it was: the common case
                if page.seq is not None:
                    self._mark_current(last, page.after, page.seq)
                return blob
        return [_DECODER.decode(data) for _, _, data in found]

    def _store(self, conn: sqlite3.Connection, first: bytes, last: bytes, after: bytes | None, seq: int | None,
               data: bytes) -> None:
        self._drop([*_write_blob(conn, first, last, data), last])
        if seq is not None:
            self._mark_current(last, after, seq)

    def _delete(self, conn: sqlite3.Connection, lasts: list[bytes]) -> None:
        conn.executemany("DELETE FROM blobs WHERE last = ?", [(b,) for b in lasts])
        self._drop(lasts)

    # -- the file -------------------------------------------------------------------------------------------
    async def _call(self, fn: Callable[[sqlite3.Connection], _T]) -> _T | None:
        """``fn(connection)`` in a worker thread; None when the cache is off, or now turned off by an error."""
        if self._conn is None:
            return None
        try:
            return await asyncio.to_thread(self._locked, fn)
        except sqlite3.Error as exc:
            await self._failed(exc)
            return None

    async def _read(self, fn: Callable[[sqlite3.Connection], _T]) -> _T | None:
        """``_call`` on the event loop's thread, for a page's blob (~0.3 MB, read in ~25 µs): a worker thread
        needs the GIL for every object it builds, and while the loop formats the listing's lines it gets it
        only at the interpreter's switch interval (5 ms), so the listing would wait for it."""
        if self._conn is None:
            return None
        try:
            return self._locked(fn)
        except sqlite3.Error as exc:
            await self._failed(exc)
            return None

    async def _failed(self, exc: sqlite3.Error) -> None:
        log.warning("listing cache off until the next start: %s", exc)
        await asyncio.to_thread(self._close)

    def _locked(self, fn: Callable[[sqlite3.Connection], _T]) -> _T | None:
        with self._lock:
            return None if self._conn is None else fn(self._conn)


def _remove(path: Path) -> None:
    for name in (path.name, path.name + "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path.with_name(name))


def _overlapping(conn: sqlite3.Connection, first: bytes, last: bytes) -> list[bytes]:
    """The last keys of the blobs whose keys meet ``[first, last]``."""
    out = []
    for blast, bfirst in conn.execute("SELECT last, first FROM blobs WHERE last >= ? ORDER BY last", (first,)):
        if bfirst > last:
            break
        out.append(bytes(blast))
    return out


def _read_blobs(conn: sqlite3.Connection, first: bytes, last: bytes) -> list[tuple[bytes, bytes, bytes]]:
    """``(first, last, data)`` of the blobs whose keys meet ``[first, last]``, in key order."""
    out = []
    for blast in _overlapping(conn, first, last):
        row = conn.execute("SELECT first, data FROM blobs WHERE last = ?", (blast,)).fetchone()
        out.append((bytes(row[0]), blast, bytes(row[1])))
    return out


def _blob_at(conn: sqlite3.Connection, last: bytes) -> bytes | None:
    row = conn.execute("SELECT data FROM blobs WHERE last = ?", (last,)).fetchone()
    return None if row is None else bytes(row[0])


def _write_blob(conn: sqlite3.Connection, first: bytes, last: bytes, data: bytes) -> list[bytes]:
    """The blob of ``[first, last]``, replacing those whose keys meet it (their last keys are returned)."""
    conn.execute("BEGIN")
    try:
        replaced = _overlapping(conn, first, last)
        conn.executemany("DELETE FROM blobs WHERE last = ?", [(b,) for b in replaced])
        conn.execute("INSERT INTO blobs (last, first, data) VALUES (?, ?, ?)", (last, first, data))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return replaced


class HeadSession:
    """One listing's use of the cache: its pages, from the blobs or the state, and the blobs it writes."""

    def __init__(self, cache: HeadCache, bounds: list[bytes]) -> None:
        self._cache = cache
        #: The last keys of the blobs when the listing started: where its pages end.
        self.bounds = bounds
        self._touched: set[bytes] = set()
        self._pending: asyncio.Future[None] | None = None
        self.hits = 0
        self.formatted = 0
        self.unread = 0

    async def walk(self, reader: RangeReader, page_size: int = 1000) -> AsyncIterator[WalkPage]:
        """The pinset in key order, a page per blob range (``2 * page_size`` pins at most), then pages of
        ``page_size`` past the last blob. A page that is current comes from its blob; the others are read from
        ``reader`` on the loop's thread (see ``HeadCache._read``), and their heads are then found with
        :meth:`heads`. 1,000 pins a page: what a listing holds at once is about a page's text (~1 MB), the
        chunks waiting for the client and the blob; pages of 2,000 were slower (1M pins: 276-285k items/s
        against 306-323k) and held ~8 MB more."""
        cache, bounds, wide = self._cache, self.bounds, 2 * page_size
        after: bytes | None = None  # where the next read starts
        i = 0  # the next bound
        # What a page's blob is checked against: the pins from the last key listed (a page's range then
        # spans the empty ranges read before it, which a complete listing deletes) to its last, as of the
        # change count before the first of those reads.
        listed: bytes | None = None
        since: int | None = None
        while True:
            rows: list[_Row]
            if i < len(bounds):
                upto = bounds[i]
                if cache._is_current(upto, listed):  # checked again with the read, under the file's lock
                    data = await cache._read(functools.partial(cache._current_blob, last=upto, after=listed))
                    if data is not None:
                        blob = _DECODER.decode(data)
                        self._touched.add(upto)
                        self.hits += len(blob.heads)
                        self.unread += len(blob.heads)
                        yield WalkPage(blob.keys, blob.skeys(), None, blob.heads, listed)
                        after, listed, since, i = upto, upto, None, i + 1
                        continue
                if since is None:
                    since = cache.seq
                rows = reader.listing_range(after, upto, wide)
                nxt: tuple[bytes | None, int] | None = (rows[-1][0], i) if len(rows) == wide else (upto, i + 1)
            else:
                if since is None:
                    since = cache.seq
                rows = reader.listing_page(after, page_size)
                nxt = (rows[-1][0], i) if len(rows) == page_size else None
            if rows:
                yield WalkPage.of_rows(rows, listed, since)
                listed, since = rows[-1][0], None
            if nxt is None:
                return
            after, i = nxt
            await asyncio.sleep(0)  # others' turn between pages

    async def heads(self, page: WalkPage, render: Callable[[bytes], bytes]) -> list[bytes]:
        """The heads of a page read from the state (its ``skeys`` all known): from the cache where the stored
        value has not changed, else ``render(value)``. The list is the caller's."""
        values = page.values
        assert values is not None
        keys = page.keys
        cache = self._cache
        tags = array("q", [hash(v) for v in values]).tobytes()
        found_blobs = await cache._read(functools.partial(cache._page_blobs, page=page, tags=tags))
        if found_blobs is None:  # off
            self.formatted += len(values)
            return [render(v) for v in values]
        self._touched.add(keys[-1])
        if isinstance(found_blobs, _Blob):
            self.hits += len(found_blobs.heads)
            return found_blobs.heads
        known: dict[int, bytes] = {}
        for blob in found_blobs:
            known.update(zip(array("q", blob.tags), blob.heads, strict=True))
        found = [known.get(t) for t in array("q", tags)]
        missing = [i for i, h in enumerate(found) if h is None]
        for i in missing:
            found[i] = render(values[i])
        heads: list[bytes] = found  # type: ignore[assignment]  # no None left
        self.hits += len(heads) - len(missing)
        self.formatted += len(missing)
        await self._wait()
        table = list(dict.fromkeys(page.skeys))  # a few distinct ones (pages hold 2,000 pins at most)
        if None in table:
            return heads  # an unreadable pin (the listing fails on it): nothing to keep
        index = {s: n for n, s in enumerate(table)}
        data = _ENCODER.encode(_Blob(tags, keys, table,  # type: ignore[arg-type]  # no None (checked)
                                     array("H", [index[s] for s in page.skeys]).tobytes(), heads))
        self._pending = asyncio.ensure_future(cache._call(functools.partial(
            cache._store, first=keys[0], last=keys[-1], after=page.after, seq=page.seq, data=data)))
        return heads

    async def _wait(self) -> None:
        """Let one write at most be in flight (a blob is ~0.3 MB)."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            await pending

    async def finish(self, *, complete: bool) -> None:
        """End the listing: wait for its writes; after a ``complete`` walk, delete the blobs of the ranges it
        found empty (their pins were all removed)."""
        await self._wait()
        if complete:
            gone = [b for b in self.bounds if b not in self._touched]
            if gone:
                await self._cache._call(functools.partial(self._cache._delete, lasts=gone))
            self._cache.last_counts = (self.hits, self.formatted, self.unread)
            log.debug("listing heads: %d from the cache, %d formatted, %d pins not read from the state",
                      self.hits, self.formatted, self.unread)
