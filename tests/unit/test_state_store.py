"""SQLite pinset store: ordering, idempotent apply, snapshots, format version and migrations."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from pincluster.errors import StateError
from pincluster.state import store as store_mod
from pincluster.state.interface import State
from pincluster.state.store import (
    FORMAT_VERSION,
    OP_DELETE,
    OP_PUT,
    SQLiteState,
    SQLiteStore,
    StateVersionError,
    read_format_version,
    read_snapshot_info,
    upgrade,
)


def test_put_get_delete_and_ordered_streaming(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path / "s.db")
    keys = [bytes([b]) * 3 for b in (9, 1, 5, 200, 3)]
    assert s.apply(1, 1, [(OP_PUT, k, b"v" + k) for k in keys])
    assert s.get(keys[0]) == b"v" + keys[0]
    assert s.count() == 5
    assert [k for k, _ in s.page(None, 10)] == sorted(keys)
    assert [k for k, _ in s.page(sorted(keys)[1], 2)] == sorted(keys)[2:4]
    assert s.apply(2, 1, [(OP_DELETE, keys[0], None), (OP_DELETE, b"missing", None)])
    assert s.get(keys[0]) is None and s.count() == 4
    s.close()


def test_apply_is_idempotent_by_raft_index(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path / "s.db")
    assert s.apply(5, 2, [(OP_PUT, b"a", b"1")])
    assert not s.apply(5, 2, [(OP_PUT, b"a", b"2")])  # re-applied entry: skipped
    assert not s.apply(3, 2, [(OP_DELETE, b"a", None)])  # older entry: skipped
    assert s.get(b"a") == b"1" and s.applied_index == 5
    s.close()
    s2 = SQLiteStore(tmp_path / "s.db")  # the applied index survives a restart
    assert s2.applied_index == 5 and s2.applied_term == 2
    s2.close()


def test_failed_batch_leaves_no_partial_write(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path / "s.db")
    with pytest.raises(ValueError):
        s.apply(1, 1, [(OP_PUT, b"a", b"1"), (99, b"b", b"2")])
    assert s.get(b"a") is None and s.applied_index == 0
    s.close()


async def test_async_state_streams_in_pages(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path / "s.db")
    s.apply(1, 1, [(OP_PUT, i.to_bytes(4, "big"), b"x") for i in range(2500)])
    st = SQLiteState(s)
    assert isinstance(st, State)
    got = [k async for k, _ in st.list(page_size=1000)]
    assert got == [i.to_bytes(4, "big") for i in range(2500)]
    assert await st.count() == 2500 and await st.has((7).to_bytes(4, "big"))
    await st.delete((7).to_bytes(4, "big"))
    assert not await st.has((7).to_bytes(4, "big"))
    s.close()


async def test_pages_read_one_page_ahead_and_no_more(tmp_path: Path) -> None:
    """A listing reads the next page while its caller handles the current one: never more than one page
    ahead, every page exactly once in order, and nothing more once the caller closes it."""
    s = SQLiteStore(tmp_path / "s.db")
    s.apply(1, 1, [(OP_PUT, i.to_bytes(4, "big"), b"x") for i in range(2500)])
    st = SQLiteState(s)
    fetched: list[bytes | None] = []
    real_page = s.page

    def page(after: bytes | None, limit: int) -> list[tuple[bytes, bytes]]:
        fetched.append(after)
        return real_page(after, limit)

    async def fetches(n: int) -> int:
        """``len(fetched)`` once it reaches ``n`` (a worker thread reads), or after 5 s."""
        for _ in range(500):
            if len(fetched) >= n:
                break
            await asyncio.sleep(0.01)
        return len(fetched)

    s.page = page  # type: ignore[method-assign]
    seen: list[int] = []
    async for rows in st.list_pages(page_size=1000):
        handled = len(seen) // 1000  # pages handled before this one
        if len(rows) == 1000:  # a full page: the next one is read meanwhile
            assert await fetches(handled + 2) == handled + 2
        seen.extend(int.from_bytes(k, "big") for k, _ in rows)
    assert seen == list(range(2500)) and len(fetched) == 3
    fetched.clear()
    pages = st.list_pages(page_size=1000)
    await anext(pages)
    assert await fetches(2) == 2
    await pages.aclose()
    await asyncio.sleep(0.05)
    assert len(fetched) == 2  # the first page and the one read ahead, then nothing
    s.close()


def test_snapshot_is_consistent_while_writing_and_restores(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path / "s.db")
    s.apply(1, 1, [(OP_PUT, i.to_bytes(4, "big"), b"v") for i in range(5000)])
    stop = threading.Event()

    def writer() -> None:
        i = 2
        while not stop.is_set():
            s.apply(i, 1, [(OP_PUT, (100000 + i).to_bytes(4, "big"), b"w")])
            i += 1

    t = threading.Thread(target=writer)
    t.start()
    try:
        info = s.snapshot_to(tmp_path / "snap.db", {"raft_last": b"xyz"})
    finally:
        stop.set()
        t.join()
    # consistent: the copy's count matches its own applied index (one new key per index after 1)
    assert info.count == 5000 + (info.applied_index - 1)
    assert read_snapshot_info(tmp_path / "snap.db").extra["raft_last"] == b"xyz"
    fresh = SQLiteStore(tmp_path / "fresh.db")
    fresh.apply(1, 1, [(OP_PUT, b"stale", b"1")])
    fresh.restore_from(tmp_path / "snap.db")
    assert fresh.count() == info.count and fresh.get(b"stale") is None
    assert fresh.applied_index == info.applied_index
    fresh.close()
    s.close()


def test_snapshot_superseded_is_dropped(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path / "s.db")
    with pytest.raises(store_mod.SnapshotSuperseded):
        s.snapshot_to(tmp_path / "snap.db", commit=lambda: False)
    assert not (tmp_path / "snap.db").exists()
    s.close()


def _make_old(path: Path, version: int) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID")
    db.execute("CREATE TABLE pins (key BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID")
    db.execute("INSERT INTO meta VALUES ('format_version', ?), ('applied_index', 0), ('applied_term', 0)", (version,))
    db.commit()
    db.close()


def test_older_format_is_refused_with_both_versions_and_upgrade_command(tmp_path: Path) -> None:
    _make_old(tmp_path / "s.db", FORMAT_VERSION - 1)
    with pytest.raises(StateVersionError) as ei:
        SQLiteStore(tmp_path / "s.db")
    msg = str(ei.value)
    assert f"format version {FORMAT_VERSION - 1}" in msg and f"format version {FORMAT_VERSION}" in msg
    assert "ipfs-cluster-service state upgrade" in msg
    assert isinstance(ei.value, StateError)


def test_newer_format_is_refused(tmp_path: Path) -> None:
    _make_old(tmp_path / "s.db", FORMAT_VERSION + 3)
    with pytest.raises(StateVersionError, match="newer release"):
        SQLiteStore(tmp_path / "s.db")


def test_upgrade_runs_migrations_in_order(tmp_path: Path) -> None:
    _make_old(tmp_path / "s.db", FORMAT_VERSION - 1)
    calls: list[int] = []

    def step(conn: sqlite3.Connection) -> None:
        calls.append(1)
        conn.execute("INSERT INTO pins VALUES (x'01', x'02')")

    assert upgrade(tmp_path / "s.db", {FORMAT_VERSION - 1: step}) == FORMAT_VERSION - 1
    assert calls == [1] and read_format_version(tmp_path / "s.db") == FORMAT_VERSION
    s = SQLiteStore(tmp_path / "s.db")
    assert s.get(b"\x01") == b"\x02"
    s.close()


def test_upgrade_without_migration_fails_and_keeps_version(tmp_path: Path) -> None:
    _make_old(tmp_path / "s.db", FORMAT_VERSION - 1)
    with pytest.raises(StateVersionError):
        upgrade(tmp_path / "s.db", {})
    assert read_format_version(tmp_path / "s.db") == FORMAT_VERSION - 1


def test_not_a_state_database(tmp_path: Path) -> None:
    (tmp_path / "junk.db").write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(StateError):
        SQLiteStore(tmp_path / "junk.db")
    with pytest.raises(StateError):
        read_snapshot_info(tmp_path / "junk.db")


def test_clear(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path / "s.db")
    s.apply(3, 1, [(OP_PUT, b"a", b"1")])
    s.clear()
    assert s.count() == 0 and s.applied_index == 0
    assert s.put_many([(b"x", b"1"), (b"y", b"2")]) == 2
    s.close()


def test_fsync_dir_syncs_a_directory_and_refuses_what_is_not_one(tmp_path: Path) -> None:
    """The one directory-sync helper of the state, the Raft journal and the blockstore: a missing folder or a
    file is an error (a silent no-op would lose the durability the callers rely on)."""
    from pincluster.durable import fsync_dir, fsync_parent

    fsync_parent(tmp_path / "renamed-here")  # the folder holding a path
    with pytest.raises(FileNotFoundError):
        fsync_parent(tmp_path / "missing" / "x")
    fsync_dir(tmp_path)
    fsync_dir(str(tmp_path))
    with pytest.raises(FileNotFoundError):
        fsync_dir(tmp_path / "missing")
    (tmp_path / "f").write_bytes(b"x")
    with pytest.raises(NotADirectoryError):
        fsync_dir(tmp_path / "f")
