"""RaftConsensus in-process, one peer (real PySyncObj thread, real socket on 127.0.0.1)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pincluster.cli.service import free_port
from pincluster.consensus.config import raft_config
from pincluster.consensus.interface import Consensus
from pincluster.consensus.raft import DUMP_FILE, RaftConsensus, clean_raft_folder
from pincluster.consensus.transport import RaftAuthenticator, raft_request
from pincluster.errors import InvalidInput, NotFound, PeerError, Unavailable
from pincluster.state.store import OP_DELETE, OP_PUT, Op

SECRET = bytes.fromhex("33" * 32)


def make(folder: Path, port: int, applied: list[list[Op]] | None = None, **cfg: object) -> RaftConsensus:
    config = raft_config({"listen_multiaddress": f"/ip4/127.0.0.1/tcp/{port}", **cfg})
    return RaftConsensus(
        peer_id="QmSelf", config=config, secret=SECRET, data_folder=folder,
        on_apply=(applied.append if applied is not None else None),
    )


async def test_single_peer_pins_unpins_restarts_and_snapshots(tmp_path: Path) -> None:
    port = free_port()
    applied: list[list[Op]] = []
    raft = make(tmp_path / "raft", port, applied, compaction_min_entries=5)
    await raft.start()
    try:
        assert isinstance(raft, Consensus)
        await raft.ready(10)
        assert await raft.leader() == "QmSelf"
        assert await raft.peers() == ["QmSelf"] and raft.is_trusted_peer("QmSelf")
        assert not raft.is_trusted_peer("QmOther")
        keys = [i.to_bytes(4, "big") for i in range(300)]
        await asyncio.gather(*(raft.log_pin(k, b"v" + k) for k in keys))
        assert await raft.state.count() == 300
        assert [k async for k, _ in raft.state.list()] == keys
        for k in keys[:20]:  # one entry each: enough entries for a compaction
            await raft.log_unpin(k)
        with pytest.raises(NotFound):
            await raft.log_unpin(keys[0])
        assert await raft.state.count() == 280
        await asyncio.sleep(0.05)
        ops = [op for batch in applied for op in batch]
        assert sum(1 for op in ops if op[0] == OP_PUT) == 300
        assert sum(1 for op in ops if op[0] == OP_DELETE) == 20
        for _ in range(100):
            if raft.snapshots_written:
                break
            await asyncio.sleep(0.05)
        assert raft.snapshots_written >= 1 and (tmp_path / "raft" / DUMP_FILE).exists()
        status = await asyncio.to_thread(raft_request, RaftAuthenticator(SECRET), f"127.0.0.1:{port}", ["status"], 5)
        assert status["leader"].id == raft.self_spec
        with pytest.raises(PeerError):
            await asyncio.to_thread(
                raft_request, RaftAuthenticator(b"other" * 4), f"127.0.0.1:{port}", ["status"], 5
            )
    finally:
        await raft.shutdown()
    with pytest.raises(Unavailable):
        await raft.log_pin(b"late", b"x")

    again = make(tmp_path / "raft", port)
    await again.start()
    try:
        await again.ready(10)
        assert await again.state.count() == 280
        await again.log_pin(b"after", b"restart")
        assert await again.state.get(b"after") == b"restart"
    finally:
        await again.shutdown()
    backup = await again.clean()
    assert backup is not None and backup.name == "raft.old.0" and not (tmp_path / "raft").exists()


async def test_status_changes_wake_the_loop_only_for_waiters(tmp_path: Path) -> None:
    """Under writes the Raft status changes with every commit; the Raft thread wakes the event loop for it
    only while a coroutine waits for a status (a wake-up costs a syscall on both sides)."""
    raft = make(tmp_path / "raft", free_port())
    await raft.start()
    try:
        await raft.ready(10)
        await asyncio.sleep(0.3)
        notified: list[float] = []
        real = raft._notify

        def counting() -> None:
            notified.append(asyncio.get_running_loop().time())
            real()

        raft._notify = counting  # type: ignore[method-assign]
        for i in range(30):
            await raft.log_pin(b"k%d" % i, b"v")
        await asyncio.sleep(0.2)
        assert notified == []  # 30 commits, nobody waiting
        target = raft.status().commit_index + 1
        waiter = asyncio.ensure_future(raft._wait_for(lambda s: s.applied_index >= target, 10, "the next write"))
        await asyncio.sleep(0.05)
        await raft.log_pin(b"next", b"v")
        st = await waiter
        assert st.applied_index >= target and notified  # woken by the change, not by the 0.25 s poll
        assert raft._status_waiters == 0
    finally:
        await raft.shutdown()


def test_clean_rotates_backups(tmp_path: Path) -> None:
    for _ in range(4):
        (tmp_path / "raft").mkdir()
        (tmp_path / "raft" / DUMP_FILE).write_bytes(b"x")
        clean_raft_folder(tmp_path / "raft", backups_rotate=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raft.old.0", "raft.old.1", "raft.old.2"]
    (tmp_path / "raft").mkdir()  # nothing worth keeping: just deleted
    assert clean_raft_folder(tmp_path / "raft", 3) is None and not (tmp_path / "raft").exists()


def test_constructor_validates(tmp_path: Path) -> None:
    cfg = raft_config({"listen_multiaddress": "/ip4/0.0.0.0/tcp/9098"})
    with pytest.raises(InvalidInput, match="advertise"):
        RaftConsensus(peer_id="Qm", config=cfg, secret=SECRET, data_folder=tmp_path)
    with pytest.raises(InvalidInput):
        RaftConsensus(peer_id="Qm", config=cfg, secret=SECRET, data_folder=tmp_path, advertise_host="h",
                      max_inflight=5000)
    with pytest.raises(InvalidInput):
        RaftConsensus(peer_id="Qm", config=raft_config({"listen_multiaddress": "/ip4/1.2.3.4/udp/1"}),
                      secret=SECRET, data_folder=tmp_path)


async def test_cluster_pinset_view_over_raft(tmp_path: Path) -> None:
    """The Cluster reads the committed pinset as Pins through StatePinset (decoding on the fly)."""
    from pincluster.cluster import StatePinset
    from pincluster.types.cid import CID
    from pincluster.types.codec import pin_to_state
    from pincluster.types.models import Pin

    raft = make(tmp_path / "raft", free_port())
    await raft.start()
    try:
        await raft.ready(10)
        pins = StatePinset(lambda: raft.state)
        one, two = (Pin(cid=CID.v0(bytes([i]) * 32), name=n) for i, n in ((1, "one"), (2, "two")))
        for p in (two, one):
            await raft.log_pin(p.cid.bytes, pin_to_state(p))
        assert [p.name async for p in pins.list()] == ["one", "two"]
        got = await pins.get(two.cid)
        assert got is not None and got.name == "two"
        await raft.log_unpin(two.cid.bytes)
        assert await pins.get(two.cid) is None
    finally:
        await raft.shutdown()
