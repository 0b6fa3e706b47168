"""Group commit: ``SQLiteStore.apply_many`` and RaftConsensus acknowledging only what its state holds."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from pincluster.cli.service import free_port
from pincluster.consensus.config import RaftConfig, raft_config
from pincluster.consensus.raft import AppliedOps, RaftConsensus
from pincluster.errors import InvalidInput
from pincluster.state.store import OP_DELETE, OP_PUT, Op, SQLiteStore

SECRET = bytes.fromhex("44" * 32)


def test_apply_many_writes_groups_skips_applied_and_reports_previous(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.sqlite")
    try:
        res = store.apply_many([
            (1, 1, [(OP_PUT, b"a", b"1"), (OP_PUT, b"b", b"1")]),
            (2, 1, [(OP_PUT, b"a", b"2"), (OP_DELETE, b"b", None)]),
            (3, 2, []),
        ])
        assert res == [[None, None], [b"1", b"1"], []]
        assert store.get(b"a") == b"2" and store.get(b"b") is None
        assert (store.applied_index, store.applied_term) == (3, 2)
        # replayed entries (index at or below the applied one) are skipped; later ones in the group are not
        res = store.apply_many([(2, 1, [(OP_PUT, b"z", b"old")]), (4, 2, [(OP_PUT, b"c", b"4")])])
        assert res == [None, [None]]
        assert store.get(b"z") is None and store.get(b"c") == b"4" and store.applied_index == 4
        # a bad op rolls the whole group back, applied index included
        with pytest.raises(InvalidInput):
            store.apply_many([(5, 2, [(OP_PUT, b"d", b"5")]), (6, 2, [(9, b"e", b"x")])])
        assert store.get(b"d") is None and store.applied_index == 4
    finally:
        store.close()
    again = SQLiteStore(tmp_path / "s.sqlite")
    try:
        assert (again.applied_index, again.applied_term) == (4, 2) and again.count() == 2
    finally:
        again.close()


async def _after_restart(config: RaftConfig, folder: Path, key: bytes) -> tuple[int, bytes | None]:
    """(pins, value of ``key``) in the state of a single-peer Raft restarted on ``folder``."""
    again = RaftConsensus(peer_id="QmSelf", config=config, secret=SECRET, data_folder=folder)
    await again.start()
    try:
        await again.ready(10)
        return await again.state.count(), await again.state.get(key)
    finally:
        await again.shutdown()


class _SlowStore:
    """Wraps the store's apply_many so that each group commit takes a while (a slow disk)."""

    def __init__(self, store: SQLiteStore, delay: float) -> None:
        self.inner = store.apply_many
        self.delay = delay
        self.groups: list[int] = []
        self.release = threading.Event()

    def __call__(self, entries: Any, **kw: Any) -> Any:
        self.release.wait(self.delay)
        self.groups.append(len(entries))
        return self.inner(entries, **kw)


async def test_acks_wait_for_the_state_and_groups_share_commits(tmp_path: Path) -> None:
    applied: list[list[Op]] = []
    config = raft_config({"listen_multiaddress": f"/ip4/127.0.0.1/tcp/{free_port()}"})
    raft = RaftConsensus(peer_id="QmSelf", config=config, secret=SECRET, data_folder=tmp_path / "raft",
                         on_apply=applied.append, max_inflight=8, batch_ops=4)
    await raft.start()
    try:
        await raft.ready(10)
        slow = _SlowStore(raft.store, 0.05)
        raft.store.apply_many = slow  # type: ignore[method-assign]
        keys = [i.to_bytes(4, "big") for i in range(200)]

        async def pin_and_check(k: bytes) -> None:
            await raft.log_pin(k, b"v" + k)
            # acknowledged means durable in this peer's state: readable at once, by anyone
            assert raft.store.get(k) == b"v" + k

        await asyncio.gather(*(pin_and_check(k) for k in keys))
        # 200 ops in batches of 4 = 50 entries; a slow writer gathers several entries per transaction
        assert sum(slow.groups) >= 50 and len(slow.groups) < 50
        assert raft.status().applied_index <= raft.store.applied_index
        # the tracker hook gets each entry once, with what every key held before
        await asyncio.sleep(0.05)
        assert sorted(k for batch in applied for _, k, _ in batch) == keys
        assert all(isinstance(b, AppliedOps) and b.previous == [None] * len(b) for b in applied)
        applied.clear()
        await raft.log_pin(keys[0], b"new")
        await asyncio.sleep(0.05)
        assert len(applied) == 1 and isinstance(applied[0], AppliedOps)
        assert applied[0].previous == [b"v" + keys[0]]
    finally:
        slow.release.set()
        await raft.shutdown()
    # everything acknowledged survives the restart
    assert await _after_restart(config, tmp_path / "raft", keys[0]) == (200, b"new")


async def test_a_failing_write_is_retried_and_nothing_is_acknowledged_meanwhile(tmp_path: Path) -> None:
    config = raft_config({"listen_multiaddress": f"/ip4/127.0.0.1/tcp/{free_port()}"})
    raft = RaftConsensus(peer_id="QmSelf", config=config, secret=SECRET, data_folder=tmp_path / "raft")
    await raft.start()
    try:
        await raft.ready(10)
        real = raft.store.apply_many
        failures = 0

        def flaky(entries: Any, **kw: Any) -> Any:
            nonlocal failures
            if failures < 3:
                failures += 1
                raise OSError("disk I/O error (simulated)")
            return real(entries, **kw)

        raft.store.apply_many = flaky  # type: ignore[method-assign]
        task = asyncio.create_task(raft.log_pin(b"k", b"v"))
        await asyncio.sleep(0.3)
        assert not task.done() or failures >= 3  # not acknowledged before the write succeeded
        await asyncio.wait_for(task, 10)
        assert failures == 3 and raft.store.get(b"k") == b"v"
    finally:
        await raft.shutdown()


async def test_cluster_pinset_reads_on_the_loop_and_falls_back(tmp_path: Path) -> None:
    from pincluster.cluster import StatePinset
    from pincluster.state.store import SQLiteState
    from pincluster.types.cid import CID
    from pincluster.types.codec import pin_to_state
    from pincluster.types.models import Pin

    store = SQLiteStore(tmp_path / "s.sqlite")
    state = SQLiteState(store)
    pinset = StatePinset(lambda: state)
    try:
        pin = Pin(cid=CID.decode("QmVMPW3JqrzVrKoQSPxTrqWRFW48xrjbwM2n6kwgYDnEjY"))
        assert await pinset.get(pin.cid) is None
        store.apply(1, 1, [(OP_PUT, pin.cid.bytes, pin_to_state(pin))])
        got = await pinset.get(pin.cid)  # written after the reader opened: seen at once
        assert got is not None and got.cid == pin.cid
        assert pinset._reader is not None
        # when the loop read cannot be made (here: the file cannot be opened), the async state answers
        real_path = store.path
        store.path = tmp_path  # a folder: sqlite cannot open it
        done, _ = pinset._read_now(store, pin.cid.bytes)
        assert not done and pinset._reader is None
        got = await pinset.get(pin.cid)
        assert got is not None and got.cid == pin.cid
        store.path = real_path
    finally:
        pinset.close()
        store.close()


async def test_state_commits_skip_the_fsync_only_for_entries_in_the_synced_journal(tmp_path: Path) -> None:
    """A state commit may go without its fsync only when every entry it writes is already on the disk in this
    peer's Raft journal (replayed above the state's applied index at start); otherwise it syncs."""
    import time

    config = raft_config({"listen_multiaddress": f"/ip4/127.0.0.1/tcp/{free_port()}"})
    raft = RaftConsensus(peer_id="QmSelf", config=config, secret=SECRET, data_folder=tmp_path / "raft",
                         max_inflight=8, batch_ops=4)
    await raft.start()
    seen: list[tuple[int, bool, int]] = []
    try:
        await raft.ready(10)
        journal = raft._sync._SyncObj__raftLog  # type: ignore[union-attr]
        real = raft.store.apply_many

        def record(entries: Any, *, fsync: bool = True) -> Any:
            seen.append((max(i for i, _t, _ops in entries), fsync, journal.synced_index))
            time.sleep(0.01)  # a slow disk: the Raft thread syncs its journal meanwhile
            return real(entries, fsync=fsync)

        raft.store.apply_many = record  # type: ignore[method-assign]
        keys = [i.to_bytes(4, "big") for i in range(200)]
        await asyncio.gather(*(raft.log_pin(k, b"v") for k in keys))
        assert all(fsync or top <= synced for top, fsync, synced in seen), seen
        assert any(not fsync for _, fsync, _ in seen), seen
        assert raft.group_commits_fsynced == sum(fsync for _, fsync, _ in seen)
    finally:
        await raft.shutdown()
    # a peer that does not sync its journal has nothing on the disk but its state: every commit syncs
    unsynced = RaftConsensus(peer_id="QmSelf", config=config, secret=SECRET, data_folder=tmp_path / "raft2",
                             sync_journal=False)
    await unsynced.start()
    try:
        await unsynced.ready(10)
        await asyncio.gather(*(unsynced.log_pin(i.to_bytes(4, "big"), b"v") for i in range(50)))
        assert unsynced.group_commits > 0 and unsynced.group_commits_fsynced == unsynced.group_commits
    finally:
        await unsynced.shutdown()
    assert (await _after_restart(config, tmp_path / "raft", b"\0\0\0\1"))[0] == 200


def test_store_syncs_unless_told_the_entries_are_safe_elsewhere(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.sqlite")
    mode = lambda: store._w.execute("PRAGMA synchronous").fetchone()[0]  # noqa: E731  2 = FULL, 1 = NORMAL
    try:
        assert mode() == 2
        store.apply_many([(1, 1, [(OP_PUT, b"a", b"1")])], fsync=False)
        assert mode() == 1
        store.apply(2, 1, [(OP_PUT, b"b", b"1")])  # a write on its own always syncs
        assert mode() == 2
        store.apply_many([(3, 1, [(OP_PUT, b"c", b"1")])])
        assert mode() == 2
    finally:
        store.close()
    lax = SQLiteStore(tmp_path / "t.sqlite", durable=False)
    try:
        lax.apply_many([(1, 1, [(OP_PUT, b"a", b"1")])])
        assert lax._w.execute("PRAGMA synchronous").fetchone()[0] == 1
    finally:
        lax.close()
