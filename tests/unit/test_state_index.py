"""State format 2: the ``allocations`` and ``expiry`` indexes, kept by every write and built by MIGRATIONS[1].

Each check compares the index with what a full scan of the pinset says (the v1 way), on hand-made pins, on a
database migrated from format 1, and on the real format-1 fixture written by the previous release.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pincluster.state import store as store_mod
from pincluster.state.store import (
    FORMAT_VERSION,
    OP_DELETE,
    OP_PUT,
    SQLiteState,
    SQLiteStore,
    StateError,
    index_entries,
    read_format_version,
    read_snapshot_info,
    upgrade,
)
from pincluster.types.cid import CID
from pincluster.types.codec import pin_from_state, pin_to_state
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


def pin(i: int, allocs: tuple[PeerID, ...] = (), expire: datetime | None = None) -> Pin:
    opts = PinOptions(name=f"p{i}", expire_at=expire) if expire else PinOptions(name=f"p{i}")
    return Pin.with_options(cid(i), opts).replace(allocations=allocs)


def put(p: Pin) -> tuple[int, bytes, bytes]:
    return (OP_PUT, p.cid.bytes, pin_to_state(p))


def scan_allocated(s: SQLiteStore, peer: PeerID) -> list[bytes]:
    return [k for k, v in s.page(None, 1_000_000) if peer in pin_from_state(v).allocations]


def scan_expired(s: SQLiteStore, now: datetime) -> set[bytes]:
    return {k for k, v in s.page(None, 1_000_000) if pin_from_state(v).expired_at(now)}


def indexed_allocated(s: SQLiteStore, peer: PeerID) -> list[bytes]:
    return [k for k, _v in s.allocated_page(peer.bytes, None, 1_000_000)]


def indexed_expired(s: SQLiteStore, now: datetime) -> set[bytes]:
    return {k for _t, k, _v in s.expired_page(store_mod.to_micros(now), None, 1_000_000)}


def check_index(s: SQLiteStore) -> None:
    for peer in PEERS:
        assert indexed_allocated(s, peer) == scan_allocated(s, peer)
        assert s.count_allocated(peer.bytes) == len(scan_allocated(s, peer))
    for now in (NOW - timedelta(days=400), NOW, NOW + timedelta(days=4000)):
        assert indexed_expired(s, now) == scan_expired(s, now)


def varied(n: int) -> list[Pin]:
    out = []
    for i in range(n):
        allocs = tuple(PEERS[j] for j in range(3) if (i >> j) & 1)
        expire = NOW + timedelta(days=(i % 7) - 3) if i % 3 == 0 else None
        out.append(pin(i, allocs, expire))
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
              (cid(9).bytes, pin_to_state(pin(9, (), None)))]
    one_by_one = SQLiteStore(tmp_path / "a.db")
    one_by_one.put_many(items)
    sorted_load = SQLiteStore(tmp_path / "b.db")
    assert sorted_load.bulk_load(iter(items), chunk=7) == 200  # 2 of the 200 given twice
    check_index(sorted_load)
    tables = ("SELECT key, value FROM pins ORDER BY key", "SELECT peer, key FROM allocations ORDER BY peer, key",
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


def _v1_database(path: Path, pins: list[Pin]) -> None:
    """A database exactly as format 1 wrote it: meta + pins, no index tables."""
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID")
    db.execute("CREATE TABLE pins (key BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID")
    db.execute("INSERT INTO meta VALUES ('format_version', 1), ('applied_index', 9), ('applied_term', 2)")
    db.executemany("INSERT INTO pins VALUES (?, ?)", [(p.cid.bytes, pin_to_state(p)) for p in pins])
    db.commit()
    db.close()


def test_migration_1_to_2_builds_the_indexes(tmp_path: Path) -> None:
    assert FORMAT_VERSION == 2 and 1 in store_mod.MIGRATIONS
    _v1_database(tmp_path / "s.db", varied(40))
    with pytest.raises(store_mod.StateVersionError, match=r"format version 1.*format version 2"):
        SQLiteStore(tmp_path / "s.db")
    assert upgrade(tmp_path / "s.db") == 1
    assert read_format_version(tmp_path / "s.db") == 2
    s = SQLiteStore(tmp_path / "s.db")
    assert s.count() == 40 and s.applied_index == 9
    check_index(s)
    s.apply(10, 2, [put(pin(100, (PEERS[0],)))])  # and it keeps them from there on
    check_index(s)
    # a snapshot carries the indexes: restoring it elsewhere gives the same answers
    s.snapshot_to(tmp_path / "snap.db", {"raft_last": b"x"})
    assert read_snapshot_info(tmp_path / "snap.db").format_version == 2
    other = SQLiteStore(tmp_path / "other.db")
    other.restore_from(tmp_path / "snap.db")
    check_index(other)
    assert indexed_allocated(other, PEERS[0]) == indexed_allocated(s, PEERS[0])
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
    s.close()


def test_the_sqlite_state_is_an_indexed_state(tmp_path: Path) -> None:
    from pincluster.state.interface import IndexedState, State

    s = SQLiteStore(tmp_path / "s.db")
    st = SQLiteState(s)
    assert isinstance(st, IndexedState) and isinstance(st, State)
    s.close()
