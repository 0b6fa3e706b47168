"""The merged listing's line heads, kept from one listing to the next (``GET /pins``).

A line of the merged listing starts with fields of the stored pin (CID, name, allocations, origins, created,
metadata): its *head*, ~250 bytes. Formatting it costs ~3 µs a pin, half of what the asked peer spends on a
line, and gives the same bytes in every listing while the pin is unchanged. This cache keeps the heads of the
last listing on disk, one *blob* per listing page: reading a page's 2,000 heads is one row read and one
msgpack decode, not 2,000 row reads (~1 µs each, as much as the formatting saved).

Why it is shaped so:

- **Outside the Raft state.** Keeping the heads with the pins made every peer format every pin it applied: the
  ingest lost 10-20%. Here only a listing writes, and only what changed since the one before.
- **Checked against the stored value.** A blob keeps ``hash()`` of each pin's stored value beside its head, and a
  head is used only for a pin whose value hashes the same. A pin changed by a Raft entry, a state import or a
  snapshot install is formatted again, and nothing has to tell the cache about it.
- **One daemon run.** ``hash()`` of bytes is salted per process: the file is made anew at each start (a file
  left by a crash is deleted) and deleted at shutdown, so its format may change between releases with no
  upgrade.
- **Pages follow the blobs.** A listing walks the pinset in the ranges of the blobs (``HeadSession.bounds``,
  ``IndexedState.listing_pages``), so a pin added or removed changes one page, not the alignment of every
  page after it.
- **Bounded.** Memory holds the blobs of one page. The disk holds ~300 bytes per pin listed; a complete listing
  deletes the blobs of ranges it found empty.
- **Never in the way.** A cache error (a full disk, a deleted file) is logged, and the cache is off until the
  next start: listings format every head, as without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import threading
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import Final, TypeVar

import msgspec

log = logging.getLogger("pintracker")

#: The cache's file, in the peer's configuration folder.
HEAD_CACHE_FILE: Final = "listing-cache.sqlite"

_ENCODER: Final = msgspec.msgpack.Encoder()
#: A blob: the stored values' ``hash()`` (an ``array("q")``'s bytes: compared at C speed) and the heads.
_DECODER: Final = msgspec.msgpack.Decoder(tuple[bytes, list[bytes]])

_T = TypeVar("_T")


class HeadCache:
    """The heads of the last listing, in blobs of one page: ``(first key, last key, (value hashes, heads))``.

    Thread-safe: one SQLite connection, each call under a lock in a worker thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        #: (heads from the cache, heads formatted) in the last listing that finished: logs and tests.
        self.last_counts: tuple[int, int] = (0, 0)

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
            conn.execute("PRAGMA page_size=65536")  # a blob in 4 pages, not 60: a page's read costs 6x less
            conn.execute("PRAGMA journal_mode=OFF")  # made anew at each start: nothing to recover
            conn.execute("PRAGMA synchronous=OFF")
            conn.execute("CREATE TABLE blobs (last BLOB PRIMARY KEY, first BLOB NOT NULL, data BLOB NOT NULL)")
        except sqlite3.Error:
            conn.close()
            raise
        with self._lock:
            self._conn = conn

    async def close(self) -> None:
        """Close and delete the file."""
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()
                _remove(self.path)

    async def session(self) -> HeadSession | None:
        """A listing's use of the cache (None when it is off)."""
        bounds = await self._call(lambda c: [bytes(r[0]) for r in c.execute("SELECT last FROM blobs ORDER BY last")])
        return None if bounds is None else HeadSession(self, bounds)

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
        """``_call`` on the event loop's thread, for a page's blob (~0.5 MB, read in ~50 µs): a worker thread
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
    """The last keys of the blobs whose range meets ``[first, last]``."""
    out = []
    for blast, bfirst in conn.execute("SELECT last, first FROM blobs WHERE last >= ? ORDER BY last", (first,)):
        if bfirst > last:
            break
        out.append(bytes(blast))
    return out


def _read_blobs(conn: sqlite3.Connection, first: bytes, last: bytes) -> list[tuple[bytes, bytes, bytes]]:
    """``(first, last, data)`` of the blobs whose range meets ``[first, last]``, in key order."""
    out = []
    for blast in _overlapping(conn, first, last):
        row = conn.execute("SELECT first, data FROM blobs WHERE last = ?", (blast,)).fetchone()
        out.append((bytes(row[0]), blast, bytes(row[1])))
    return out


def _write_blob(conn: sqlite3.Connection, first: bytes, last: bytes, data: bytes) -> None:
    """The blob of ``[first, last]``, replacing those whose range meets it."""
    conn.execute("BEGIN")
    try:
        conn.executemany("DELETE FROM blobs WHERE last = ?", [(b,) for b in _overlapping(conn, first, last)])
        conn.execute("INSERT INTO blobs (last, first, data) VALUES (?, ?, ?)", (last, first, data))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


class HeadSession:
    """One listing's use of the cache: its pages' heads, read or formatted, and the blobs written for them."""

    def __init__(self, cache: HeadCache, bounds: list[bytes]) -> None:
        self._cache = cache
        #: The last keys of the blobs when the listing started: where its pages should end.
        self.bounds = bounds
        self._touched: set[bytes] = set()
        self._pending: asyncio.Future[None] | None = None
        self.hits = 0
        self.formatted = 0

    async def heads(self, keys: list[bytes], values: list[bytes], render: Callable[[bytes], bytes]) -> list[bytes]:
        """The heads of a page of pins (``keys`` in order, their stored ``values``): from the cache where the
        stored value has not changed, else ``render(value)``. The list is the caller's."""
        tags = array("q", [hash(v) for v in values]).tobytes()
        first, last = keys[0], keys[-1]
        blobs = await self._cache._read(lambda c: _read_blobs(c, first, last))
        if blobs is None:  # off
            self.formatted += len(values)
            return [render(v) for v in values]
        self._touched.add(last)
        if len(blobs) == 1 and blobs[0][0] == first and blobs[0][1] == last:
            btags, bheads = _DECODER.decode(blobs[0][2])
            if btags == tags:  # the page as it was: the common case
                self.hits += len(bheads)
                return bheads
        known: dict[int, bytes] = {}
        for _, _, data in blobs:
            btags, bheads = _DECODER.decode(data)
            known.update(zip(array("q", btags), bheads, strict=True))
        found = [known.get(t) for t in array("q", tags)]
        missing = [i for i, h in enumerate(found) if h is None]
        for i in missing:
            found[i] = render(values[i])
        heads: list[bytes] = found  # type: ignore[assignment]  # no None left
        self.hits += len(heads) - len(missing)
        self.formatted += len(missing)
        await self._wait()
        data = _ENCODER.encode((tags, heads))
        self._pending = asyncio.ensure_future(self._cache._call(lambda c: _write_blob(c, first, last, data)))
        return heads

    async def _wait(self) -> None:
        """Let one write at most be in flight (a blob is ~0.6 MB)."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            await pending

    async def finish(self, *, complete: bool) -> None:
        """End the listing: wait for its writes; after a ``complete`` walk, delete the blobs of the ranges it
        found empty (their pins were all removed)."""
        await self._wait()
        if complete:
            gone = [(b,) for b in self.bounds if b not in self._touched]
            if gone:
                await self._cache._call(lambda c: c.executemany("DELETE FROM blobs WHERE last = ?", gone))
            self._cache.last_counts = (self.hits, self.formatted)
            log.debug("listing heads: %d from the cache, %d formatted", self.hits, self.formatted)
