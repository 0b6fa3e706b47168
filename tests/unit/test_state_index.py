"""State formats 2 and 3: the ``allocations`` and ``expiry`` indexes (format 2), each pin's status key ``skey`` and
the EVERYWHERE rows of pins replicated on every peer (format 3), kept by every write and built by MIGRATIONS[1]
and MIGRATIONS[2].

Each check compares what is stored with what a full scan of the pinset says (the v1 way), on hand-made pins, on
databases migrated from formats 1 and 2, and on the real format-1 fixture written by an earlier release.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from pincluster.errors import InvalidInput, StateError
from pincluster.state import store as store_mod
from pincluster.state.store import (
    EVERYWHERE,
    FORMAT_VERSION,
    OP_DELETE,
    OP_PUT,
    SQLiteState,
    SQLiteStore,
    index_entries,
    read_format_version,
    read_snapshot_info,
    upgrade,
)
from pincluster.types.cid import CID
from pincluster.types.codec import decode_status_key, pin_from_state, pin_to_state, status_key
from pincluster.types.models import Pin, PinOptions
from pincluster.types.peer import PeerID

FIXTURE_PEER = Path(__file__).resolve().parents[1] / "data" / "state-v1" / "peer"
FIXTURE_RAFT = FIXTURE_PEER / "raft"
#: The fixture's own peer first (its pins are allocated to it), then two others.
PEERS = [
    PeerID.decode(p)
    for p in (
        json.loads((FIXTURE_PEER / "identity.json").read_text())["id"],
        "QmXZrtE5jQwXNqCJMfHUTQkvhQ4ZAnqMnmzFMJfLewuabc",
        "12D3KooWMDMdU7iHXzDoztw4ET3zQQPexx4UeCX5ANgbrvpQSRtM",
    )
]
NOW = datetime(2030, 6, 1, tzinfo=UTC)


def cid(i: int) -> CID:
    return CID.v0(hashlib.sha256(f"pin {i}".encode()).digest())


def pin(i: int, allocs: tuple[PeerID, ...] = (), expire: datetime | None = None, rf: tuple[int, int] = (0, 0)) -> Pin:
    opts = PinOptions(name=f"p{i}", replication_factor_min=rf[0], replication_factor_max=rf[1])
    if expire:
        opts = msgspec.structs.replace(opts, expire_at=expire)
    return Pin.with_options(cid(i), opts).replace(allocations=allocs)


def everywhere(i: int, allocs: tuple[PeerID, ...] = ()) -> Pin:
    return pin(i, allocs, rf=(-1, -1))


def put(p: Pin) -> tuple[int, bytes, bytes]:
    return (OP_PUT, p.cid.bytes, pin_to_state(p))


def scan_allocated(s: SQLiteStore, peer: PeerID) -> list[bytes]:
    return [k for k, v in s.page(None, 1_000_000) if peer in pin_from_state(v).allocations]


def scan_expired(s: SQLiteStore, now: datetime) -> set[bytes]:
    return {k for k, v in s.page(None, 1_000_000) if pin_from_state(v).expired_at(now)}


def scan_everywhere(s: SQLiteStore) -> list[bytes]:
    out = []
    for k, v in s.page(None, 1_000_000):
        p = pin_from_state(v)
        if p.replication_factor_min == -1 and p.replication_factor_max == -1:
            out.append(k)
    return out


def indexed_allocated(s: SQLiteStore, peer: PeerID) -> list[bytes]:
    return [k for k, _v in s.allocated_page(peer.bytes, None, 1_000_000)]


def indexed_everywhere(s: SQLiteStore) -> list[bytes]:
    return [k for k, _v in s.allocated_page(EVERYWHERE, None, 1_000_000)]


def check_status_keys(s: SQLiteStore) -> None:
    """Every row's ``skey`` is what ``status_key`` derives from its value (None for a value that is no pin)."""
    rows = s._w.execute("SELECT key, value, skey FROM pins").fetchall()
    assert [(k, sk) for k, v, sk in rows] == [(k, status_key(v)) for k, v, _sk in rows]


def indexed_expired(s: SQLiteStore, now: datetime) -> set[bytes]:
    return {k for _t, k, _v in s.expired_page(store_mod.to_micros(now), None, 1_000_000)}


def check_index(s: SQLiteStore) -> None:
    for peer in PEERS:
        assert indexed_allocated(s, peer) == scan_allocated(s, peer)
        assert s.count_allocated(peer.bytes) == len(scan_allocated(s, peer))
    assert indexed_everywhere(s) == scan_everywhere(s)
    assert s.count_allocated(EVERYWHERE) == len(scan_everywhere(s))
    check_status_keys(s)
    for now in (NOW - timedelta(days=400), NOW, NOW + timedelta(days=4000)):
        assert indexed_expired(s, now) == scan_expired(s, now)


def varied(n: int) -> list[Pin]:
    """Pins with 0-3 allocations, some expiring; every fifth replicated everywhere (some of those with
    allocations too), and some with only one factor at -1 (not everywhere)."""
    out = []
    for i in range(n):
        allocs = tuple(PEERS[j] for j in range(3) if (i >> j) & 1)
        expire = NOW + timedelta(days=(i % 7) - 3) if i % 3 == 0 else None
        rf = {0: (-1, -1), 1: (-1, 3), 2: (2, -1)}.get(i % 5, (0, 0))
        out.append(pin(i, allocs, expire, rf))
    return out


def test_apply_keeps_both_indexes(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path / "s.db")
    pins = varied(60)
    s.apply(1, 1, [put(p) for p in pins])
    check_index(s)
    assert indexed_allocated(s, PEERS[0]) == sorted(p.cid.bytes for p in pins if PEERS[0] in p.allocations)
    # replace: new allocations and a new expiry; the old entries go away
    s.apply(2, 1, [put(pin(1, (PEERS[2],), NOW - timedelta(days=1))), put(pin(3, ()))])
    check_index(s)
    assert cid(1).bytes in indexed_expired(s, NOW) and cid(1).bytes not in indexed_allocated(s, PEERS[0])
    assert cid(3).bytes not in indexed_allocated(s, PEERS[1])
    # delete (and deleting a missing key) clears the index rows
    s.apply(3, 1, [(OP_DELETE, cid(7).bytes, None), (OP_DELETE, b"missing", None)])
    check_index(s)
    assert all(cid(7).bytes not in indexed_allocated(s, p) for p in PEERS)
    # the same value again changes nothing
    s.apply(4, 1, [put(pin(5, (PEERS[0], PEERS[2])))] * 2)
    check_index(s)
    s.clear()
    assert s.count_allocated(PEERS[0].bytes) == 0 and indexed_expired(s, NOW + timedelta(days=9999)) == set()
    s.close()


def test_bulk_load_gives_what_put_many_gives(tmp_path: Path) -> None:
    """``state import`` loads a new store sorted by key (``bulk_load``); the tables must hold exactly what the
    key-by-key path gives for the same input, the last value of a repeated key included."""
    pins = varied(200)
    items = [(p.cid.bytes, pin_to_state(p)) for p in pins]
    items += [(cid(4).bytes, pin_to_state(pin(4, (PEERS[2],), NOW))),  # a repeat: new allocation and expiry
              (cid(9).bytes, pin_to_state(pin(9, (), None))),
              (cid(5).bytes, pin_to_state(pin(5))),  # was replicated everywhere, no longer
              (cid(6).bytes, pin_to_state(everywhere(6)))]  # now replicated everywhere
    one_by_one = SQLiteStore(tmp_path / "a.db")
    one_by_one.put_many(items)
    sorted_load = SQLiteStore(tmp_path / "b.db")
    assert sorted_load.bulk_load(iter(items), chunk=7) == 200  # 4 of the 200 given twice
    check_index(sorted_load)
    assert cid(6).bytes in indexed_everywhere(sorted_load) and cid(5).bytes not in indexed_everywhere(sorted_load)
    assert len(indexed_everywhere(sorted_load)) == 40
    tables = ("SELECT key, value, skey FROM pins ORDER BY key",
              "SELECT peer, key FROM allocations ORDER BY peer, key",
              "SELECT expire_at, key FROM expiry ORDER BY expire_at, key")
    for q in tables:
        assert sorted_load._w.execute(q).fetchall() == one_by_one._w.execute(q).fetchall(), q
    assert cid(4).bytes in indexed_allocated(sorted_load, PEERS[2]) and cid(4).bytes in indexed_expired(
        sorted_load, NOW + timedelta(days=1))
    with pytest.raises(StateError, match="empty"):
        sorted_load.bulk_load(iter(items))

    def failing() -> object:
        yield items[0]
        raise ValueError("bad input")

    fresh = SQLiteStore(tmp_path / "c.db")
    with pytest.raises(ValueError):
        fresh.bulk_load(failing())  # type: ignore[arg-type]
    assert fresh.count() == 0 and fresh.bulk_load(iter(items[:3])) == 3
    for s in (one_by_one, sorted_load, fresh):
        s.close()


def test_a_failed_batch_leaves_no_index_rows(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path / "s.db")
    with pytest.raises(Exception, match="unknown state operation"):
        s.apply(1, 1, [put(pin(1, (PEERS[0],))), (99, b"x", b"y")])
    assert s.count() == 0 and s.count_allocated(PEERS[0].bytes) == 0
    s.close()


def test_values_that_are_not_pins_are_stored_not_indexed(tmp_path: Path) -> None:
    assert index_entries(b"\x01") == ([], None)
    assert index_entries(b"not msgpack \xc1") == ([], None)
    s = SQLiteStore(tmp_path / "s.db")
    s.apply(1, 1, [(OP_PUT, b"k", b"opaque"), (OP_DELETE, b"k", None)])
    s.apply(2, 1, [(OP_PUT, b"k", b"opaque")])
    assert s.get(b"k") == b"opaque"
    assert s.listing_page(None, 10) == [(b"k", b"opaque", None)]  # no status key: the listing fails on it
    assert s._w.execute("SELECT count(*) FROM allocations").fetchone()[0] == 0
    s.close()


def test_zero_and_epoch_expiry_mean_never(tmp_path: Path) -> None:
    assert index_entries(pin_to_state(pin(1, expire=datetime(1970, 1, 1, tzinfo=UTC))))[1] is None
    assert index_entries(pin_to_state(pin(1)))[1] is None
    assert index_entries(pin_to_state(pin(1, expire=NOW)))[1] == store_mod.to_micros(NOW)


def test_async_streams_page_through_the_index(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path / "s.db")
    pins = varied(50)
    s.apply(1, 1, [put(p) for p in pins])
    st = SQLiteState(s)

    async def collect() -> tuple[list[bytes], list[bytes]]:
        allocated = [k async for k, _v in st.pins_allocated_to(PEERS[1].bytes, page_size=3)]
        expired = [k async for k, _v in st.expired(NOW, page_size=2)]
        return allocated, expired

    allocated, expired = asyncio.run(collect())
    assert allocated == scan_allocated(s, PEERS[1])
    assert set(expired) == scan_expired(s, NOW) and len(expired) == len(set(expired))
    when = [pin_from_state(s.get(k) or b"").expire_at for k in expired]
    assert when == sorted(when)  # oldest first
    s.close()


def dump(path: Path) -> dict[str, list[Any]]:
    """What a store holds, table by table (the applied index aside), and its schema."""
    db = sqlite3.connect(path)
    try:
        return {q: db.execute(q).fetchall() for q in (
            "SELECT name, sql FROM sqlite_master ORDER BY name",
            "SELECT value FROM meta WHERE key = 'format_version'",
            "SELECT * FROM pins ORDER BY key",
            "SELECT peer, key FROM allocations ORDER BY peer, key",
            "SELECT expire_at, key FROM expiry ORDER BY expire_at, key",
        )}
    finally:
        db.close()


def _v1_database(path: Path, pins: list[Pin]) -> None:
    """A database exactly as format 1 wrote it: meta + pins, no index tables."""
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID")
    db.execute("CREATE TABLE pins (key BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID")
    db.execute("INSERT INTO meta VALUES ('format_version', 1), ('applied_index', 9), ('applied_term', 2)")
    db.executemany("INSERT INTO pins VALUES (?, ?)", [(p.cid.bytes, pin_to_state(p)) for p in pins])
    db.commit()
    db.close()


def test_upgrade_from_format_1_runs_both_migrations(tmp_path: Path) -> None:
    assert FORMAT_VERSION == 3 and 1 in store_mod.MIGRATIONS and 2 in store_mod.MIGRATIONS
    pins = varied(40)
    _v1_database(tmp_path / "s.db", pins)
    with pytest.raises(store_mod.StateVersionError, match=r"format version 1.*format version 3"):
        SQLiteStore(tmp_path / "s.db")
    assert upgrade(tmp_path / "s.db") == 1
    assert read_format_version(tmp_path / "s.db") == 3
    fresh = SQLiteStore(tmp_path / "fresh.db")
    fresh.put_many([(p.cid.bytes, pin_to_state(p)) for p in pins])
    assert dump(tmp_path / "s.db") == dump(tmp_path / "fresh.db")
    fresh.close()
    s = SQLiteStore(tmp_path / "s.db")
    assert s.count() == 40 and s.applied_index == 9
    check_index(s)
    s.apply(10, 2, [put(pin(100, (PEERS[0],)))])  # and it keeps them from there on
    check_index(s)
    # a snapshot carries the indexes: restoring it elsewhere gives the same answers
    s.snapshot_to(tmp_path / "snap.db", {"raft_last": b"x"})
    assert read_snapshot_info(tmp_path / "snap.db").format_version == 3
    other = SQLiteStore(tmp_path / "other.db")
    other.apply(1, 1, [put(pin(200, (PEERS[0],))), put(everywhere(201))])  # replaced whole by the restore
    other.restore_from(tmp_path / "snap.db")
    check_index(other)
    assert indexed_allocated(other, PEERS[0]) == indexed_allocated(s, PEERS[0])
    assert indexed_everywhere(other) == indexed_everywhere(s) != []
    assert other.listing_page(None, 1000) == s.listing_page(None, 1000)
    other.close()
    s.close()


def test_migration_failure_rolls_back_to_version_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _v1_database(tmp_path / "s.db", varied(5))

    def broken(conn: sqlite3.Connection) -> None:
        store_mod._migrate_1_to_2(conn)
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        upgrade(tmp_path / "s.db", {1: broken})
    assert read_format_version(tmp_path / "s.db") == 1
    db = sqlite3.connect(tmp_path / "s.db")
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    db.close()
    assert tables == {"meta", "pins"}


@pytest.mark.parametrize("name", ["state.sqlite", "snapshot.sqlite"])
def test_migrating_the_real_v1_fixture(tmp_path: Path, name: str) -> None:
    """The databases the format-1 release wrote (tests/data/state-v1) migrate, and the index agrees."""
    path = tmp_path / name
    shutil.copy(FIXTURE_RAFT / name, path)
    assert read_format_version(path) == 1
    upgrade(path)
    s = SQLiteStore(path)
    try:
        assert s.count() > 100
        check_index(s)
        assert s.count_allocated(PEERS[0].bytes) > 0  # the fixture peer holds allocated pins
        far = datetime(2040, 1, 1, tzinfo=UTC)
        assert indexed_expired(s, far) == scan_expired(s, far) != set()
    finally:
        s.close()


def test_group_commit_keeps_the_indexes_and_reports_previous_values(tmp_path: Path) -> None:
    """``apply_many`` (the Raft group commit) writes the net effect of its entries, indexes included."""
    s = SQLiteStore(tmp_path / "s.db")
    a1, a2, b = pin(1, (PEERS[0],), NOW), pin(1, (PEERS[1],)), pin(2, (PEERS[0], PEERS[2]), NOW)
    res = s.apply_many([
        (1, 1, [put(a1), put(b)]),
        (2, 1, [put(a2), (OP_DELETE, b.cid.bytes, None), put(b)]),  # b deleted then put back in one group
        (3, 1, [(OP_DELETE, cid(9).bytes, None)]),
    ])
    assert res == [[None, None], [pin_to_state(a1), pin_to_state(b), None], [None]]
    check_index(s)
    assert indexed_allocated(s, PEERS[0]) == [b.cid.bytes]
    assert indexed_allocated(s, PEERS[1]) == [a2.cid.bytes]
    assert indexed_expired(s, NOW + timedelta(seconds=1)) == {b.cid.bytes}
    assert s.apply_many([(2, 1, [(OP_DELETE, b.cid.bytes, None)])]) == [None]  # replayed: skipped
    assert indexed_allocated(s, PEERS[2]) == [b.cid.bytes]
    # to and from "everywhere" within one group; the status keys follow the last value
    s.apply_many([(4, 1, [put(everywhere(1)), put(everywhere(3))]), (5, 1, [put(pin(3, (PEERS[1],)))])])
    check_index(s)
    assert indexed_everywhere(s) == [a2.cid.bytes] and cid(3).bytes in indexed_allocated(s, PEERS[1])
    s.close()


def test_the_sqlite_state_is_an_indexed_state(tmp_path: Path) -> None:
    from pincluster.state.interface import IndexedState, State

    s = SQLiteStore(tmp_path / "s.db")
    st = SQLiteState(s)
    assert isinstance(st, IndexedState) and isinstance(st, State)
    s.close()


def _v2_database(path: Path, items: list[tuple[bytes, bytes]]) -> None:
    """A database exactly as format 2 wrote it: no ``skey`` column, no EVERYWHERE rows."""
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID")
    db.execute("CREATE TABLE pins (key BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID")
    db.execute("CREATE TABLE allocations (peer BLOB NOT NULL, key BLOB NOT NULL, PRIMARY KEY (peer, key)) "
               "WITHOUT ROWID")
    db.execute("CREATE TABLE expiry (expire_at INTEGER NOT NULL, key BLOB NOT NULL, PRIMARY KEY (expire_at, key)) "
               "WITHOUT ROWID")
    db.execute("INSERT INTO meta VALUES ('format_version', 2), ('applied_index', 9), ('applied_term', 2)")
    db.executemany("INSERT INTO pins VALUES (?, ?)", items)
    for key, value in items:
        try:
            p = pin_from_state(value)
        except Exception:
            continue  # not a pin: stored, not indexed
        db.executemany("INSERT INTO allocations VALUES (?, ?)", [(a.bytes, key) for a in p.allocations])
        if p.expired_at(datetime(9999, 1, 1, tzinfo=UTC)):
            db.execute("INSERT INTO expiry VALUES (?, ?)", (store_mod.to_micros(p.expire_at), key))
    db.commit()
    db.close()


def test_migration_2_to_3_gives_what_a_fresh_store_holds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MIGRATIONS[2] adds the ``skey`` column (ALTER TABLE on a WITHOUT ROWID table), fills every key and adds
    the EVERYWHERE rows, a page at a time: the result is what format 3 writes for the same pins."""
    monkeypatch.setattr(store_mod, "_MIGRATE_PAGE", 7)  # many pages
    items = [(p.cid.bytes, pin_to_state(p)) for p in varied(60)] + [(b"opaque", b"not a pin")]
    _v2_database(tmp_path / "s.db", items)
    assert len(dump(tmp_path / "s.db")["SELECT peer, key FROM allocations ORDER BY peer, key"]) > 0
    with pytest.raises(store_mod.StateVersionError, match=r"format version 2.*format version 3"):
        SQLiteStore(tmp_path / "s.db")
    assert upgrade(tmp_path / "s.db") == 2
    fresh = SQLiteStore(tmp_path / "fresh.db")
    fresh.put_many(items)
    fresh.close()
    migrated, written = dump(tmp_path / "s.db"), dump(tmp_path / "fresh.db")
    assert migrated == written
    heads = migrated["SELECT * FROM pins ORDER BY key"]
    assert sum(sk is None for _k, _v, sk in heads) == 1  # the opaque value only
    s = SQLiteStore(tmp_path / "s.db")
    assert s.applied_index == 9 and len(indexed_everywhere(s)) == 12
    check_status_keys(s)
    s.close()


def test_migration_2_to_3_failure_rolls_back_to_version_2(tmp_path: Path) -> None:
    _v2_database(tmp_path / "s.db", [(p.cid.bytes, pin_to_state(p)) for p in varied(5)])
    before = dump(tmp_path / "s.db")

    def broken(conn: sqlite3.Connection) -> None:
        store_mod._migrate_2_to_3(conn)
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        upgrade(tmp_path / "s.db", {2: broken})
    assert read_format_version(tmp_path / "s.db") == 2
    db = sqlite3.connect(tmp_path / "s.db")
    columns = [r[1] for r in db.execute("PRAGMA table_info(pins)")]
    db.close()
    assert columns == ["key", "value"]
    assert upgrade(tmp_path / "s.db") == 2 and dump(tmp_path / "s.db") != before  # and it runs again


def test_index_entries_marks_pins_replicated_everywhere() -> None:
    assert index_entries(pin_to_state(everywhere(1))) == ([EVERYWHERE], None)
    assert index_entries(pin_to_state(everywhere(1, (PEERS[1],)))) == ([PEERS[1].bytes, EVERYWHERE], None)
    for rf in ((-1, 3), (2, -1), (0, 0)):
        assert index_entries(pin_to_state(pin(1, rf=rf))) == ([], None)
    c = cid(1).bytes
    # stored arrays stop after their last non-default field: a missing rf_max is 0
    assert index_entries(msgspec.msgpack.encode([1, c, 2, -1, None, -1])) == ([], None)
    assert index_entries(msgspec.msgpack.encode([1, c, 2, -1, None, -1, -1])) == ([EVERYWHERE], None)
    assert index_entries(msgspec.msgpack.encode([1, c, 2, -1, None, "x", -1])) == ([], None)  # not a pin
    assert index_entries(msgspec.msgpack.encode([2, c, 2, -1, None, -1, -1])) == ([], None)  # another encoding


def test_every_write_keeps_status_keys_and_everywhere_rows(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path / "s.db")
    s.apply(1, 1, [put(pin(1, (PEERS[0],))), put(everywhere(2)), put(everywhere(3, (PEERS[1],)))])
    check_index(s)
    assert indexed_everywhere(s) == sorted([cid(2).bytes, cid(3).bytes])
    # rf to -1 and back; a pin whose replication changes gets a new status key
    s.apply(2, 1, [put(everywhere(1)), put(pin(2, (PEERS[2],))), put(everywhere(3).replace(name="renamed"))])
    check_index(s)
    assert indexed_everywhere(s) == sorted([cid(1).bytes, cid(3).bytes])
    assert indexed_allocated(s, PEERS[0]) == [] and indexed_allocated(s, PEERS[1]) == []
    skey = dict((k, sk) for k, _v, sk in s.listing_page(None, 10))[cid(1).bytes]
    assert skey is not None and decode_status_key(skey).rf_min == -1
    st = SQLiteState(s)
    asyncio.run(st.delete(cid(1).bytes))
    asyncio.run(st.put(cid(4).bytes, pin_to_state(everywhere(4))))
    items = [(p.cid.bytes, pin_to_state(p)) for p in (everywhere(5), pin(3))]
    assert asyncio.run(st.put_many(items)) == 2
    check_index(s)
    assert indexed_everywhere(s) == sorted([cid(4).bytes, cid(5).bytes])
    s.apply(3, 1, [(OP_DELETE, cid(4).bytes, None)])
    check_index(s)
    assert indexed_everywhere(s) == [cid(5).bytes]
    s.clear()
    assert s.count_allocated(EVERYWHERE) == 0 and s.listing_page(None, 10) == []
    s.close()


def test_listing_page_pages_with_status_keys(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path / "s.db")
    pins = varied(23)
    s.apply(1, 1, [put(p) for p in pins])
    got: list[tuple[bytes, bytes, bytes | None]] = []
    after: bytes | None = None
    while page := s.listing_page(after, 5):
        assert len(page) <= 5
        got += page
        after = page[-1][0]
    assert [(k, v) for k, v, _sk in got] == s.page(None, 100)
    assert all(sk == status_key(v) and sk is not None for _k, v, sk in got)
    assert s.listing_page(got[-1][0], 5) == []

    async def pages(size: int) -> list[list[tuple[bytes, bytes, bytes | None]]]:
        return [page async for page in SQLiteState(s).listing_pages(page_size=size)]

    assert [len(p) for p in asyncio.run(pages(5))] == [5, 5, 5, 5, 3]
    assert [row for p in asyncio.run(pages(23)) for row in p] == got
    s.close()


def _listed(st: SQLiteState, peer: bytes, size: int) -> list[list[tuple[bytes, bytes]]]:
    async def run() -> list[list[tuple[bytes, bytes]]]:
        return [page async for page in st.pins_listed_for(peer, page_size=size)]

    return asyncio.run(run())


def test_pins_listed_for_merges_own_and_everywhere_pins(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path / "s.db")
    st = SQLiteState(s)
    assert _listed(st, PEERS[0].bytes, 3) == []  # an empty pinset yields nothing
    pins = varied(80) + [everywhere(i, (PEERS[0],)) for i in range(100, 110)]  # both rows for these
    s.apply(1, 1, [put(p) for p in pins])
    everyone = {p.cid.bytes for p in pins if p.replication_factor_min == p.replication_factor_max == -1}
    for peer in PEERS:
        want = sorted((p.cid.bytes, status_key(pin_to_state(p))) for p in pins
                      if peer in p.allocations or p.cid.bytes in everyone)
        both = [k for k, _v in want if k in everyone and k in indexed_allocated(s, peer)]
        assert both  # some keys are on both scans
        for size in (1, 2, 3, 7, 50, len(want), len(want) + 1, 10_000):
            pages = _listed(st, peer.bytes, size)
            assert [row for page in pages for row in page] == want, size
            assert all(len(page) == size for page in pages[:-1]) and 0 < len(pages[-1]) <= size, size
    # a peer holding nothing of its own gets the everywhere pins; EVERYWHERE itself, those alone
    nobody = PeerID.decode("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N").bytes
    want_everywhere = sorted((k, status_key(s.get(k) or b"")) for k in everyone)
    for who in (nobody, EVERYWHERE):
        assert [row for page in _listed(st, who, 4) for row in page] == want_everywhere
    with pytest.raises(InvalidInput):
        _listed(st, nobody, 0)
    s.close()


def test_pins_listed_for_stops_early(tmp_path: Path) -> None:
    """A caller that stops after the first page leaves no scan running (each page source is closed)."""
    s = SQLiteStore(tmp_path / "s.db")
    s.apply(1, 1, [put(p) for p in varied(60)])
    st = SQLiteState(s)

    async def first() -> list[tuple[bytes, bytes]]:
        async for page in st.pins_listed_for(PEERS[0].bytes, page_size=4):
            return page
        return []

    page = asyncio.run(first())
    assert len(page) == 4 and [k for k, _v in page] == sorted(k for k, _v in page)
    s.close()
