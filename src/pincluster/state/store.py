"""The pinset on disk: one SQLite database in WAL mode, with a format version and a migrations hook.

Why SQLite: it is in the standard library, gives atomic multi-row commits (one Raft batch = one transaction =
one fsync), readers that never block the writer (WAL), ordered iteration by key for streaming in CID order,
and consistent copies of itself (``VACUUM INTO``) without stopping writes, which is what Raft snapshots need.

Layout (format version 3)::

    meta(key TEXT PRIMARY KEY, value)     format_version, applied_index, applied_term
    pins(key BLOB PRIMARY KEY, value BLOB, skey BLOB) WITHOUT ROWID
        key = CID bytes, value = compact Pin encoding, skey = types.codec.status_key(value) (NULL: not a pin)
    allocations(peer BLOB, key BLOB, PRIMARY KEY(peer, key)) WITHOUT ROWID
        peer = peer-ID multihash bytes, or EVERYWHERE (b"") for a pin replicated on every peer
    expiry(expire_at INTEGER, key BLOB, PRIMARY KEY(expire_at, key)) WITHOUT ROWID  expire_at = µs since 1970

Version 2 added the two index tables, maintained in the same transaction as every change to ``pins``:
re-pinning a dead peer's pins or removing a peer (``peers rm``) reads only that peer's pins
(``pins_allocated_to``), and the expiry sweep reads only the pins whose ``expire_at`` has passed (``expired``),
where version 1 had to decode the whole pinset for both. ``MIGRATIONS[1]`` builds them from the version 1 rows.

Version 3 adds, kept by the same writes: the ``skey`` column, the fields of the pin that decide the peers'
statuses (``types.codec.StatusKey``, ~45 bytes), so that ``GET /pins`` looks each pin's statuses up by key
instead of deciding them pin by pin (``listing_pages``); and an ``allocations`` row under ``EVERYWHERE`` for
each pin with replication factors -1/-1 (its allocations list is empty), so that a peer answering a listing
reads only the pins it holds (``pins_listed_for``: its own rows and the everywhere rows). ``MIGRATIONS[2]``
fills both for existing pins. (Keeping each pin's rendered listing text too made the merged listing another
third faster, but cost every peer ~15 µs more per pin written and doubled the state on disk: ingest matters
more.)

The indexes read fields of the stored pin encoding (``types.codec.pin_to_state`` format 1: #5/#6 rf_min/max,
#7 allocations, #10 expire_at); a value that is not such a pin is stored but not indexed.

``applied_index`` is the Raft log index of the last batch written, committed in the same transaction as the
batch. Applying an entry whose index is not above it is a no-op, which makes apply idempotent: PySyncObj
re-applies journal entries after a restart and sometimes re-adds entries it already applied.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import functools
import logging
import os
import sqlite3
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import msgspec

from pincluster.durable import fsync_parent
from pincluster.errors import InvalidInput, StateError
from pincluster.types.codec import status_key

log = logging.getLogger("pincluster.raft")

#: Version of the on-disk layout written by this release. Bump it and add a MIGRATIONS entry on any change.
FORMAT_VERSION: Final = 3

#: ``MIGRATIONS[v]`` upgrades a database from version ``v`` to ``v + 1`` inside one transaction (filled below).
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {}

UPGRADE_COMMAND: Final = "ipfs-cluster-service state upgrade"

OP_PUT: Final = 1
OP_DELETE: Final = 2

#: One state change: ``(OP_PUT, key, value)`` or ``(OP_DELETE, key, None)``.
Op = tuple[int, bytes, bytes | None]

#: A pin as merged listings read it: ``(key, value, skey)`` (see ``types.codec.status_key``).
ListingRow = tuple[bytes, bytes, bytes | None]

#: The ``allocations`` peer under which every pin replicated everywhere (rf -1/-1) is indexed (no peer ID is empty).
EVERYWHERE: Final = b""

_SCHEMA_INDEXES = (
    "CREATE TABLE IF NOT EXISTS allocations (peer BLOB NOT NULL, key BLOB NOT NULL, PRIMARY KEY (peer, key)) "
    "WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS expiry (expire_at INTEGER NOT NULL, key BLOB NOT NULL, PRIMARY KEY (expire_at, key)) "
    "WITHOUT ROWID",
)
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS pins (key BLOB PRIMARY KEY, value BLOB NOT NULL, skey BLOB) WITHOUT ROWID",
    *_SCHEMA_INDEXES,
)

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_US: Final = timedelta(microseconds=1)


class _IndexedFields(msgspec.Struct, array_like=True):
    """The leading fields of ``pin_to_state``'s array, as far as the indexes need them; the others stay raw
    (not decoded) and trailing ones are ignored, so newer appended fields do not change the index."""

    fmt: int
    cid: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)
    type: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)
    max_depth: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)
    timestamp: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)
    rf_min: int = 0
    rf_max: int = 0
    allocations: list[bytes] | None = None
    name: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)
    metadata: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)
    expire_at: datetime | None = None


_fields_decoder = msgspec.msgpack.Decoder(_IndexedFields)
_PIN_FORMAT: Final = 1  # types.codec.STATE_FORMAT: the stored pin encoding the indexes understand


def to_micros(t: datetime) -> int:
    """A time as integer microseconds since 1970 UTC (the ``expiry`` table's key)."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return (t - _EPOCH) // _US


def index_entries(value: bytes) -> tuple[list[bytes], int | None]:
    """(``allocations`` peers, expire_at in µs or None) of a stored pin; ``([], None)`` for anything else.

    The peers are the pin's allocations, plus EVERYWHERE when it is replicated on every peer (rf -1/-1).
    An unset expiry is Go's zero time or the Unix epoch (``Pin.expired_at`` treats both as "never").
    """
    try:
        f = _fields_decoder.decode(value)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return [], None
    if f.fmt != _PIN_FORMAT:
        return [], None
    expire: int | None = None
    if f.expire_at is not None and f.expire_at.year > 1:
        expire = to_micros(f.expire_at)
        if expire == 0:
            expire = None
    peers = list(dict.fromkeys(f.allocations or ()))
    if f.rf_min == -1 and f.rf_max == -1 and EVERYWHERE not in peers:
        peers.append(EVERYWHERE)
    return peers, expire


_NO_INDEX: Final[tuple[list[bytes], int | None]] = ([], None)
_IN_CHUNK: Final = 500  # keys per ``IN (…)`` lookup (well below SQLite's variable limit)


def _write_ops(w: sqlite3.Connection, ops: Sequence[Op]) -> list[bytes | None]:
    """Write ``ops`` inside the caller's transaction; returns the value each op's key had just before it.

    The batch is written as its net effect, with a handful of ``executemany`` calls whatever its size: one
    lookup of the keys' current values, then per table the rows to remove and to add (a key put then deleted
    in the same batch costs nothing; a re-pin with the same value changes nothing, not even the indexes).
    Every op is validated before anything is written.
    """
    for op, _key, value in ops:
        if op == OP_PUT:
            if value is None:
                raise InvalidInput("a put operation needs a value")
        elif op != OP_DELETE:
            raise InvalidInput(f"unknown state operation {op!r}")
    keys = list(dict.fromkeys(key for _op, key, _value in ops))
    original: dict[bytes, bytes | None] = dict.fromkeys(keys)
    for i in range(0, len(keys), _IN_CHUNK):
        chunk = keys[i:i + _IN_CHUNK]
        marks = ",".join("?" * len(chunk))
        for k, v in w.execute(f"SELECT key, value FROM pins WHERE key IN ({marks})", chunk):
            original[bytes(k)] = bytes(v)
    current = dict(original)
    previous: list[bytes | None] = []
    for op, key, value in ops:
        previous.append(current[key])
        current[key] = value if op == OP_PUT else None
    puts: list[tuple[bytes, bytes, bytes | None]] = []
    dels: list[tuple[bytes]] = []
    alloc_del: list[tuple[bytes, bytes]] = []
    alloc_add: list[tuple[bytes, bytes]] = []
    exp_del: list[tuple[int, bytes]] = []
    exp_add: list[tuple[int, bytes]] = []
    for key in keys:
        old, new = original[key], current[key]
        if old == new:
            continue
        if new is None:
            dels.append((key,))
        else:
            puts.append((key, new, status_key(new)))
        old_peers, old_exp = _NO_INDEX if old is None else index_entries(old)
        new_peers, new_exp = _NO_INDEX if new is None else index_entries(new)
        alloc_del.extend((p, key) for p in old_peers if p not in new_peers)
        alloc_add.extend((p, key) for p in new_peers if p not in old_peers)
        if old_exp != new_exp:
            if old_exp is not None:
                exp_del.append((old_exp, key))
            if new_exp is not None:
                exp_add.append((new_exp, key))
    if dels:
        w.executemany("DELETE FROM pins WHERE key = ?", dels)
    if puts:
        w.executemany("INSERT OR REPLACE INTO pins(key, value, skey) VALUES (?, ?, ?)", puts)
    if alloc_del:
        w.executemany("DELETE FROM allocations WHERE peer = ? AND key = ?", alloc_del)
    if alloc_add:
        w.executemany("INSERT OR IGNORE INTO allocations(peer, key) VALUES (?, ?)", alloc_add)
    if exp_del:
        w.executemany("DELETE FROM expiry WHERE expire_at = ? AND key = ?", exp_del)
    if exp_add:
        w.executemany("INSERT OR IGNORE INTO expiry(expire_at, key) VALUES (?, ?)", exp_add)
    return previous


def _bulk_stage(w: sqlite3.Connection, rows: list[tuple[int, bytes, bytes, bytes | None]],
                allocs: list[tuple[int, bytes]], exps: list[tuple[int, int]]) -> None:
    """``bulk_load``: append the gathered rows to its temporary tables, and empty the lists."""
    w.executemany("INSERT INTO bulk(rowid, key, value, skey) VALUES (?, ?, ?, ?)", rows)
    w.executemany("INSERT INTO bulk_alloc(row, peer) VALUES (?, ?)", allocs)
    w.executemany("INSERT INTO bulk_exp(row, expire_at) VALUES (?, ?)", exps)
    rows.clear()
    allocs.clear()
    exps.clear()


def _migrate_1_to_2(conn: sqlite3.Connection) -> None:
    """Format 1 → 2: build the ``allocations`` and ``expiry`` indexes from the pins (runs inside the
    transaction ``upgrade`` opened; one pass over ``pins``, inserts in chunks)."""
    for stmt in _SCHEMA_INDEXES:
        conn.execute(stmt)
    allocs: list[tuple[bytes, bytes]] = []
    expiry: list[tuple[int, bytes]] = []
    n = 0

    def flush() -> None:
        conn.executemany("INSERT OR IGNORE INTO allocations(peer, key) VALUES (?, ?)", allocs)
        conn.executemany("INSERT OR IGNORE INTO expiry(expire_at, key) VALUES (?, ?)", expiry)
        allocs.clear()
        expiry.clear()

    reader = conn.cursor()
    for key, value in reader.execute("SELECT key, value FROM pins"):
        k = bytes(key)
        peers, expire = index_entries(bytes(value))
        allocs.extend((p, k) for p in peers if p != EVERYWHERE)  # format 3's rows: MIGRATIONS[2] adds them
        if expire is not None:
            expiry.append((expire, k))
        n += 1
        if len(allocs) + len(expiry) >= 10_000:
            flush()
    flush()
    log.info("state format 1 -> 2: indexed the allocations and expiry of %d pins", n)


_MIGRATE_PAGE: Final = 2000  # pins read and rewritten at a time by MIGRATIONS[2]


def _migrate_2_to_3(conn: sqlite3.Connection) -> None:
    """Format 2 → 3: add ``pins.skey`` and fill it, and index the pins replicated everywhere under EVERYWHERE
    (inside ``upgrade``'s transaction; keyset pages: a pinset of millions is never held in memory)."""
    conn.execute("ALTER TABLE pins ADD COLUMN skey BLOB")
    after: bytes | None = None
    n = everywhere = 0
    while True:
        if after is None:
            rows = conn.execute("SELECT key, value FROM pins ORDER BY key LIMIT ?", (_MIGRATE_PAGE,)).fetchall()
        else:
            rows = conn.execute("SELECT key, value FROM pins WHERE key > ? ORDER BY key LIMIT ?",
                                (after, _MIGRATE_PAGE)).fetchall()
        if not rows:
            break
        skeys = [(status_key(value), key) for key, value in rows]
        spread = [(EVERYWHERE, key) for key, value in rows if EVERYWHERE in index_entries(value)[0]]
        conn.executemany("UPDATE pins SET skey = ? WHERE key = ?", skeys)
        conn.executemany("INSERT OR IGNORE INTO allocations(peer, key) VALUES (?, ?)", spread)
        n += len(rows)
        everywhere += len(spread)
        after = rows[-1][0]
    log.info("state format 2 -> 3: stored the status keys of %d pins, indexed %d pins replicated everywhere",
             n, everywhere)


MIGRATIONS[1] = _migrate_1_to_2
MIGRATIONS[2] = _migrate_2_to_3


class StateVersionError(StateError):
    """The state on disk has another format version than this program writes."""

    def __init__(self, path: Path, found: int, expected: int) -> None:
        self.found = found
        self.expected = expected
        if found < expected and all(v in MIGRATIONS for v in range(found, expected)):
            advice = f"run `{UPGRADE_COMMAND}` to upgrade it, then start again"
        elif found < expected:
            advice = (
                f"no automatic upgrade exists from version {found}; export the state with the older release "
                f"(`ipfs-cluster-service state export`) and import it with this one (or try `{UPGRADE_COMMAND}`)"
            )
        else:
            advice = (
                f"it was written by a newer release; run that release, or export with it and import here "
                f"(`{UPGRADE_COMMAND}` cannot downgrade)"
            )
        super().__init__(
            f"the state in {path} has format version {found}, but this version of pincluster uses format "
            f"version {expected}: {advice}"
        )


#: What IPFS Cluster (Go) keeps in its Raft data folder: hashicorp/raft's BoltDB log and its snapshots.
GO_RAFT_FILES: Final = ("raft.db", "snapshots")


class GoRaftDataError(StateError):
    """The data folder holds IPFS Cluster's (Go) Raft state, which this program cannot read: a peer moved over
    from the Go release in place. Starting on it would show an empty pinset, so it is refused with the way
    across (Go's export, then our import: the two formats are the same)."""

    def __init__(self, folder: Path, found: Sequence[str]) -> None:
        self.folder = folder
        super().__init__(
            f"{folder} holds the Raft state of IPFS Cluster (Go) ({', '.join(found)}), which pincluster cannot "
            "read. To keep its pinset: with every peer stopped, run IPFS Cluster's own `ipfs-cluster-service "
            "state export -f pins.json` on this folder, then pincluster's `ipfs-cluster-service state import "
            f"pins.json` (it moves {folder.name} to {folder.name}.old.0 and imports the pins), on every peer"
        )


def refuse_go_raft_data(folder: Path) -> None:
    """Raise :class:`GoRaftDataError` when ``folder`` holds IPFS Cluster's (Go) Raft files."""
    found = [name for name in GO_RAFT_FILES if (folder / name).exists()]
    if found:
        raise GoRaftDataError(folder, found)


class SnapshotSuperseded(StateError):
    """A snapshot was dropped because a newer one arrived while it was being written."""


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """What a snapshot file says about itself."""

    format_version: int
    applied_index: int
    applied_term: int
    count: int
    extra: Mapping[str, bytes]


def _connect(path: Path | str, *, readonly: bool = False) -> sqlite3.Connection:
    uri = f"file:{path}?mode=ro" if readonly else f"file:{path}"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False, timeout=30.0)
    return conn


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back the transaction a failed write left open. A COMMIT that failed (a full disk: "database or
    disk is full") has already ended it, and a ROLLBACK then raises "no transaction is active", which would
    hide the real error."""
    if conn.in_transaction:
        conn.execute("ROLLBACK")


def _read_meta(conn: sqlite3.Connection) -> dict[str, object]:
    try:
        rows = conn.execute("SELECT key, value FROM meta").fetchall()
    except sqlite3.DatabaseError as exc:
        raise StateError(f"cannot read the state metadata: {exc}") from exc
    return {str(k): v for k, v in rows}


def _as_int(value: object, name: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, (str, bytes)):
        try:
            return int(value)
        except ValueError:
            pass
    raise StateError(f"the state metadata key {name!r} holds {value!r}, not an integer; the state is corrupt")


#: ``SQLiteStore.watch``'s callbacks: the keys a committed write may have changed, or None for every key.
Watcher = Callable[[Sequence[bytes] | None], None]


class SQLiteStore:
    """Synchronous store. One writer (the Raft thread) and any number of readers on other threads.

    Every method is thread-safe. Writes go through one connection serialized by a lock; reads use a second
    connection (WAL lets them run while a write is in progress) serialized by another lock.
    """

    def __init__(self, path: Path | str, *, durable: bool = True) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._wlock = threading.Lock()
        self._rlock = threading.Lock()
        self._watchers: list[Watcher] = []
        try:
            self._w = _connect(self.path)
            try:
                # The version is checked before anything is written: a refused state stays as it was.
                meta_exists = self._w.execute(
                    "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
                ).fetchone()
                if meta_exists:
                    self._check_version(self._w)
            except BaseException:
                self._w.close()
                raise
            self._w.execute("PRAGMA journal_mode=WAL")
            # FULL: the WAL is fsynced at every commit, so an acknowledged pin survives a power loss. A group
            # commit of Raft entries already on the disk in the journal may skip it (``apply_many``).
            self._durable = durable
            self._fsync = durable
            self._w.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            self._w.execute("PRAGMA wal_autocheckpoint=4000")
            if not meta_exists:
                self._create(self._w)
            meta = _read_meta(self._w)
            self._applied_index = _as_int(meta.get("applied_index", 0), "applied_index")
            self._applied_term = _as_int(meta.get("applied_term", 0), "applied_term")
            self._r = _connect(self.path)
        except sqlite3.DatabaseError as exc:
            raise StateError(f"cannot open the state database {self.path}: {exc}") from exc

    # -- lifecycle ---------------------------------------------------------------------------------------

    def _create(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        for stmt in _SCHEMA:
            conn.execute(stmt)
        conn.execute(
            "INSERT OR REPLACE INTO meta(key, value) VALUES ('format_version', ?), ('applied_index', 0), "
            "('applied_term', 0)",
            (FORMAT_VERSION,),
        )
        conn.execute("COMMIT")

    def _check_version(self, conn: sqlite3.Connection) -> None:
        meta = _read_meta(conn)
        if "format_version" not in meta:
            raise StateError(f"the state database {self.path} has no format version; it is not a pincluster state")
        found = _as_int(meta["format_version"], "format_version")
        if found != FORMAT_VERSION:
            raise StateVersionError(self.path, found, FORMAT_VERSION)

    def close(self) -> None:
        """Close both connections (a WAL checkpoint happens on the last close)."""
        with self._wlock, self._rlock:
            self._r.close()
            self._w.close()

    # -- writes (Raft thread) ----------------------------------------------------------------------------

    @property
    def applied_index(self) -> int:
        """Raft index of the last batch written to this store."""
        return self._applied_index

    @property
    def applied_term(self) -> int:
        """Raft term of the last batch written to this store."""
        return self._applied_term

    def apply(self, index: int, term: int, ops: Iterable[Op]) -> bool:
        """Write ``ops`` as one transaction tagged with Raft ``index``; skip (return False) if already applied."""
        with self._wlock:
            if index and index <= self._applied_index:
                return False
            w = self._w
            batch = list(ops)
            self._set_fsync(self._durable)
            w.execute("BEGIN IMMEDIATE")
            try:
                _write_ops(w, batch)
                if index:
                    w.execute(
                        "UPDATE meta SET value = CASE key WHEN 'applied_index' THEN ? ELSE ? END "
                        "WHERE key IN ('applied_index', 'applied_term')",
                        (index, term),
                    )
                w.execute("COMMIT")
            except BaseException:
                _rollback(w)
                raise
            if index:
                self._applied_index = index
                self._applied_term = term
            self._changed([op[1] for op in batch])
            return True

    def watch(self, fn: Watcher) -> None:
        """Call ``fn(keys)`` after each committed write, with the keys it may have changed (None: any key, as
        a snapshot restore or ``clear`` changes them all), in the writing thread and under the write lock: it
        must be quick and must not write here. What a cache of derived data needs to know it is current (the
        listing's line heads, ``pintracker.heads``)."""
        self._watchers.append(fn)

    def unwatch(self, fn: Watcher) -> None:
        with contextlib.suppress(ValueError):
            self._watchers.remove(fn)

    def _changed(self, keys: Sequence[bytes] | None) -> None:
        for fn in list(self._watchers):
            try:
                fn(keys)
            except Exception:  # a watcher's bug must not fail a write that is committed already
                log.exception("state change watcher failed")

    def _set_fsync(self, want: bool) -> None:
        """Whether the next commit syncs the WAL (under ``_wlock``, outside a transaction)."""
        if want != self._fsync:
            self._w.execute(f"PRAGMA synchronous={'FULL' if want else 'NORMAL'}")
            self._fsync = want

    def put_many(self, items: Iterable[tuple[bytes, bytes]]) -> int:
        """Offline bulk insert (``state import``): not tagged with a Raft index. Returns the number written."""
        n = 0

        def ops() -> Iterable[Op]:
            nonlocal n
            for k, v in items:
                n += 1
                yield (OP_PUT, k, v)

        self.apply(0, 0, ops())
        return n

    def bulk_load(self, items: Iterable[tuple[bytes, bytes]], *, chunk: int = 5000) -> int:
        """Offline bulk insert into an empty store (``state import`` into a new data folder); returns the
        number of pins stored. A key given twice keeps its last value, as :meth:`put_many` does.

        Inserted key by key, a large pinset touches a random page of each B-tree per pin: ~100 µs a pin at 1M
        pins here, most of it page reads and writes in the kernel. The pairs (and their index entries) go to
        temporary tables in arrival order instead, then into ``pins`` and its indexes sorted by key, in one
        transaction, so that pages fill in order."""
        with self._wlock:
            w = self._w
            if w.execute("SELECT 1 FROM pins LIMIT 1").fetchone() is not None:
                raise StateError("bulk_load needs an empty state")
            w.execute("CREATE TEMP TABLE bulk (key BLOB NOT NULL, value BLOB NOT NULL, skey BLOB)")
            w.execute("CREATE TEMP TABLE bulk_alloc (row INTEGER NOT NULL, peer BLOB NOT NULL)")
            w.execute("CREATE TEMP TABLE bulk_exp (row INTEGER NOT NULL, expire_at INTEGER NOT NULL)")
            try:
                w.execute("BEGIN IMMEDIATE")
                try:
                    rows: list[tuple[int, bytes, bytes, bytes | None]] = []
                    allocs: list[tuple[int, bytes]] = []
                    exps: list[tuple[int, int]] = []
                    for row, (key, value) in enumerate(items, 1):
                        rows.append((row, key, value, status_key(value)))
                        peers, expire = index_entries(value)
                        allocs.extend((row, p) for p in peers)
                        if expire is not None:
                            exps.append((row, expire))
                        if len(rows) >= chunk:
                            _bulk_stage(w, rows, allocs, exps)
                    _bulk_stage(w, rows, allocs, exps)
                    # the last row of each key wins; sorted inserts fill the B-trees' pages in order
                    w.execute("CREATE TEMP TABLE bulk_last AS SELECT max(rowid) AS row FROM bulk GROUP BY key")
                    w.execute("INSERT INTO pins(key, value, skey) SELECT key, value, skey FROM bulk "
                              "WHERE rowid IN (SELECT row FROM bulk_last) ORDER BY key")
                    w.execute("INSERT OR IGNORE INTO allocations(peer, key) SELECT a.peer, b.key FROM bulk_alloc a "
                              "JOIN bulk b ON b.rowid = a.row WHERE a.row IN (SELECT row FROM bulk_last) "
                              "ORDER BY a.peer, b.key")
                    w.execute("INSERT OR IGNORE INTO expiry(expire_at, key) SELECT e.expire_at, b.key FROM bulk_exp e "
                              "JOIN bulk b ON b.rowid = e.row WHERE e.row IN (SELECT row FROM bulk_last) "
                              "ORDER BY e.expire_at, b.key")
                    stored = int(w.execute("SELECT count(*) FROM bulk_last").fetchone()[0])
                    w.execute("COMMIT")
                except BaseException:
                    _rollback(w)
                    raise
                self._changed(None)
            finally:
                for table in ("bulk", "bulk_alloc", "bulk_exp", "bulk_last"):
                    w.execute(f"DROP TABLE IF EXISTS temp.{table}")
            return stored

    def clear(self) -> None:
        """Remove every pin and reset the applied index (``state cleanup`` / fresh Raft)."""
        with self._wlock:
            self._w.execute("BEGIN IMMEDIATE")
            self._w.execute("DELETE FROM pins")
            self._w.execute("DELETE FROM allocations")
            self._w.execute("DELETE FROM expiry")
            self._w.execute("UPDATE meta SET value = 0 WHERE key IN ('applied_index', 'applied_term')")
            self._w.execute("COMMIT")
            self._applied_index = 0
            self._applied_term = 0
            self._changed(None)

    # -- reads (any thread) ------------------------------------------------------------------------------

    def get(self, key: bytes) -> bytes | None:
        with self._rlock:
            row = self._r.execute("SELECT value FROM pins WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def count(self) -> int:
        with self._rlock:
            row = self._r.execute("SELECT count(*) FROM pins").fetchone()
        return int(row[0])

    def page(self, after: bytes | None, limit: int) -> list[tuple[bytes, bytes]]:
        """Up to ``limit`` entries with key > ``after`` in key order (keyset pagination: no long transaction)."""
        rows: list[tuple[bytes, bytes]] = self._keyset_page("key, value", after, limit)
        return rows

    def listing_page(self, after: bytes | None, limit: int) -> list[ListingRow]:
        """:meth:`page` with each pin's stored status key (None: a value that is not a readable pin)."""
        rows: list[ListingRow] = self._keyset_page("key, value, skey", after, limit)
        return rows

    def listing_range(self, after: bytes | None, upto: bytes, limit: int) -> list[ListingRow]:
        """:meth:`listing_page` ending at ``upto`` (included): the pins in ``(after, upto]``, ``limit`` at most."""
        rows: list[ListingRow] = self._keyset_page("key, value, skey", after, limit, upto)
        return rows

    def _keyset_page(self, columns: str, after: bytes | None, limit: int, upto: bytes | None = None) -> list[Any]:
        """``columns`` of up to ``limit`` pins with key > ``after`` (and <= ``upto``), in key order (BLOB
        columns come as bytes already: no copies)."""
        where = [w for w, v in (("key > ?", after), ("key <= ?", upto)) if v is not None]
        args = [v for v in (after, upto) if v is not None]
        sql = f"SELECT {columns} FROM pins {'WHERE ' + ' AND '.join(where) if where else ''} ORDER BY key LIMIT ?"
        with self._rlock:
            return self._r.execute(sql, (*args, limit)).fetchall()

    def allocated_page(self, peer: bytes, after: bytes | None, limit: int, *,
                       skeys: bool = False) -> list[tuple[bytes, bytes]]:
        """Up to ``limit`` pins allocated to ``peer`` (peer-ID multihash bytes) with key > ``after``, in key
        order: an index range scan, whatever the size of the pinset. ``(key, value)``, or with ``skeys``
        ``(key, status key)`` (what a merged listing needs of them)."""
        with self._rlock:
            cur = self._r.execute(
                f"SELECT a.key, p.{'skey' if skeys else 'value'} FROM allocations AS a JOIN pins AS p "
                "ON p.key = a.key WHERE a.peer = ? AND a.key > ? ORDER BY a.key LIMIT ?",
                (peer, after or b"", limit),
            )
            return [(bytes(k), bytes(v)) for k, v in cur.fetchall()]

    def count_allocated(self, peer: bytes) -> int:
        """How many pins list ``peer`` in their allocations (an indexed count)."""
        with self._rlock:
            row = self._r.execute("SELECT count(*) FROM allocations WHERE peer = ?", (peer,)).fetchone()
        return int(row[0])

    def expired_page(
        self, before: int, after: tuple[int, bytes] | None, limit: int
    ) -> list[tuple[int, bytes, bytes]]:
        """Up to ``limit`` ``(expire_at µs, key, value)`` of pins whose expiry is set and < ``before`` (µs since
        1970), in expiry order, after the position ``after``: only the expired part of the index is read."""
        pos = after or (-(1 << 63), b"")
        with self._rlock:
            cur = self._r.execute(
                "SELECT e.expire_at, e.key, p.value FROM expiry AS e JOIN pins AS p ON p.key = e.key "
                "WHERE e.expire_at < ? AND (e.expire_at, e.key) > (?, ?) ORDER BY e.expire_at, e.key LIMIT ?",
                (before, pos[0], pos[1], limit),
            )
            return [(int(t), bytes(k), bytes(v)) for t, k, v in cur.fetchall()]

    # -- snapshots ---------------------------------------------------------------------------------------

    def snapshot_to(
        self,
        dest: Path | str,
        extra: Mapping[str, bytes] | None = None,
        *,
        commit: Callable[[], bool] | None = None,
    ) -> SnapshotInfo:
        """Write a consistent copy of the store to ``dest`` (atomically), adding ``extra`` metadata.

        Runs ``VACUUM INTO`` on its own connection, so the writer keeps applying while the copy is made; the
        copy is one read transaction, hence consistent, and carries its own ``applied_index``. ``commit`` is
        asked just before the copy replaces ``dest``; if it says no, the copy is dropped (SnapshotSuperseded).
        """
        dest = Path(dest)
        tmp = dest.with_name(dest.name + ".snap.tmp")
        for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm"), Path(f"{tmp}-journal")):
            leftover.unlink(missing_ok=True)
        src = _connect(self.path)
        try:
            src.execute("VACUUM INTO ?", (str(tmp),))
        finally:
            src.close()
        copy = _connect(tmp)
        try:
            copy.execute("PRAGMA journal_mode=DELETE")
            copy.execute("BEGIN IMMEDIATE")
            for k, v in (extra or {}).items():
                copy.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (f"x:{k}", v))
            copy.execute("COMMIT")
            info = _snapshot_info(copy, tmp)
        finally:
            copy.close()
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        if commit is not None and not commit():
            tmp.unlink(missing_ok=True)
            raise SnapshotSuperseded(f"a newer snapshot replaced {dest} while this one was being written")
        os.replace(tmp, dest)
        fsync_parent(dest)
        return info

    def restore_from(self, src_path: Path | str) -> SnapshotInfo:
        """Replace the whole content of this store by the snapshot at ``src_path`` (SQLite backup API)."""
        info = read_snapshot_info(src_path)
        src = _connect(src_path, readonly=True)
        try:
            with self._wlock, self._rlock:
                src.backup(self._w)
                self._w.execute("PRAGMA journal_mode=WAL")
                self._w.execute("DELETE FROM meta WHERE key LIKE 'x:%'")
                self._applied_index = info.applied_index
                self._applied_term = info.applied_term
                self._changed(None)
        finally:
            src.close()
        return info

    def apply_many(self, entries: Sequence[tuple[int, int, Sequence[Op]]], *,
                   fsync: bool = True) -> list[list[bytes | None] | None]:
        """Group commit: write several Raft entries in one transaction (one fsync instead of one per entry).

        ``fsync=False``: the caller knows the entries survive a power loss elsewhere (a synced Raft journal,
        replayed above the applied index at start), so the commit need not reach the disk before it returns
        (``synchronous=NORMAL``: a crash may lose the last such commits, never corrupt the database). A store
        opened with ``durable=False`` never syncs its commits.

        Entries at or below the applied index are skipped (None in the result), as ``apply`` does. For each
        entry written, the result holds the value each op's key had just before that op (read inside the same
        transaction), so the tracker can tell a new pin from a changed one without asking IPFS. The applied
        index and term become those of the last entry written. Any error rolls the whole group back.

        Writes go through ``_write_ops``, as ``apply``'s do, so the status keys and indexes are kept the same way.
        """
        with self._wlock:
            w = self._w
            out: list[list[bytes | None] | None] = []
            index_now, term_now = self._applied_index, self._applied_term
            self._set_fsync(fsync and self._durable)
            w.execute("BEGIN IMMEDIATE")
            try:
                # The group's ops are written as one batch (their net effect, indexes included); each entry
                # gets back its slice of the per-op previous values.
                group: list[Op] = []
                sizes: list[int | None] = []
                for index, term, ops in entries:
                    if index and index <= index_now:
                        sizes.append(None)
                        continue
                    group.extend(ops)
                    sizes.append(len(ops))
                    if index:
                        index_now, term_now = index, term
                previous = _write_ops(w, group)
                pos = 0
                for size in sizes:
                    if size is None:
                        out.append(None)
                    else:
                        out.append(previous[pos:pos + size])
                        pos += size
                if index_now != self._applied_index or term_now != self._applied_term:
                    w.execute(
                        "UPDATE meta SET value = CASE key WHEN 'applied_index' THEN ? ELSE ? END "
                        "WHERE key IN ('applied_index', 'applied_term')",
                        (index_now, term_now),
                    )
                w.execute("COMMIT")
            except BaseException:
                _rollback(w)
                raise
            self._applied_index, self._applied_term = index_now, term_now
            if group:
                self._changed([op[1] for op in group])
            return out


def _snapshot_info(conn: sqlite3.Connection, path: Path | str) -> SnapshotInfo:
    meta = _read_meta(conn)
    if "format_version" not in meta:
        raise StateError(f"{path} is not a pincluster state snapshot (no format version)")
    version = _as_int(meta["format_version"], "format_version")
    if version != FORMAT_VERSION:
        raise StateVersionError(Path(path), version, FORMAT_VERSION)
    extra: dict[str, bytes] = {}
    for k, v in meta.items():
        if k.startswith("x:"):
            extra[k[2:]] = bytes(v) if isinstance(v, (bytes, bytearray, memoryview)) else str(v).encode()
    count = int(conn.execute("SELECT count(*) FROM pins").fetchone()[0])
    return SnapshotInfo(
        format_version=version,
        applied_index=_as_int(meta.get("applied_index", 0), "applied_index"),
        applied_term=_as_int(meta.get("applied_term", 0), "applied_term"),
        count=count,
        extra=extra,
    )


def read_snapshot_info(path: Path | str) -> SnapshotInfo:
    """Open a snapshot file read-only and return its metadata; refuses other format versions."""
    if not Path(path).is_file():
        raise StateError(f"snapshot file {path} does not exist")
    try:
        conn = _connect(path, readonly=True)
    except sqlite3.DatabaseError as exc:
        raise StateError(f"cannot open snapshot {path}: {exc}") from exc
    try:
        return _snapshot_info(conn, path)
    except sqlite3.DatabaseError as exc:
        raise StateError(f"snapshot {path} is not a valid state database: {exc}") from exc
    finally:
        conn.close()


def read_format_version(path: Path | str) -> int | None:
    """The format version of the state at ``path``, or None when there is no state there yet."""
    p = Path(path)
    if not p.exists():
        return None
    conn = _connect(p, readonly=True)
    try:
        return _as_int(_read_meta(conn).get("format_version", 0), "format_version")
    finally:
        conn.close()


def upgrade(path: Path | str, migrations: Mapping[int, Callable[[sqlite3.Connection], None]] | None = None) -> int:
    """Bring the state at ``path`` to FORMAT_VERSION by running the migrations in order (``state upgrade``).

    Each step runs in its own transaction together with the version bump, so an interrupted upgrade leaves a
    state of a known version. Returns the version found before upgrading.
    """
    steps = MIGRATIONS if migrations is None else migrations
    p = Path(path)
    conn = _connect(p)
    try:
        found = _as_int(_read_meta(conn).get("format_version", 0), "format_version")
        if found > FORMAT_VERSION:
            raise StateVersionError(p, found, FORMAT_VERSION)
        version = found
        while version < FORMAT_VERSION:
            step = steps.get(version)
            if step is None:
                raise StateVersionError(p, version, FORMAT_VERSION)
            conn.execute("BEGIN IMMEDIATE")
            try:
                step(conn)
                conn.execute("UPDATE meta SET value = ? WHERE key = 'format_version'", (version + 1,))
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
            log.info("upgraded the state in %s from format version %d to %d", p, version, version + 1)
            version += 1
        return found
    finally:
        conn.close()


def _first(row: Any) -> Any:
    return row[0]


async def _merge_pages(
    a: AsyncIterator[list[tuple[bytes, bytes]]], b: AsyncIterator[list[tuple[bytes, bytes]]], size: int
) -> AsyncGenerator[list[tuple[bytes, bytes]], None]:
    """Merge two key-ordered streams of pages into pages of ``size``, a key found in both given once."""

    async def more(it: AsyncIterator[list[tuple[bytes, bytes]]]) -> list[tuple[bytes, bytes]]:
        return await anext(it, [])  # _pages yields no empty page: [] is the end

    out: list[tuple[bytes, bytes]] = []
    xa, xb = await more(a), await more(b)
    i = j = 0
    while xa and xb:
        ka, kb = xa[i][0], xb[j][0]
        if ka < kb:
            out.append(xa[i])
            i += 1
        else:
            out.append(xb[j])
            j += 1
            if ka == kb:
                i += 1
        if len(out) == size:
            yield out
            out = []
        if i == len(xa):
            xa, i = await more(a), 0
        if j == len(xb):
            xb, j = await more(b), 0
    rest, k, it = (xa, i, a) if xa else (xb, j, b)
    while rest:
        out.extend(rest[k:])
        while len(out) >= size:
            yield out[:size]
            out = out[size:]
        rest, k = await more(it), 0
    if out:
        yield out


class SQLiteState:
    """Async ``State`` over a ``SQLiteStore``: reads run in worker threads, never on the event loop."""

    def __init__(self, store: SQLiteStore) -> None:
        self._store = store

    @property
    def store(self) -> SQLiteStore:
        return self._store

    @property
    def format_version(self) -> int:
        return FORMAT_VERSION

    async def get(self, key: bytes) -> bytes | None:
        return await asyncio.to_thread(self._store.get, key)

    async def has(self, key: bytes) -> bool:
        return (await asyncio.to_thread(self._store.get, key)) is not None

    async def count(self) -> int:
        return await asyncio.to_thread(self._store.count)

    @staticmethod
    async def _pages(fetch: Callable[[Any, int], builtins.list[Any]], resume: Callable[[Any], Any],
                     page_size: int) -> AsyncGenerator[builtins.list[Any], None]:
        """Keyset paging shared by the listings: ``fetch(after, n)`` in a worker thread until a short page;
        ``resume(last_row)`` is where the next page starts. The next page is read while the caller handles
        this one (SQLite reads without the GIL), so a listing does not stop at every page to wait for the
        disk; two pages at most are held."""
        if page_size <= 0:
            raise InvalidInput(f"page_size must be positive, got {page_size}")
        ahead: asyncio.Future[builtins.list[Any]] | None = asyncio.ensure_future(
            asyncio.to_thread(fetch, None, page_size))
        try:
            while ahead is not None:
                rows = await ahead
                ahead = None
                if len(rows) == page_size:
                    ahead = asyncio.ensure_future(asyncio.to_thread(fetch, resume(rows[-1]), page_size))
                if rows:
                    yield rows
        finally:
            if ahead is not None:  # the caller stopped early: nobody wants that page
                ahead.cancel()

    async def list(self, *, page_size: int = 1000) -> AsyncIterator[tuple[bytes, bytes]]:
        async for rows in self._pages(self._store.page, _first, page_size):
            for row in rows:
                yield row

    async def list_pages(self, *, page_size: int = 2000) -> AsyncIterator[builtins.list[tuple[bytes, bytes]]]:
        """``list()`` a page at a time (listings handle a page per step; one generator step per row costs
        more than the row's own work on the fast paths)."""
        async for rows in self._pages(self._store.page, _first, page_size):
            yield rows

    async def pins_allocated_to(self, peer: bytes, *, page_size: int = 1000) -> AsyncIterator[tuple[bytes, bytes]]:
        """Stream ``(key, value)`` of the pins allocated to ``peer`` (``PeerID.bytes``), in key order."""
        fetch = functools.partial(self._store.allocated_page, bytes(peer))
        async for rows in self._pages(fetch, _first, page_size):
            for row in rows:
                yield row

    async def listing_pages(self, *, page_size: int = 2000) -> AsyncIterator[builtins.list[ListingRow]]:
        """``list_pages`` with each pin's stored status key (``SQLiteStore.listing_page``). Read on the loop's
        thread, not ahead in a worker: the worker needs the GIL for each row it builds, and gets it only at the
        interpreter's switch interval while the merged listing formats the page before (measured on 100k pins:
        the loop waited 0.1-0.2 s a listing for pages, and reading them itself costs it ~0.12 s). A page of
        2,000 pins is read in ~2 ms."""
        if page_size <= 0:
            raise InvalidInput(f"page_size must be positive, got {page_size}")
        after: bytes | None = None
        while rows := self._store.listing_page(after, page_size):
            yield rows
            if len(rows) < page_size:
                return
            after = rows[-1][0]
            await asyncio.sleep(0)  # others' turn between pages, as a worker's read would give

    async def pins_listed_for(
        self, peer: bytes, *, page_size: int = 2000
    ) -> AsyncIterator[builtins.list[tuple[bytes, bytes]]]:
        """Pages of ``(key, status key)`` (``types.codec.StatusKey``) of the pins ``peer`` holds: allocated to
        it or replicated everywhere, in key order, each once. Two index range scans, merged here: an
        ``IN (…) ORDER BY`` would sort every page."""
        peer = bytes(peer)

        def scan(p: bytes) -> AsyncGenerator[builtins.list[tuple[bytes, bytes]], None]:
            return self._pages(functools.partial(self._store.allocated_page, p, skeys=True), _first, page_size)

        if peer == EVERYWHERE:
            async for rows in scan(peer):
                yield rows
            return
        own, everywhere = scan(peer), scan(EVERYWHERE)
        try:
            async with contextlib.aclosing(_merge_pages(own, everywhere, page_size)) as merged:
                async for rows in merged:
                    yield rows
        finally:  # a caller that stops early: the scans' pages read ahead are dropped
            for it in (own, everywhere):
                await it.aclose()

    async def expired(self, now: datetime, *, page_size: int = 1000) -> AsyncIterator[tuple[bytes, bytes]]:
        """Stream ``(key, value)`` of the pins whose ``expire_at`` is set and before ``now``, oldest first."""
        fetch = functools.partial(self._store.expired_page, to_micros(now))
        async for rows in self._pages(fetch, lambda row: (row[0], row[1]), page_size):
            for _t, key, value in rows:
                yield key, value

    async def put(self, key: bytes, value: bytes) -> None:
        await asyncio.to_thread(self._store.apply, 0, 0, [(OP_PUT, key, value)])

    async def delete(self, key: bytes) -> None:
        await asyncio.to_thread(self._store.apply, 0, 0, [(OP_DELETE, key, None)])

    async def put_many(self, items: Sequence[tuple[bytes, bytes]]) -> int:
        return await asyncio.to_thread(self._store.put_many, items)
