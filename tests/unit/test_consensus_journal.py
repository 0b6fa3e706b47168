"""ConflictOnlyJournal: PySyncObj's log is truncated only on a real conflict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pysyncobj.journal import MemoryJournal

from pincluster.consensus.journal import ConflictOnlyJournal


def make(entries: list[tuple[int, int]], term: int) -> ConflictOnlyJournal:
    j = ConflictOnlyJournal(MemoryJournal())
    for idx, t in entries:
        j.add(b"c%d" % idx, idx, t)
    j.setCurrentTerm(term, None)
    return j


def ids(j: ConflictOnlyJournal) -> list[tuple[int, int]]:
    return [(j[i][1], j[i][2]) for i in range(len(j))]


def test_stale_message_does_not_shorten_the_log() -> None:
    j = make([(1, 1), (2, 1), (3, 1), (4, 1), (5, 1)], term=1)
    j.deleteEntriesFrom(2)  # PySyncObj: prevLogIdx = 2, delete everything after it
    j.add(b"c3", 3, 1)  # the same entry again
    assert ids(j) == [(1, 1), (2, 1), (3, 1), (4, 1), (5, 1)]
    assert j.truncated == 0 and j.kept == 3


def test_conflict_truncates_from_the_conflicting_entry() -> None:
    j = make([(1, 1), (2, 1), (3, 1), (4, 1)], term=2)
    j.deleteEntriesFrom(2)
    j.add(b"new", 3, 2)  # same index, newer term: conflict
    assert ids(j) == [(1, 1), (2, 1), (3, 2)]
    assert j[2][0] == b"new"


def test_unchecked_tail_of_an_older_term_is_dropped() -> None:
    j = make([(1, 1), (2, 1), (3, 1), (4, 1)], term=2)
    j.deleteEntriesFrom(2)  # heartbeat of the term-2 leader with no entries
    assert ids(j) == [(1, 1), (2, 1)]  # entries 3-4 of term 1 were never checked: gone


def test_kept_tail_is_reported_for_membership_replay() -> None:
    seen: list[Any] = []
    j = make([(1, 3), (2, 3), (3, 3)], term=3)
    j.on_kept_tail = seen.extend
    j.deleteEntriesFrom(1)
    assert len(j) == 3
    assert [e[1] for e in seen] == [2, 3]


def test_append_after_the_end_and_clear() -> None:
    j = make([(1, 1), (2, 1)], term=1)
    j.deleteEntriesFrom(2)
    j.add(b"c3", 3, 1)
    assert ids(j) == [(1, 1), (2, 1), (3, 1)]
    j.deleteEntriesFrom(0)
    j.clear()
    assert len(j) == 0
    j.add(b"x", 7, 1)
    assert ids(j) == [(7, 1)]
    assert j.getCurrentTerm() == 1


def test_raft_term_and_vote_are_stored_with_fsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PySyncObj's MetaStorer renames an unsynced file; after install() the file and its folder are fsynced."""
    import os

    import pysyncobj.journal as pj

    from pincluster.consensus import journal

    journal.install()
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    storer = pj.MetaStorer(str(tmp_path / "journal.meta"))
    storer.storeMeta({"currentTerm": 7, "votedForNodeId": "peer@127.0.0.1:1"})
    assert len(synced) == 2  # the file, then the folder that holds the rename
    assert storer.getMeta() == {"currentTerm": 7, "votedForNodeId": "peer@127.0.0.1:1"}
    assert not (tmp_path / "journal.meta.tmp").exists()


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="reads /proc/self/fd")
def test_a_snapshot_received_from_the_leader_is_synced_before_and_after_its_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PySyncObj writes the snapshot a leader sends into a temporary file and renames it over the follower's
    own, syncing neither; after install() the file is synced before the rename and its folder after."""
    import os

    from pysyncobj.serializer import Serializer

    from pincluster.consensus import journal

    journal.install()
    dump = tmp_path / "snapshot.sqlite"
    dump.write_bytes(b"the previous snapshot")
    synced: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (synced.append(f"replace {Path(a).name}"), real_replace(a, b))[1])
    ser = Serializer(str(dump), 1024, False, None, None, None)
    assert not ser.setTransmissionData((b"the leader's ", True, False))
    assert ser.setTransmissionData((b"snapshot", False, True))
    assert dump.read_bytes() == b"the leader's snapshot"
    assert synced == [str(dump) + ".1.tmp", "replace snapshot.sqlite.1.tmp", str(tmp_path)]


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="the fdatasync path is Linux's")
def test_journal_sync_is_fdatasync_of_the_journal_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """mmap.flush holds the GIL through msync (the whole peer waited on the disk); after install() a journal
    sync is an fdatasync of the journal's own file, which releases it, and a reopened journal has the entries."""
    import os

    import pysyncobj.journal as pj

    from pincluster.consensus import journal

    journal.install()
    path = tmp_path / "raft.journal"
    fj = pj.FileJournal(str(path))
    for i in range(1, 200):  # past the file's first size: the mapping grows on the way
        fj.add(b"entry %d" % i * 50, i, 3)
    synced: list[tuple[int, int]] = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (synced.append((os.fstat(fd).st_ino, fd)), real(fd))[1])
    fj.flush()
    assert [ino for ino, _ in synced] == [path.stat().st_ino]
    fj._destroy()
    again = pj.FileJournal(str(path))
    assert len(again) == 199 and again[198][0] == b"entry 199" * 50
    again._destroy()


class _FileLike(MemoryJournal):
    """A memory journal with PySyncObj's ``flush`` (counted), as a file journal has."""

    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1


def test_synced_index_is_what_the_last_flush_covered() -> None:
    """The state writer skips the state's fsync for entries at or below ``synced_index``: it must never
    claim an entry that is not on the disk (added after the flush, or written again since)."""
    j = ConflictOnlyJournal(_FileLike())
    for i in range(1, 6):
        j.add(b"c%d" % i, i, 1)
    j.setCurrentTerm(2, None)
    assert j.synced_index == 0  # nothing flushed yet
    j.flush()
    assert j.synced_index == 5
    j.add(b"c6", 6, 2)
    assert j.synced_index == 5  # entry 6 is not on the disk yet
    j.deleteEntriesFrom(3)
    j.add(b"c4", 4, 1)  # the same entry again: kept, still synced
    assert j.synced_index == 5
    j.deleteEntriesFrom(3)
    j.add(b"new", 4, 2)  # a conflict: 4 and later are replaced, not on the disk
    assert ids(j) == [(1, 1), (2, 1), (3, 1), (4, 2)]
    assert j.synced_index == 3
    j.flush()
    assert j.synced_index == 4
    j.deleteEntriesTo(2)  # compaction of a journal without a file: nothing known on the disk any more
    assert ids(j) == [(3, 1), (4, 2)] and j.synced_index == 0
    j.flush()
    j.clear()
    assert j.synced_index == 0


def test_a_journal_in_memory_has_no_flush_and_nothing_synced() -> None:
    j = make([(1, 1), (2, 1)], term=1)
    assert not hasattr(j, "flush")
    j.deleteEntriesTo(1)
    assert ids(j) == [(2, 1)] and j.synced_index == 0


def _file_journal(path: Path, n: int, term: int = 1) -> Any:
    import pysyncobj.journal as pj

    from pincluster.consensus import journal

    journal.install()
    j = ConflictOnlyJournal(pj.FileJournal(str(path)))
    for i in range(1, n + 1):
        j.add(b"entry %04d" % i * 20, i, term)  # records of one size
    return j


def test_compaction_writes_a_new_journal_file_and_renames_it(tmp_path: Path) -> None:
    """PySyncObj rewrote the kept entries in place (a power loss meanwhile could leave neither journal whole);
    the kept entries now go to a new file, synced, that replaces the old one."""
    import pysyncobj.journal as pj

    path = tmp_path / "raft.journal"
    j = _file_journal(path, 300)
    j.setCurrentTerm(4, "peer@x")
    j.setRaftCommitIndex(290)  # in memory only until PySyncObj's one-second timer stores it
    j.flush()
    inode = path.stat().st_ino
    j.deleteEntriesTo(250)  # entries 1-250 are in a snapshot now
    assert path.stat().st_ino != inode and not (tmp_path / "raft.journal.compact").exists()
    assert ids(j) == [(i, 1) for i in range(251, 301)] and j.synced_index == 300
    assert (j.getCurrentTerm(), j.getVotedForNodeId(), j.getRaftCommitIndex()) == (4, "peer@x", 290)
    j.add(b"after", 301, 4)  # the journal goes on in the new file
    j.flush()
    j._destroy()
    again = ConflictOnlyJournal(pj.FileJournal(str(path)))
    assert [(again[i][1], again[i][2]) for i in range(len(again))] == [*((i, 1) for i in range(251, 301)), (301, 4)]
    assert again[0][0] == b"entry 0251" * 20 and again.getCurrentTerm() == 4
    again._destroy()


def test_a_torn_tail_is_cut_back_to_the_last_whole_record(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """After a power loss, the end offset in the header may point past records that are not on the disk whole
    (zeros, or older bytes); PySyncObj's loader failed on them and the peer could not start."""
    import struct

    import pysyncobj.journal as pj

    from pincluster.consensus.journal import repair_torn_tail

    path = tmp_path / "raft.journal"
    j = _file_journal(path, 20)
    j.flush()
    j._destroy()
    assert repair_torn_tail(str(path)) == 0  # a whole journal is left alone
    raw = bytearray(path.read_bytes())
    (end,) = struct.unpack_from("<I", raw, pj.LAST_RECORD_OFFSET_OFFSET)
    record = 4 + 16 + len(b"entry 0001" * 20) + 8 + 4  # with the checksum trailer
    # 1: the header says three more records, whose pages never reached the disk (zeros)
    torn = bytearray(raw) + bytes(3 * record + 64)
    struct.pack_into("<I", torn, pj.LAST_RECORD_OFFSET_OFFSET, end + 3 * record)
    path.write_bytes(bytes(torn))
    with pytest.raises(struct.error):
        pj.FileJournal(str(path))  # what PySyncObj alone does with it
    assert repair_torn_tail(str(path)) == 3 * record
    loaded = pj.FileJournal(str(path))
    assert len(loaded) == 20 and loaded[19][1] == 20
    loaded._destroy()
    assert "dropped" in caplog.text and "after entry 20" in caplog.text
    # 2: older bytes where the last record should be: sizes agree, but its index does not follow
    stale = bytearray(raw)
    first = pj.FIRST_RECORD_OFFSET
    stale[end - record:end] = stale[first:first + record]  # entry 1's bytes where entry 20 was
    path.write_bytes(bytes(stale))
    repair_torn_tail(str(path))
    loaded = pj.FileJournal(str(path))
    assert [loaded[i][1] for i in range(len(loaded))] == list(range(1, 20))
    loaded._destroy()


def _records(path: Path) -> list[tuple[int, int]]:
    """(start, size) of each record in a journal file, by its size fields alone."""
    import struct

    import pysyncobj.journal as pj

    raw = path.read_bytes()
    (end,) = struct.unpack_from("<I", raw, pj.LAST_RECORD_OFFSET_OFFSET)
    out, pos = [], pj.FIRST_RECORD_OFFSET
    while pos < end:
        (n,) = struct.unpack_from("<I", raw, pos)
        out.append((pos, n))
        pos += n + 8
    return out


def test_a_record_torn_inside_is_found_by_its_checksum(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A record spans several pages, which reach the disk in no fixed order: after a power loss its two size
    fields may be there and part of its command not. Its checksum finds it; the record and everything after
    it are dropped (the leader sends them again), rather than loaded and applied as they are."""
    import pysyncobj.journal as pj
    import pysyncobj.syncobj as ps

    from pincluster.consensus.journal import repair_torn_tail

    path = tmp_path / "raft.journal"
    j = _file_journal(path, 20)
    assert j[19][0] == b"entry 0020" * 20  # in memory: the command alone
    j.flush()
    j._destroy()
    good = path.read_bytes()
    records = _records(path)
    assert len(records) == 20
    start, n = records[19]
    torn = bytearray(good)
    torn[start + 4 + 16 + 50 : start + 4 + n - 40] = bytes(n - 16 - 90)  # a page of the last record: zeros
    path.write_bytes(bytes(torn))
    assert repair_torn_tail(str(path)) == n + 8
    assert "after entry 19" in caplog.text
    loaded = ps.createJournal(str(path))  # what the daemon opens (installed by _file_journal)
    assert [loaded[i][1] for i in range(len(loaded))] == list(range(1, 20))
    assert all(loaded[i][0] == b"entry %04d" % (i + 1) * 20 for i in range(19))
    loaded._destroy()
    # one byte changed in the middle of the journal: that record and the ones after it go
    flipped = bytearray(good)
    start, n = records[9]
    flipped[start + 4 + 16 + 7] ^= 0x01
    path.write_bytes(bytes(flipped))
    repair_torn_tail(str(path))
    loaded = pj.FileJournal(str(path))
    assert [loaded[i][1] for i in range(len(loaded))] == list(range(1, 10))
    loaded._destroy()


def test_a_journal_of_an_older_version_loads_and_its_new_records_get_checksums(tmp_path: Path) -> None:
    """Records without a trailer (an older version wrote them) are loaded when they look like PySyncObj's
    commands; a torn one (zeros) does not. A version without trailers can read the new records: its commands
    are pickles, and ``pickle.loads`` ignores the trailer after them."""
    import pickle

    import pysyncobj.journal as pj
    import pysyncobj.syncobj as ps

    from pincluster.consensus import journal, safe_pickle
    from pincluster.consensus.journal import repair_torn_tail

    journal.install()
    path = tmp_path / "raft.journal"
    old = pj.FileJournal(str(path))  # as an older version writes it
    commands = [b"\x01", *(b"\x00" + pickle.dumps((0, (b"ops %d" % i,))) for i in range(2, 6))]
    for i, c in enumerate(commands, 1):
        old.add(c, i, 1)
    old.flush()
    old._destroy()
    legacy = path.read_bytes()
    assert repair_torn_tail(str(path)) == 0
    j = ps.createJournal(str(path))
    assert [j[i][0] for i in range(len(j))] == commands
    j.add(b"\x00" + pickle.dumps((0, (b"ops 6",))), 6, 2)
    j.flush()
    j._destroy()
    assert repair_torn_tail(str(path)) == 0
    reread = pj.FileJournal(str(path))  # the older version's view: the trailer follows the pickle
    assert len(reread) == 6 and reread[5][0].endswith(b"pcJ\x01")
    assert pickle.loads(reread[5][0][1:]) == (0, (b"ops 6",))
    assert safe_pickle.safe_loads(reread[5][0][1:]) == (0, (b"ops 6",))  # what a daemon unpickles with
    reread._destroy()
    # a torn record of the older format: its size fields are there, its command is zeros
    start, n = _records(path)[4]
    torn = bytearray(legacy)
    torn[start + 4 + 16 : start + 4 + n] = bytes(n - 16)
    path.write_bytes(bytes(torn))
    assert repair_torn_tail(str(path)) == n + 8
    loaded = pj.FileJournal(str(path))
    assert [loaded[i][0] for i in range(len(loaded))] == commands[:4]
    loaded._destroy()


def _snapshot(tmp_path: Path, prev: tuple[int, int], last: tuple[int, int]) -> str:
    """A snapshot file whose Raft metadata names ``prev`` and ``last`` (index, term) as its two entries."""
    import msgspec

    from pincluster.state.store import SQLiteStore

    store = SQLiteStore(tmp_path / "state.sqlite")
    dump = tmp_path / "snapshot.sqlite"
    extra = {name: msgspec.msgpack.encode([b"c%d" % i, i, t]) for name, (i, t) in (("raft_prev", prev),
                                                                                   ("raft_last", last))}
    store.snapshot_to(dump, {**extra, "raft_cluster": b"[]"})
    store.close()
    return str(dump)


@pytest.mark.parametrize(
    ("entries", "snapshot", "after"),
    [
        # the peer stopped between the snapshot at 5 and the compaction: 1-3 go, 4-8 stay
        ([(i, 1) for i in range(1, 9)], ((4, 1), (5, 1)), [(i, 1) for i in range(4, 9)]),
        # the two entries end the journal: nothing after them to keep, the journal still starts with them
        ([(i, 1) for i in range(1, 6)], ((4, 1), (5, 1)), [(4, 1), (5, 1)]),
        # already compacted: left as it is
        ([(i, 1) for i in range(4, 9)], ((4, 1), (5, 1)), [(i, 1) for i in range(4, 9)]),
        # the journal ends before the snapshot: left to PySyncObj, which replaces it with the snapshot's entries
        ([(i, 1) for i in range(1, 5)], ((4, 1), (5, 1)), [(i, 1) for i in range(1, 5)]),
        # the entries at those indexes are of another term (not the snapshot's): left to PySyncObj (it clears)
        ([(1, 1), (2, 1), (3, 1), (4, 2), (5, 2), (6, 2)], ((4, 1), (5, 1)),
         [(1, 1), (2, 1), (3, 1), (4, 2), (5, 2), (6, 2)]),
    ],
)
def test_a_restart_keeps_the_journal_entries_after_the_snapshot(
    tmp_path: Path, entries: list[tuple[int, int]], snapshot: tuple[tuple[int, int], tuple[int, int]],
    after: list[tuple[int, int]],
) -> None:
    """PySyncObj clears a journal that does not start with its snapshot's two entries; when the journal holds
    them after older ones (a stop between the snapshot and the compaction), only the older ones go."""
    from pincluster.consensus.config import raft_config
    from pincluster.consensus.raft import RaftConsensus

    config = raft_config({"listen_multiaddress": "/ip4/127.0.0.1/tcp/9098"})
    raft = RaftConsensus(peer_id="QmSelf", config=config, secret=b"\x33" * 32, data_folder=tmp_path)
    j = make(entries, term=2)
    raft._journal_from_snapshot(j, _snapshot(tmp_path, *snapshot))
    assert ids(j) == after


class _Stopped(Exception):
    """``os._exit`` in the tests below: the peer stopped."""


@pytest.mark.skipif(not hasattr(__import__("os"), "posix_fallocate"), reason="no posix_fallocate here")
def test_a_full_disk_stops_the_peer_when_the_journal_would_grow_into_a_hole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """PySyncObj grows its mapped journal file by ftruncate (a hole a full disk cannot back: SIGBUS at the write).
    After install() the new space is reserved first; a full disk stops the peer there, saying so, with nothing
    written."""
    import errno
    import os

    import pysyncobj.journal as pj

    from pincluster.consensus import journal

    journal.install()
    fj = pj.FileJournal(str(tmp_path / "journal"))
    fj.add(b"first", 1, 1)
    size = os.path.getsize(tmp_path / "journal")
    reserved: list[tuple[int, int]] = []
    real = os.posix_fallocate
    monkeypatch.setattr(os, "posix_fallocate", lambda fd, off, n: (reserved.append((off, n)), real(fd, off, n))[1])
    for i in range(2, 200):  # past the file's size: it grows, reserved
        fj.add(b"entry %d" % i * 20, i, 1)
    assert reserved and reserved[0][0] == size and os.path.getsize(tmp_path / "journal") == sum(reserved[-1])

    def full(fd: int, off: int, n: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    def exit_(code: int) -> None:
        raise _Stopped(code)

    monkeypatch.setattr(os, "posix_fallocate", full)
    monkeypatch.setattr(os, "_exit", exit_)
    with pytest.raises(_Stopped) as stopped:
        for i in range(200, 2000):
            fj.add(b"entry %d" % i * 20, i, 1)
    assert stopped.value.args == (journal.DISK_FULL_EXIT,)
    assert "the Raft journal cannot be written" in caplog.text and "No space left on device" in caplog.text
    monkeypatch.undo()
    fj._destroy()


def test_a_full_disk_stops_the_peer_before_a_term_or_vote_it_cannot_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import errno
    import os

    import pysyncobj.journal as pj

    from pincluster.consensus import journal

    journal.install()

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    def exit_(code: int) -> None:
        raise _Stopped(code)

    monkeypatch.setattr(os, "fsync", full)
    monkeypatch.setattr(os, "_exit", exit_)
    with pytest.raises(_Stopped):
        pj.MetaStorer(str(tmp_path / "journal.meta")).storeMeta({"currentTerm": 8, "votedForNodeId": "x"})
    assert "the Raft term and vote cannot be written" in caplog.text
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
    with pytest.raises(OSError, match="I/O error"):  # other errors are PySyncObj's to log and retry
        pj.MetaStorer(str(tmp_path / "journal.meta")).storeMeta({"currentTerm": 8, "votedForNodeId": "x"})
