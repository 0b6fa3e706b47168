"""A journal wrapper that makes PySyncObj truncate its log only on a real conflict, as Raft requires.

PySyncObj's follower, on every AppendEntries whose ``prevLogIdx`` is before its last entry, deletes every
entry after ``prevLogIdx`` and appends the message's entries. A stale or overlapping message (frequent
under load: the leader resends from an older index) then shortens the log below entries already applied.
Measured here: "truncating already-applied log entries" hundreds of times per minute, and once the log
shrank below the index of a snapshot being written, compaction emptied the journal and the tick thread
crashed on every tick (the failure FINDINGS.md describes).

Raft (§5.3) says: "If an existing entry conflicts with a new one (same index but different terms), delete the
existing entry and all that follow it". ``ConflictOnlyJournal`` defers ``deleteEntriesFrom`` and then:

- an added entry equal (index and term) to the existing one at the cut point is kept, and the cut moves on;
- a different one is a conflict: the tail is deleted from there and the entry appended;
- if the message ends with entries left after the cut, those of the current term are kept (only this term's
  leader wrote entries of this term, and Raft's log matching property makes them the leader's), and the
  first entry of an older term and everything after it are deleted, because they were not checked against
  the leader.

Every record this module writes to a journal file also carries a checksum (``_with_trailer``), so that a
record torn by a power loss is found at the next start even where its size fields survived.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import mmap
import os
import shutil
import sqlite3
import struct
import sys
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from pincluster.durable import fsync_parent

_log = logging.getLogger("pincluster.raft")


class ConflictOnlyJournal:
    """Wraps a PySyncObj ``Journal`` (file or memory); same interface."""

    def __init__(self, inner: Any) -> None:
        self._j = inner
        #: A file journal: its records get a checksum trailer on the disk (``_with_trailer``).
        self._file = _journal_path(inner) is not None
        if self._file:
            _strip_trailers(inner)
        self._cut: int | None = None
        self.kept = 0
        self.truncated = 0
        #: Every entry up to this Raft index was on the disk at the last ``flush`` (0: none known to be). An
        #: entry at or below it survives a power loss here, so a state write of it needs no fsync of its own
        #: (``RaftConsensus._writer_loop``). Lowered when entries are dropped or the file is rewritten.
        self.synced_index = 0
        #: Called with the entries kept by ``_settle`` (not re-sent by the leader): PySyncObj had already
        #: rolled back the membership changes among them, so they must be applied again.
        self.on_kept_tail: Callable[[list[Any]], None] | None = None

    # -- the deferred truncation -----------------------------------------------------------------------------

    def _settle(self) -> None:
        cut = self._cut
        if cut is None:
            return
        self._cut = None
        n = len(self._j)
        if cut >= n:
            return
        term = self._j.getCurrentTerm()
        pos = cut
        while pos < n and self._j[pos][2] == term:
            pos += 1
        if pos < n:
            self.truncated += n - pos
            _log.debug("Raft journal: dropping %d unchecked entries of older terms from position %d", n - pos, pos)
            self._drop_from(pos)
        if pos > cut:
            self.kept += pos - cut
            if self.on_kept_tail is not None:
                self.on_kept_tail([self._j[i] for i in range(cut, pos)])

    def deleteEntriesFrom(self, entryFrom: int) -> None:
        self._settle()
        self._cut = max(0, entryFrom)

    def add(self, command: bytes, idx: int, term: int) -> None:
        cut = self._cut
        if cut is not None:
            if cut < len(self._j):
                existing = self._j[cut]
                if existing[1] == idx and existing[2] == term:
                    self._cut = cut + 1
                    self.kept += 1
                    return
                self.truncated += len(self._j) - cut
                _log.info("Raft journal: entry %d conflicts with the leader's (term %d, ours %d); truncating",
                          idx, term, existing[2])
                self._drop_from(cut)
            self._cut = None
        if self._file:
            _add_checked(self._j, command, idx, term)
        else:
            self._j.add(command, idx, term)

    def _drop_from(self, pos: int) -> None:
        """Delete the entries from position ``pos`` on; entries written there later are not synced."""
        self.synced_index = min(self.synced_index, int(self._j[pos][1]) - 1)
        self._j.deleteEntriesFrom(pos)

    # -- syncing ----------------------------------------------------------------------------------------------

    def _flush(self) -> None:
        """Sync the journal file (PySyncObj's ``flush``); the entries it held are then on the disk."""
        self._settle()
        n = len(self._j)
        last = int(self._j[n - 1][1]) if n else 0
        self._j.flush()
        self.synced_index = last

    # -- everything else settles first, then delegates --------------------------------------------------------

    def clear(self) -> None:
        self._cut = None
        self.synced_index = 0
        self._j.clear()

    def deleteEntriesTo(self, entryTo: int) -> None:
        """Compaction: drop the entries before position ``entryTo`` (a snapshot holds them now).

        PySyncObj's file journal rewrites the entries it keeps in place, from the start of its file: a power
        loss during the rewrite could leave neither the old journal nor the new one on the disk, and lose
        entries that were synced and vouched for. A file journal is instead rewritten as a new file, synced,
        then renamed over the old one, so the disk holds one or the other whole."""
        self._settle()
        path = _journal_path(self._j)
        if path is None:
            self.synced_index = 0
            self._j.deleteEntriesTo(entryTo)
            return
        keep = [self._j[i] for i in range(entryTo, len(self._j))]
        self._j = _rewritten(self._j, path, keep)
        self.synced_index = int(keep[-1][1]) if keep else 0
        _log.info("Raft journal compacted: %d entries before the snapshot dropped, %d kept (new file %s)",
                  entryTo, len(keep), path)

    def __getitem__(self, item: Any) -> Any:
        self._settle()
        return self._j[item]

    def __len__(self) -> int:
        self._settle()
        return len(self._j)

    def __getattr__(self, name: str) -> Any:
        # setRaftCommitIndex, getCurrentTerm, setCurrentTerm, onOneSecondTimer, _destroy …
        if name.startswith("__"):
            raise AttributeError(name)
        self._settle()
        attr = getattr(self._j, name)  # AttributeError for ``flush`` of a journal in memory: nothing to sync
        return self._flush if name == "flush" else attr


def _journal_path(journal: Any) -> str | None:
    """The file of a PySyncObj ``FileJournal`` (None for a journal in memory)."""
    rf = getattr(journal, "_FileJournal__journalFile", None)
    return None if rf is None else str(rf._ResizableFile__fileName)


def _rewritten(old: Any, path: str, keep: list[Any]) -> Any:
    """A ``FileJournal`` at ``path`` holding ``keep``, written to a new file that replaces ``old``'s atomically."""
    import pysyncobj.journal as pj

    tmp = path + ".compact"
    for leftover in (tmp, tmp + ".meta"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(leftover)
    fresh = pj.FileJournal(tmp)
    for command, idx, term in keep:
        fresh.add(_with_trailer(command, idx, term), idx, term)
    fresh._destroy()  # msync of the whole file, then close
    old._destroy()
    os.replace(tmp, path)
    fsync_parent(path)
    new = pj.FileJournal(path)
    _strip_trailers(new)
    # term, vote and commit index as the old journal held them (stored or not yet stored)
    new._FileJournal__meta = old._FileJournal__meta
    new._FileJournal__metaSaved = old._FileJournal__metaSaved
    return new


_SIZE = struct.Struct("<I")
_IDX_TERM = struct.Struct("<QQ")

# -- record checksums -------------------------------------------------------------------------------------------
# PySyncObj's record is ``size | index, term | command | size``, with no checksum: a record torn by a power loss
# whose two size fields reached the disk (a record spans several pages, written in no fixed order) was loaded as
# it was, and applied: a follower replays it from its journal, and the leader never sends an entry again that
# the follower's log already holds at the same index and term. So the command written to the file ends with a
# trailer: the CRC-32 of the record's index, term and command, then a mark. Only the file holds it: the entries
# in memory (what PySyncObj applies and sends to other peers) are the commands alone, so the wire and other
# versions' peers see no change. A version without trailers reading such a file unpickles the commands with the
# trailer after them, which ``pickle.loads`` ignores.
_MARK = b"pcJ\x01"
_TRAILER = struct.Struct("<I4s")
_NO_OP = 1  # PySyncObj's ``_COMMAND_TYPE.NO_OP``: a one-byte command; its other commands are pickles
_PICKLE_STOP = ord(".")


def _with_trailer(command: bytes, idx: int, term: int) -> bytes:
    """``command`` as a file record holds it: with the checksum trailer."""
    crc = zlib.crc32(command, zlib.crc32(_IDX_TERM.pack(idx, term)))
    return bytes(command) + _TRAILER.pack(crc, _MARK)


def _add_checked(journal: Any, command: bytes, idx: int, term: int) -> None:
    """``journal.add`` of a file journal: the file gets the trailer, the entry in memory the command alone."""
    journal.add(_with_trailer(command, idx, term), idx, term)
    journal._FileJournal__journal[-1] = (command, idx, term)


def _has_trailer(command: bytes) -> bool:
    """Whether a command as the file holds it ends with the checksum trailer (a PySyncObj command never ends
    with the mark: it is a one-byte no-op or a pickle)."""
    return len(command) > _TRAILER.size and command.endswith(_MARK)


def _strip_trailers(journal: Any) -> None:
    """The entries a file journal loaded, without their trailers (``repair_torn_tail`` checked them)."""
    entries: list[tuple[bytes, int, int]] = journal._FileJournal__journal
    for i, (command, idx, term) in enumerate(entries):
        if _has_trailer(command):
            entries[i] = (command[: -_TRAILER.size], idx, term)


def _record_ok(m: mmap.mmap, pos: int, n: int) -> bool:
    """Whether the record at ``pos`` (``n`` bytes of index, term and command) is whole: its checksum matches,
    or, without a trailer (written by an older version, or by this one after a downgrade), it looks like a
    PySyncObj command: a one-byte no-op, or a pickle, which ends with its STOP opcode (zeros do not)."""
    record = m[pos + 4 : pos + 4 + n]
    command = record[_IDX_TERM.size :]
    if _has_trailer(command):
        crc: int = _SIZE.unpack_from(record, n - _TRAILER.size)[0]
        return zlib.crc32(record[: n - _TRAILER.size]) == crc
    return (len(command) == 1 and command[0] == _NO_OP) or (len(command) > 1 and command[-1] == _PICKLE_STOP)


@contextlib.contextmanager
def _mapped(f: Any) -> Iterator[tuple[mmap.mmap, int, int] | None]:
    """A journal file's read-only mapping, its header's end offset and its size (None: no header yet)."""
    import pysyncobj.journal as pj

    size = os.fstat(f.fileno()).st_size
    if size < pj.FIRST_RECORD_OFFSET:
        yield None
        return
    with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        yield m, _SIZE.unpack_from(m, pj.LAST_RECORD_OFFSET_OFFSET)[0], size


def _whole_records(m: mmap.mmap, limit: int) -> Iterator[tuple[int, int, int, int]]:
    """(start, position after it, index, term) of each whole record of a journal file's mapping, up to
    ``limit``: its two size fields agree, its index follows the previous record's (terms never decrease), and
    its checksum matches (``_record_ok``)."""
    import pysyncobj.journal as pj

    pos = pj.FIRST_RECORD_OFFSET
    prev: tuple[int, int] | None = None
    while pos + 4 + _IDX_TERM.size + 4 <= limit:
        (n,) = _SIZE.unpack_from(m, pos)
        if n < _IDX_TERM.size or pos + 8 + n > limit or _SIZE.unpack_from(m, pos + 4 + n)[0] != n:
            return
        idx, term = _IDX_TERM.unpack_from(m, pos + 4)
        if prev is not None and (idx != prev[0] + 1 or term < prev[1]):
            return
        if not _record_ok(m, pos, n):
            return
        prev = (idx, term)
        yield pos, pos + n + 8, idx, term
        pos += n + 8


def committed_entries(path: str) -> tuple[int, int] | None:
    """(first, last) Raft index of the pinset changes (PySyncObj's regular commands, not its no-ops or
    membership changes) a journal file holds up to the commit index its meta file stored (None: none, or no
    journal). Read-only: for offline tools, which see the state only."""
    import pysyncobj.journal as pj
    from pysyncobj.syncobj import _COMMAND_TYPE

    if not os.path.exists(path):
        return None
    commit = int(pj.MetaStorer(path + ".meta").getMeta().get("raftCommitIndex", 0))
    try:
        f = open(path, "rb")  # noqa: SIM115  (closed by the with below)
    except FileNotFoundError:
        return None
    first = last = 0
    with f, _mapped(f) as mapped:
        if mapped is None:
            return None
        m, end, size = mapped
        for start, _after, idx, _term in _whole_records(m, min(end, size)):
            if idx > commit:
                break
            if m[start + 4 + _IDX_TERM.size] == _COMMAND_TYPE.REGULAR:
                first, last = first or idx, idx
    return (first, last) if last else None


def repair_torn_tail(path: str) -> int:
    """Cut a journal file back to its last whole record; returns how many bytes of records it dropped.

    PySyncObj appends a record through a shared mapping of the file, then moves the header's end offset. The
    pages reach the disk in no fixed order, so a power loss while they are written (a journal sync under load
    is often in progress) can leave the end offset past a record that is not on the disk, or only partly:
    zeros, or older bytes. PySyncObj's loader then fails on it and the peer cannot start. Such a record was
    not synced, so this peer never told another it had it (``transport.SecretTCPTransport.send``): dropping
    it, and whatever follows, loses nothing Raft counted. A record is whole when its two size fields agree,
    its index follows the previous record's (terms never decrease) and its checksum matches (records of older
    versions, which have none, must look like a command)."""
    import pysyncobj.journal as pj

    try:
        f = open(path, "r+b")  # noqa: SIM115
    except FileNotFoundError:
        return 0
    with f:
        with _mapped(f) as mapped:
            if mapped is None:
                return 0
            m, end, size = mapped
            tail = deque(_whole_records(m, min(end, size)), maxlen=1)  # the last whole record
        pos, last_idx = (tail[0][1], tail[0][2]) if tail else (pj.FIRST_RECORD_OFFSET, None)
        if pos >= end:
            return 0
        f.seek(pj.LAST_RECORD_OFFSET_OFFSET)
        f.write(_SIZE.pack(pos))
        f.flush()
        os.fsync(f.fileno())
    _log.warning("Raft journal %s: dropped %d bytes of records after entry %s that were not whole on the disk "
                 "(a power loss while they were written?); they were never synced, so no other peer counted them",
                 path, end - pos, "none" if last_idx is None else last_idx)
    return end - pos


class _DeferredTruncationFilter(logging.Filter):
    """PySyncObj logs "truncating already-applied log entries" before it calls ``deleteEntriesFrom``; with
    ``ConflictOnlyJournal`` nothing is truncated unless an entry conflicts, so the CRITICAL line is wrong."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("truncating already-applied log entries")


def _store_meta_durably(storer: Any, meta: Any) -> None:
    """PySyncObj's ``MetaStorer.storeMeta`` (term, vote, commit index), with the fsyncs it lacks.

    Raft needs the term and vote on disk before a vote is sent: without them a peer that loses power can vote
    twice in one term. PySyncObj writes a temporary file and renames it without syncing either."""
    from pysyncobj.pickle import dumps

    path = storer.getPath()
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(dumps(meta))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_parent(path)
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        stop_on_full_disk("the Raft term and vote", path, exc)  # never vote or campaign on a term not stored


def _sync_mapped_file(rf: Any) -> None:
    """PySyncObj's ``ResizableFile.flush`` (its journal is a shared ``mmap`` of the file), on Linux.

    ``mmap.flush`` calls msync while holding the GIL, so the whole peer stopped for every journal sync (17-23%
    of the GIL-held samples of a peer under ingest: REST requests, RPC and the state writer all waited on the
    disk). ``fdatasync`` of the file releases the GIL and writes the same pages: Linux marks a page of a
    shared file mapping dirty in the page cache when it is written through the mapping, and fdatasync writes
    every dirty page of the file (with its size), which is also what msync(MS_SYNC) does there."""
    os.fdatasync(rf._ResizableFile__f.fileno())


def _durable_replace(old: str, new: str) -> None:
    """PySyncObj's ``atomicReplace`` (``os.rename`` on POSIX) of a snapshot file, with the syncs it lacks: the
    file's data before the rename, the directory after it.

    A follower renames the snapshot the leader sent over its own, then clears its journal and takes (and
    syncs, and vouches for) the entries after the snapshot. Without the syncs a power loss after that could
    leave a torn snapshot, which the peer refuses to start on, or the previous one, which the new journal does
    not match (PySyncObj then clears the journal: entries this peer vouched for would be gone)."""
    fd = os.open(old, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(old, new)
    fsync_parent(new)


def _reserving_write(rf: Any, offset: int, values: bytes) -> None:
    """PySyncObj's ``ResizableFile.write``, with the space the file grows by reserved (``posix_fallocate``).

    The journal is a shared mapping of a file that grows by ``ftruncate``: a sparse hole. A write into a hole on
    a full filesystem has no block to land in, and the kernel kills the process with SIGBUS (seen: a peer whose
    disk filled died with exit -7 and not a word in its log). With the space reserved as the file grows, a full
    disk shows up as ENOSPC there, before anything is written, and the peer stops itself saying so
    (``stop_on_full_disk``)."""
    mm = rf._ResizableFile__mm
    end = offset + len(values)
    if end > mm.size():
        current = new = mm.size()
        while end > new:
            new = max(int(new * rf._ResizableFile__resizeFactor), end)
        fd = rf._ResizableFile__f.fileno()
        try:
            os.posix_fallocate(fd, current, new - current)
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            stop_on_full_disk("the Raft journal", str(rf._ResizableFile__fileName), exc)
        try:
            mm.resize(new)
        except (SystemError, OSError):
            rf._ResizableFile__extand(max(0, new - os.fstat(fd).st_size))  # remaps the file, grown above
        mm = rf._ResizableFile__mm
    mm[offset:end] = values


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the disk (or the user's quota) is full: ENOSPC/EDQUOT, or SQLite's "database or
    disk is full"."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return isinstance(exc, sqlite3.OperationalError) and "disk is full" in str(exc)


def stop_on_full_disk(what: str, path: str, exc: BaseException) -> None:
    """A write the peer cannot do without (``what``, at ``path``) failed for lack of space: stop the peer at once,
    saying why and what to do.

    Nothing that was not written is vouched for, so the peer's data is as it was, and once it has room again it
    catches up from the other peers. Going on would be worse: PySyncObj adds an entry to its list before writing
    it, and takes a new term before storing it, so it would vouch for entries and votes it does not have; and a
    peer whose state cannot be written takes requests it never answers."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        free = f"{shutil.disk_usage(folder).free / 1e6:.1f} MB free"
    except OSError:
        free = "free space unknown"
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    _log.critical("%s cannot be written (%s): %s (%s in %s). This peer stops now, with nothing lost: free some "
                  "space there and start it again; it catches up from the other peers.",
                  what, path, reason, free, folder)
    logger: logging.Logger | None = _log
    while logger is not None:  # the line must reach the log before the process ends
        for handler in logger.handlers:
            with contextlib.suppress(Exception):
                handler.flush()
        logger = logger.parent if logger.propagate else None
    os._exit(DISK_FULL_EXIT)


#: The exit status of a peer stopped by a full disk (``stop_on_full_disk``): EX_IOERR.
DISK_FULL_EXIT = 74


def install() -> None:
    """Make PySyncObj create every journal wrapped in ``ConflictOnlyJournal``, store its term/vote file
    durably, sync a snapshot received from the leader before and after renaming it, and sync its journal file
    without holding the GIL on Linux (idempotent)."""
    import pysyncobj.journal as pj
    import pysyncobj.serializer as pser
    import pysyncobj.syncobj as ps

    if getattr(ps.createJournal, "_pincluster", False):
        return
    pj.MetaStorer.storeMeta = _store_meta_durably
    pser.atomicReplace = _durable_replace
    if sys.platform.startswith("linux"):
        pj.ResizableFile.flush = _sync_mapped_file
    if hasattr(os, "posix_fallocate"):
        pj.ResizableFile.write = _reserving_write
    logging.getLogger("pysyncobj.syncobj").addFilter(_DeferredTruncationFilter())
    original = ps.createJournal

    def create_journal(journalFile: str | None = None) -> ConflictOnlyJournal:
        if journalFile is not None:
            repair_torn_tail(journalFile)
        return ConflictOnlyJournal(original(journalFile))

    create_journal._pincluster = True  # type: ignore[attr-defined]
    ps.createJournal = create_journal
