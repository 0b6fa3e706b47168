"""Raft consensus on PySyncObj, with the pinset in SQLite (``state.store``).

How the PySyncObj hazards measured in FINDINGS.md are handled here:

- pickles: every frame is authenticated with a key derived from the cluster secret (``transport``) and every
  unpickling goes through an allow-list (``safe_pickle.install``); log entries carry msgpack bytes only;
- unbounded in-flight commands: at most ``max_inflight`` (≤ 1000) Raft commands are outstanding; each command is
  a batch of up to ``batch_ops`` pin operations, so concurrent writers share round trips and fsyncs. Batching
  adapts: while ``eager_inflight`` commands are in flight, a new one leaves only once a full batch is waiting,
  so operations gather behind the commands in flight (one Raft entry per pin costs the leader a pickled,
  sealed append-entries message per follower per pin);
- apply must be idempotent: every entry is written together with its Raft index, and an index at or below
  the stored one is skipped;
- group commit: applied entries go to a state writer thread, which writes all that queued up while it was
  busy in one SQLite transaction (one fsync), so the Raft thread never waits on the disk. PySyncObj calls a
  command's callback right after "applying" it, so success callbacks queue behind their entries and fire
  once those are durable: a write is still acknowledged only once committed to this peer's SQLite. A failed
  write is retried (nothing acknowledged meanwhile); snapshots wait until the writer has caught up;
- followers truncating entries they already applied (and then compaction emptying the journal, which made the
  tick thread crash on every tick): the journal truncates only on a real conflict (``journal``), and the
  serializer checker refuses a compaction that would leave the journal shorter than the snapshot;
- compaction pickling the state: the snapshot is a ``VACUUM INTO`` copy of the database made by a background
  thread (``serializeChecker``), so the Raft thread only starts it; threshold 100k entries, 2 min, or 16 MiB
  of entries (PySyncObj keeps the journal in memory). At start, PySyncObj cleared a journal that did not begin
  with the snapshot's last two entries, the entries after them too (a stop between the snapshot and the
  compaction); such a journal now drops only what is before them (``_journal_from_snapshot``);
- the journal: every peer syncs its journal before a message that tells another peer it holds entries (the
  leader's append-entries, a follower's answer; ``sync_journal``, see ``transport.SecretTCPTransport.send``),
  so a committed entry is on the disk of a majority; a write is acknowledged only after the acknowledging peer
  committed it to SQLite, with an fsync of the WAL unless every entry of the transaction was already in its
  synced journal (``ConflictOnlyJournal.synced_index``), which a restart applies above the state;
- per-message cost: frames are sealed with AES-GCM over protocol-5 pickles (``transport.SealedConnection``),
  PySyncObj's own pickles use protocol 5 (``safe_pickle.install``), and ``_on_tick`` compares a tuple of
  PySyncObj's counters before it builds a ``RaftStatus``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from pysyncobj import SyncObj, SyncObjConf, replicated
from pysyncobj.config import FAIL_REASON, SERIALIZER_STATE
from pysyncobj.pipe_notifier import PipeNotifier

from pincluster.consensus import journal as raft_journal
from pincluster.consensus import safe_pickle
from pincluster.consensus.config import RaftConfig, syncobj_options
from pincluster.consensus.transport import (
    RAFT_PROTOCOL,
    PeerNode,
    RaftAuthenticator,
    SecretTCPTransport,
    raft_request,
    split_host_port,
)
from pincluster.errors import InvalidInput, NotFound, PeerError, StateError, Timeout, Unavailable
from pincluster.observe import tracing
from pincluster.observe.bandwidth import BandwidthCounter, Meter
from pincluster.state.store import (
    GO_RAFT_FILES,
    OP_DELETE,
    OP_PUT,
    Op,
    SnapshotSuperseded,
    SQLiteState,
    SQLiteStore,
    read_snapshot_info,
    refuse_go_raft_data,
)
from pincluster.types.multiaddr import Multiaddr

log = logging.getLogger("pincluster.raft")

MAX_INFLIGHT_LIMIT = 1000
_FAIL_NAMES = {v: k for k, v in vars(FAIL_REASON).items() if not k.startswith("_")}
_TIMED_OUT = -1
_MEMBERSHIP = b"\x02"  # pysyncobj.syncobj._COMMAND_TYPE.MEMBERSHIP

JOURNAL_FILE = "journal"
DUMP_FILE = "snapshot.sqlite"
STATE_FILE = "state.sqlite"
PEERS_FILE = "peers.json"

_ops_encoder = msgspec.msgpack.Encoder()
_ops_decoder = msgspec.msgpack.Decoder(list[tuple[int, bytes, bytes | None]])
_entry_decoder = msgspec.msgpack.Decoder(tuple[bytes, int, int])


@dataclass(frozen=True, slots=True)
class RaftPeer:
    """A member: cluster peer ID and the host:port of its Raft endpoint."""

    peer_id: str
    address: str

    @property
    def spec(self) -> str:
        host, port = split_host_port(self.address)
        return PeerNode.spec(self.peer_id, host, port)


@dataclass(frozen=True, slots=True)
class RaftStatus:
    """A consistent view of PySyncObj's state, taken on the Raft thread at each tick."""

    leader: str | None = None
    is_leader: bool = False
    term: int = 0
    commit_index: int = 0
    applied_index: int = 0
    leader_commit_index: int | None = None
    ready: bool = False
    members: frozenset[str] = field(default_factory=frozenset)


def _peer_of(spec: str) -> str:
    return spec.partition("@")[0]


def clean_raft_folder(folder: Path | str, backups_rotate: int = 6) -> Path | None:
    """``state cleanup`` for Raft: rotate ``folder`` to ``<folder>.old.0`` (keeping ``backups_rotate``), or
    delete it when it holds no state worth keeping. Returns the backup path, if one was made."""
    folder = Path(folder)
    if not folder.exists():
        return None
    # IPFS Cluster's (Go) Raft files count as state too: moving over from Go, its pinset is kept as a backup
    has_data = any((folder / name).exists() for name in (DUMP_FILE, STATE_FILE, *GO_RAFT_FILES))
    if not has_data or backups_rotate <= 0:
        shutil.rmtree(folder)
        return None
    base = folder.with_name(folder.name + ".old")
    oldest = Path(f"{base}.{backups_rotate - 1}")
    if oldest.exists():
        shutil.rmtree(oldest)
    for i in range(backups_rotate - 2, -1, -1):
        src = Path(f"{base}.{i}")
        if src.exists():
            src.rename(f"{base}.{i + 1}")
    dest = Path(f"{base}.0")
    folder.rename(dest)
    return dest


class AppliedOps(list[Op]):
    """The operations of one applied Raft entry, handed to ``on_apply``, with ``previous``: the value each
    op's key had in the state just before the op (None: absent). A plain list for consumers that ignore it."""

    previous: list[bytes | None]

    def __init__(self, ops: list[Op], previous: list[bytes | None]) -> None:
        super().__init__(ops)
        self.previous = previous


class _PinsetSyncObj(SyncObj):  # type: ignore[misc]
    """The replicated object. Its one replicated method applies a msgpack batch of pin operations."""

    def __init__(self, owner: RaftConsensus, self_spec: str, others: Sequence[str], conf: SyncObjConf,
                 transport_class: type) -> None:
        self._owner = owner
        super().__init__(self_spec, list(others), conf, nodeClass=PeerNode, transportClass=transport_class)

    @property
    def authenticator(self) -> RaftAuthenticator:
        return self._owner.authenticator

    @property
    def sync_journal(self) -> bool:
        return self._owner.sync_journal

    @property
    def bandwidth_meter(self) -> Meter | None:
        return self._owner.bandwidth_meter

    @property
    def encryptor(self) -> Any:
        # PySyncObj's TCP code only checks that an encryptor exists; the transport installs per-connection ones.
        return self._owner.authenticator

    def _getEncryptor(self) -> Any:
        return self._owner.authenticator

    def _SyncObj__onMessageReceived(self, node: Any, message: Any) -> None:
        """PySyncObj's handler, except that a follower's success answer never moves the leader's next index
        for it backwards (Raft's pipelined replication, as etcd's ``Progress.MaybeUpdate``).

        Under load the leader sends new entries before the answer to the previous ones arrives; PySyncObj then
        set the next index back to what that answer covered and sent the entries in flight again (a third of
        all entries sent, measured at 50 concurrent pin requests), and the follower replaced them in its
        journal. A follower missing entries still answers ``reset``, which sets the index as before."""
        if type(message) is dict and message.get("type") == "next_node_idx" and message.get("success") \
                and not message.get("reset"):
            next_index: dict[Any, int] = self._SyncObj__raftNextIndex
            before = next_index.get(node)
            super()._SyncObj__onMessageReceived(node, message)
            after = next_index.get(node)
            if before is not None and after is not None and after < before and self._isLeader():
                next_index[node] = before
            return
        super()._SyncObj__onMessageReceived(node, message)

    def _SyncObj__loadDumpFile(self, clearJournal: bool) -> None:
        """PySyncObj's loader of a snapshot; at a restart (not a snapshot from the leader, which replaces the
        log), a journal holding the snapshot's two entries first drops what is before them, so that PySyncObj
        keeps the entries after them (``RaftConsensus._journal_from_snapshot``)."""
        if not clearJournal:
            self._owner._journal_from_snapshot(self._SyncObj__raftLog, self._SyncObj__conf.fullDumpFile)
        super()._SyncObj__loadDumpFile(clearJournal)

    @replicated  # type: ignore[misc,untyped-decorator]
    def apply_ops(self, blob: bytes) -> None:
        self._owner._apply(self.raftLastApplied + 1, self.raftCurrentTerm, blob)


@dataclass(slots=True)
class _Batch:
    ops: list[Op]
    futures: list[asyncio.Future[None]]
    deadline: float
    attempts: int = 0
    done: bool = False
    timer: asyncio.TimerHandle | None = None
    size: int = 0


class RaftConsensus:
    """``Consensus`` over PySyncObj. Create, ``await start()``, use, ``await shutdown()``."""

    def __init__(
        self,
        *,
        peer_id: str,
        config: RaftConfig,
        secret: bytes,
        data_folder: Path | str,
        advertise_host: str | None = None,
        init_peers: Sequence[RaftPeer] = (),
        bootstrap: Sequence[str] = (),
        on_apply: Callable[[list[Op]], None] | None = None,
        transport_class: type = SecretTCPTransport,
        max_inflight: int = 128,
        eager_inflight: int = 8,
        batch_ops: int = 256,
        batch_bytes: int = 32 * 1024,
        durable: bool = True,
        sync_journal: bool = True,
        send_per_tick: bool = True,
        bandwidth: BandwidthCounter | None = None,
    ) -> None:
        if not 1 <= max_inflight <= MAX_INFLIGHT_LIMIT:
            raise InvalidInput(f"max_inflight must be between 1 and {MAX_INFLIGHT_LIMIT}, got {max_inflight}")
        if not peer_id or "@" in peer_id:
            raise InvalidInput(f"invalid peer id {peer_id!r}")
        self.peer_id = peer_id
        self.config = config
        # the section's durations, in the seconds asyncio and PySyncObj take
        self._network_timeout = config.network_timeout.total_seconds()
        self._leader_timeout = config.wait_for_leader_timeout.total_seconds()
        self._retry_delay = config.commit_retry_delay.total_seconds()
        self.folder = Path(data_folder)
        self.authenticator = RaftAuthenticator(secret)
        #: Counts the bytes of every Raft connection (``GET /health/bandwidth``), when given a counter.
        self.bandwidth_meter = bandwidth.meter(RAFT_PROTOCOL) if bandwidth is not None else None
        self._bind_host, self._port = self._listen_host_port(config.listen_multiaddress)
        host = advertise_host or self._bind_host
        if host in ("0.0.0.0", "::"):
            raise InvalidInput(
                "consensus.raft.listen_multiaddress listens on every interface: pass the address other peers "
                "should dial (advertise_host)"
            )
        self.self_spec = PeerNode.spec(peer_id, host, self._port)
        self._init_peers = list(init_peers)
        self._bootstrap = list(bootstrap)
        self._join_via: str | None = None
        self._on_apply = on_apply
        self._transport_class = transport_class
        self._max_inflight = max_inflight
        self._eager_inflight = max(1, min(eager_inflight, max_inflight))
        self._inflight = 0
        self._batch_ops = batch_ops
        self._batch_bytes = batch_bytes
        self._durable = durable
        self.sync_journal = sync_journal
        self._send_per_tick = send_per_tick
        self._sent_mark: tuple[int, int] = (0, 0)
        self._store: SQLiteStore | None = None
        self._state: SQLiteState | None = None
        self._sync: _PinsetSyncObj | None = None
        self._transport: SecretTCPTransport | None = None  # the journal-syncing transport, when it is ours
        self._loop: asyncio.AbstractEventLoop | None = None
        self._status = RaftStatus()
        self._changed: asyncio.Event | None = None
        #: Coroutines in ``_wait_for``: the Raft thread wakes the event loop on a status change only for them
        #: (a wake-up is a syscall on each side, and under writes the status changes with every commit).
        self._status_waiters = 0
        self._pending: deque[tuple[Op, asyncio.Future[None]]] = deque()
        self._wake: asyncio.Event | None = None
        self._window: asyncio.Semaphore | None = None
        self._batcher: asyncio.Task[None] | None = None
        self._closing = False
        self._ser_state = SERIALIZER_STATE.NOT_SERIALIZING
        self._ser_generation = 0
        self._ser_index = 0
        self._bytes_since_snapshot = 0
        self._compaction_forced = False
        self._saved_members: frozenset[str] | None = None
        self.snapshots_written = 0
        self._tasks: set[asyncio.Future[None]] = set()
        self._notifier: PipeNotifier | None = None
        # Group commit: entries applied by PySyncObj and not yet written (in order, with the batches whose
        # success waits for them), handed from the Raft thread to the state writer thread.
        self._wq: list[tuple[int, int, list[Op], int] | _Batch] = []
        self._wcond = threading.Condition()
        self._writing = False
        self._write_gen = 0  # bumped by the writer after each transaction (the tick's cheap change test)
        self._tick_key: tuple[Any, ...] | None = None
        self._inflight_first: int | None = None
        self._writer: threading.Thread | None = None
        self._writer_stop = False
        self.group_commits = 0
        self.group_commits_fsynced = 0  # of which synced the state's WAL (entries not yet on the disk otherwise)
        self.commands_sent = 0  # Raft commands submitted by this peer (attempts), and the ops they carried
        self.ops_sent = 0

    # -- setup --------------------------------------------------------------------------------------------

    @staticmethod
    def _listen_host_port(maddr: Multiaddr) -> tuple[str, int]:
        try:
            host, port = maddr.tcp_host_port()
        except InvalidInput as exc:
            raise InvalidInput(f"consensus.raft.listen_multiaddress: {exc}") from exc
        if not port:
            raise InvalidInput("consensus.raft.listen_multiaddress needs a fixed TCP port (other peers dial it)")
        return str(host), int(port)

    @property
    def state(self) -> SQLiteState:
        if self._state is None:
            raise Unavailable("the Raft consensus is not started")
        return self._state

    @property
    def store(self) -> SQLiteStore:
        if self._store is None:
            raise Unavailable("the Raft consensus is not started")
        return self._store

    def status(self) -> RaftStatus:
        return self._status

    @property
    def entries_replicated(self) -> tuple[int, int]:
        """(log entries this peer sent to others as leader, how many of them it had sent to that peer before)."""
        tr = self._transport
        return (tr.entries_sent, tr.entries_resent) if tr is not None else (0, 0)

    async def start(self) -> None:
        """Open the state (refusing other format versions), find the peerset, start the Raft thread."""
        safe_pickle.install()
        raft_journal.install()
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        self._wake = asyncio.Event()
        self._window = asyncio.Semaphore(self._max_inflight)
        refuse_go_raft_data(self.folder)  # a Go peer's folder would otherwise start as an empty pinset
        self.folder.mkdir(parents=True, exist_ok=True)
        if (self.folder / DUMP_FILE).exists():
            # PySyncObj only logs a snapshot it cannot load: refuse one of another format version here, before
            # anything starts (StateVersionError names both versions and the upgrade command).
            await asyncio.to_thread(read_snapshot_info, self.folder / DUMP_FILE)
        self._store = await asyncio.to_thread(SQLiteStore, self.folder / STATE_FILE, durable=self._durable)
        self._state = SQLiteState(self._store)
        self._writer_stop = False
        self._writer = threading.Thread(target=self._writer_loop, name="raft-state-writer", daemon=True)
        self._writer.start()
        members = await self._initial_members()
        others = [m for m in members if m != self.self_spec]
        opts = syncobj_options(self.config)
        conf = SyncObjConf(
            **opts,
            dynamicMembershipChange=True,
            journalFile=str(self.folder / JOURNAL_FILE),
            fullDumpFile=str(self.folder / DUMP_FILE),
            serializer=self._serialize,
            deserializer=self._deserialize,
            serializeChecker=self._serialize_checker,
            bindAddress=f"{self._bind_host}:{self._port}" if ":" not in self._bind_host
            else f"[{self._bind_host}]:{self._port}",
            commandsQueueSize=max(4 * self._max_inflight, 1000),
            appendEntriesBatchSizeBytes=256 * 1024,
            appendEntriesUseBatch=self._send_per_tick,
            logCompactionBatchSize=1024 * 1024,
            maxBindRetries=10,
            bindRetryTime=0.5,
            # The poll wakes on every socket event and on our submissions (PipeNotifier), so the tick period
            # only paces timers (elections, heartbeats); 5 ms ticks kept an idle peer busy.
            autoTickPeriod=min(0.05, opts["appendEntriesPeriod"]),
        )
        log.info("starting Raft as %s with peers %s", self.self_spec, others or "(none)")
        # Constructed on the loop's thread: PySyncObj's tick thread stops when its creator thread ends.
        self._sync = _PinsetSyncObj(self, self.self_spec, others, conf, self._transport_class)
        transport = getattr(self._sync, "_SyncObj__transport", None)
        self._transport = transport if isinstance(transport, SecretTCPTransport) else None
        journal = getattr(self._sync, "_SyncObj__raftLog", None)
        if isinstance(journal, raft_journal.ConflictOnlyJournal):
            journal.on_kept_tail = self._reapply_membership
        try:
            await asyncio.to_thread(self._sync.waitBinded)
        except Exception as exc:
            self._sync.destroy()
            self._stop_writer()
            raise Unavailable(
                f"cannot listen for Raft on {self.config.listen_multiaddress}: {exc}; is the port in use?"
            ) from exc
        self._sync.addOnTickCallback(self._on_tick)
        self._batcher = asyncio.create_task(self._run_batcher(), name="raft-batcher")
        if self._join_via is not None:
            try:
                await self._request_add(self._join_via)
            except BaseException:
                await self.shutdown()
                raise

    async def _initial_members(self) -> list[str]:
        saved = self.folder / PEERS_FILE
        if saved.exists():
            try:
                members = json.loads(saved.read_text())
                if isinstance(members, list) and all(isinstance(m, str) for m in members):
                    return sorted(set(self._with_own_address(members)) | {self.self_spec})
            except (OSError, ValueError) as exc:
                raise StateError(f"cannot read {saved}: {exc}; remove it and start with a bootstrap peer") from exc
        if self._bootstrap:
            return await self._join(self._bootstrap)
        members = {p.spec for p in self._init_peers} | {self.self_spec}
        return sorted(members)

    async def _join(self, addresses: Sequence[str]) -> list[str]:
        """Take the peerset from a member (over the authenticated channel); ``start`` then asks it to add us.

        PySyncObj's order for a new member: start it knowing the current members, then add it. Adding it first
        would stall: the change must be acknowledged by a majority of the new peerset, which counts the new
        peer, and a cluster of one would need it before it runs.
        """
        errors: list[str] = []
        timeout = self._network_timeout
        for address in addresses:
            try:
                status = await asyncio.to_thread(raft_request, self.authenticator, address, ["status"], timeout)
            except PeerError:
                raise
            except (Unavailable, InvalidInput) as exc:
                errors.append(str(exc))
                continue
            members = self._members_from_status(status)
            if not members:
                errors.append(f"{address} did not report its peerset")
                continue
            self._join_via = address
            return sorted(members | {self.self_spec})
        raise Unavailable("could not join through any bootstrap peer: " + "; ".join(errors))

    async def _request_add(self, address: str) -> None:
        """Ask the member at ``address`` to add this (running) peer to the peerset, and wait for the commit."""
        res = await asyncio.to_thread(
            raft_request, self.authenticator, address, ["add", self.self_spec], self._network_timeout
        )
        if not (isinstance(res, str) and res.startswith("SUCCESS")):
            # PySyncObj refuses to add a member twice, where hashicorp-raft's AddVoter with the same id and
            # address succeeds: a peer whose raft/ folder was wiped rejoins as the member it already is. The
            # member's own view of the peerset (not ours: it starts with us in it) decides.
            status = await asyncio.to_thread(
                raft_request, self.authenticator, address, ["status"], self._network_timeout
            )
            if self.self_spec not in self._members_from_status(status):
                raise Unavailable(f"{address} refused to add this peer to the Raft peerset: {res}")
            log.info("rejoined the Raft peerset through %s (this peer was already a member)", address)
            return
        log.info("joined the Raft peerset through %s", address)

    @staticmethod
    def _members_from_status(status: Any) -> set[str]:
        if not isinstance(status, dict):
            raise Unavailable(f"unexpected Raft status answer: {status!r}")
        members = {k[len("partner_node_status_server_"):] for k in status if
                   isinstance(k, str) and k.startswith("partner_node_status_server_")}
        me = status.get("self")
        if me is not None:
            members.add(str(me.id))
        return members

    # -- Raft thread: apply, snapshots, status ---------------------------------------------------------------

    def _apply(self, index: int, term: int, blob: bytes) -> None:
        """Raft thread: PySyncObj applies an entry; queue it for the state writer (group commit)."""
        try:
            ops: list[Op] = list(_ops_decoder.decode(blob))
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.error("skipping Raft entry %d: it is not a valid operation batch (%s)", index, exc)
            ops = []  # still recorded, so that the applied index moves past it
        with self._wcond:
            self._wq.append((index, term, ops, len(blob)))
            self._wcond.notify()

    def _defer_ack(self, batch: _Batch) -> bool:
        """Raft thread: hold a success callback until every entry applied before it is written."""
        with self._wcond:
            if self._writer is None or (not self._writing and not self._wq):
                return False
            self._wq.append(batch)
            self._wcond.notify()
            return True

    def _first_unwritten(self) -> int | None:
        """Index of the oldest applied entry not yet in the state (None: the state holds every one)."""
        with self._wcond:
            if self._inflight_first is not None:
                return self._inflight_first
            for item in self._wq:
                if isinstance(item, tuple):
                    return item[0]
            return None

    def _drain(self, timeout: float) -> bool:
        """Wait until every applied entry is in the state (before a snapshot is taken or loaded)."""
        with self._wcond:
            return self._wcond.wait_for(
                lambda: not self._writing and not any(isinstance(i, tuple) for i in self._wq), timeout
            )

    def _writer_loop(self) -> None:
        """State writer thread: writes what the Raft thread applied, as many entries per transaction (one
        fsync) as have queued up meanwhile, then releases their changes and acknowledgements in order."""
        store = self._store
        assert store is not None
        while True:
            with self._wcond:
                while not self._wq and not self._writer_stop:
                    self._wcond.wait()
                if not self._wq:
                    return
                items, self._wq = self._wq, []
                entries = [i for i in items if isinstance(i, tuple)]
                acks = [i for i in items if isinstance(i, _Batch)]
                self._writing = True
                self._inflight_first = entries[0][0] if entries else None
            ok = True
            results: list[list[bytes | None] | None] = []
            # Entries already on the disk in this peer's synced journal survive a power loss there (a restart
            # applies the journal above the state's applied index), so their commit needs no fsync of its own.
            fsync = bool(entries) and entries[-1][0] > self._journal_synced_index()
            failures, reported = 0, 0.0
            try:
                while entries:
                    try:
                        results = store.apply_many([(i, t, ops) for i, t, ops, _n in entries], fsync=fsync)
                        if fsync:
                            self.group_commits_fsynced += 1
                        if failures:
                            log.warning("writing to the state works again, after %d failed attempts", failures)
                        break
                    except Exception as exc:
                        if raft_journal.is_disk_full(exc):
                            raft_journal.stop_on_full_disk("the state", str(store.path), exc)
                        failures += 1
                        # Retried every 0.2 s until it works (nothing is acknowledged meanwhile): the traceback
                        # once, then a line every 30 s, not a traceback per attempt.
                        if failures == 1:
                            log.exception("writing %d Raft entries to the state failed; retrying until it works",
                                          len(entries))
                            reported = time.monotonic()
                        elif time.monotonic() - reported >= 30:
                            log.error("writing to the state still fails after %d attempts: %s", failures, exc)
                            reported = time.monotonic()
                        if self._writer_stop:
                            ok = False
                            break
                        time.sleep(0.2)
            finally:
                with self._wcond:
                    self._writing = False
                    self._inflight_first = None
                    self._write_gen += 1
                    self._wcond.notify_all()
            if ok:
                self._written(entries, results, acks)

    def _journal_synced_index(self) -> int:
        """Raft index up to which this peer's journal is on the disk (``ConflictOnlyJournal.synced_index``)."""
        return int(getattr(getattr(self._sync, "_SyncObj__raftLog", None), "synced_index", 0))

    def _written(self, entries: list[tuple[int, int, list[Op], int]], results: list[list[bytes | None] | None],
                 acks: list[_Batch]) -> None:
        if entries:
            self.group_commits += 1
        applied: list[AppliedOps] = []
        for (_i, _t, ops, size), previous in zip(entries, results, strict=True):
            if previous is None:
                continue  # already applied before (journal replay)
            self._bytes_since_snapshot += size
            if ops:
                applied.append(AppliedOps(ops, previous))
        if (self._bytes_since_snapshot > self.config.compaction_max_bytes and not self._compaction_forced
                and self._sync is not None):
            self._compaction_forced = True
            self._sync.forceLogCompaction()
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
            if applied and self._on_apply is not None and not self._closing:
                loop.call_soon_threadsafe(self._deliver_applied, applied)
            if acks:
                loop.call_soon_threadsafe(self._deliver_acks, acks)

    def _stop_writer(self) -> None:
        """After the Raft thread stopped: let the writer write what is queued, then end it."""
        writer = self._writer
        if writer is None:
            return
        with self._wcond:
            self._writer_stop = True
            self._wcond.notify_all()
        writer.join(timeout=60)
        self._writer = None

    def _deliver_applied(self, applied: list[AppliedOps]) -> None:
        on_apply = self._on_apply
        if on_apply is None:
            return
        for ops in applied:
            on_apply(ops)

    def _deliver_acks(self, acks: list[_Batch]) -> None:
        for batch in acks:
            self._on_result(batch, FAIL_REASON.SUCCESS)

    def _reapply_membership(self, entries: list[Any]) -> None:
        """Raft thread: re-apply membership changes in log entries kept by ``ConflictOnlyJournal``."""
        sync = self._sync
        change = getattr(sync, "_SyncObj__doChangeCluster", None)
        if change is None:
            return
        for command, _idx, _term in entries:
            if command[:1] == _MEMBERSHIP:
                change(safe_pickle.safe_loads(command[1:]))

    def _serialize(self, filename: str, data: tuple[Any, Any, Any]) -> None:
        """PySyncObj's serializer hook: start a background snapshot and return at once."""
        if not self._drain(10.0):  # the snapshot must hold every entry applied so far
            raise StateError("the state writer is behind or failing; the Raft snapshot waits for the next attempt")
        last, prev, cluster = data
        extra = {
            "raft_last": msgspec.msgpack.encode([bytes(last[0]), int(last[1]), int(last[2])]),
            "raft_prev": msgspec.msgpack.encode([bytes(prev[0]), int(prev[1]), int(prev[2])]),
            "raft_cluster": json.dumps(sorted(str(n.id) for n in cluster)).encode(),
        }
        # PySyncObj passes "<dump>.tmp" and renames it onto "<dump>" right after this returns. We write the
        # dump ourselves, later, from a thread; making sure "<dump>.tmp" does not exist makes that rename fail
        # harmlessly, so the previous snapshot stays in place until ours is complete.
        final = filename[: -len(".tmp")] if filename.endswith(".tmp") else filename
        with contextlib.suppress(FileNotFoundError):
            os.unlink(filename)
        self._ser_state = SERIALIZER_STATE.SERIALIZING
        self._ser_index = int(prev[1])
        generation = self._ser_generation
        started = time.monotonic()
        store = self._store
        assert store is not None

        def work() -> None:
            try:
                info = store.snapshot_to(final, extra, commit=lambda: generation == self._ser_generation)
                self.snapshots_written += 1
                self._bytes_since_snapshot = 0
                self._compaction_forced = False
                log.info("Raft snapshot at index %d (%d pins) written in %.2fs", int(last[1]), info.count,
                         time.monotonic() - started)
                self._ser_state = SERIALIZER_STATE.SUCCESS
            except SnapshotSuperseded as exc:
                log.info("Raft snapshot dropped: %s", exc)
                self._ser_state = SERIALIZER_STATE.FAILED
            except Exception:
                log.exception("writing the Raft snapshot failed")
                self._ser_state = SERIALIZER_STATE.FAILED

        threading.Thread(target=work, name="raft-snapshot", daemon=True).start()

    def _serialize_checker(self) -> int:
        st = self._ser_state
        if st in (SERIALIZER_STATE.SUCCESS, SERIALIZER_STATE.FAILED):
            self._ser_state = SERIALIZER_STATE.NOT_SERIALIZING
        if st == SERIALIZER_STATE.SUCCESS:
            # PySyncObj will now drop the journal up to the snapshot's entry; never let that empty it.
            log_ = getattr(self._sync, "_SyncObj__raftLog", None)
            if log_ is not None and (len(log_) == 0 or log_[-1][1] < self._ser_index + 1):
                log.warning("Raft journal ends before the snapshot just written; keeping the journal as it is")
                return int(SERIALIZER_STATE.FAILED)
        return int(st)

    def _journal_from_snapshot(self, journal: Any, dump: str) -> None:
        """Raft thread, at a restart, before PySyncObj loads its snapshot: when the journal holds the snapshot's
        two entries (the one before the last applied, and that one) after others, drop the others.

        Our snapshot reaches the disk a moment before the journal entries it holds are dropped (PySyncObj drops
        them at its next tick, then the file is rewritten). PySyncObj clears a journal that does not start with
        those two entries, and with it every entry after them: committed, acknowledged, and after a power loss
        perhaps in no state (a state commit of entries in the synced journal skips its fsync). Every peer
        snapshots at about the same index, so one power loss could take them from every peer. Raft keeps the
        entries after a snapshot's last one when the log holds that entry (§7); so does this."""
        try:
            info = read_snapshot_info(dump)
            prev = _entry_decoder.decode(info.extra["raft_prev"])
            last = _entry_decoder.decode(info.extra["raft_last"])
        except (StateError, KeyError, msgspec.DecodeError, msgspec.ValidationError):
            return  # PySyncObj's load (``_deserialize``) says what is wrong with the snapshot
        n = len(journal)
        pos = prev[1] - int(journal[0][1]) if n else 0
        if pos <= 0 or pos + 1 >= n:
            return  # the journal starts with them already, or ends before the snapshot: PySyncObj's case
        if any((bytes(e[0]), int(e[1]), int(e[2])) != want for e, want in ((journal[pos], prev),
                                                                          (journal[pos + 1], last))):
            return
        log.info("Raft journal: starts %d entries before the snapshot at index %d (the peer stopped before the "
                 "journal was compacted); dropping those, keeping the %d after the snapshot", pos, last[1],
                 n - pos - 2)
        journal.deleteEntriesTo(pos)

    def _deserialize(self, filename: str) -> tuple[Any, Any, Any]:
        """PySyncObj's deserializer hook: our own snapshot at restart, or one just received from the leader."""
        if not self._drain(10.0):
            raise StateError("the state writer is behind or failing; cannot load a Raft snapshot now")
        store = self._store
        assert store is not None
        self._ser_generation += 1  # a snapshot still being written from older state must not replace this one
        info = read_snapshot_info(filename)
        if info.applied_index > store.applied_index:
            log.info("loading the Raft snapshot at index %d (%d pins) into the state", info.applied_index, info.count)
            store.restore_from(filename)
        try:
            last = _entry_decoder.decode(info.extra["raft_last"])
            prev = _entry_decoder.decode(info.extra["raft_prev"])
            cluster = json.loads(info.extra["raft_cluster"])
        except (KeyError, msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            raise StateError(f"the Raft snapshot {filename} lacks its Raft metadata: {exc}") from exc
        # The snapshot's peerset was saved when it was written: the leader sending it may have moved since
        # (its address is the one this peer follows), and so may this peer (its config says where it is).
        leader = self._sync._getLeader() if self._sync is not None else None
        known = {_peer_of(str(leader.id)): str(leader.id)} if leader is not None else {}
        nodes = [PeerNode(spec) for spec in self._with_own_address(cluster, known, quiet=True)]
        return (last, prev, nodes)

    def _with_own_address(self, specs: Sequence[str], known: dict[str, str] | None = None, *,
                          quiet: bool = False) -> list[str]:
        """Saved member specs with this peer's entry at the Raft address of its config (and the members of
        ``known`` at the address given there).

        A peer's own Raft address comes from its ``service.json``: when that changed since the peerset was
        saved (a moved peer, a restored backup, a copied folder with new ports), the old address would count as
        a second, unreachable member and a single peer would wait forever for a quorum.
        """
        fixed = {**(known or {}), self.peer_id: self.self_spec}
        out: list[str] = []
        for spec in specs:
            now = fixed.get(_peer_of(spec), spec)
            if now != spec:
                (log.debug if quiet else log.info)("Raft: member %s is now at %s", spec, now)
            out.append(now)
        return out

    def _on_tick(self) -> None:
        sync = self._sync
        if sync is None:
            return
        if self._send_per_tick:
            self._send_new_entries(sync)
        if self._notifier is None:
            # Created on the Raft thread, which owns the poller. Submissions write to it so that the Raft
            # thread wakes at once instead of at its next tick (PySyncObj only does this in no-batch mode).
            self._notifier = PipeNotifier(sync._poller)
        # Ticks come with every socket event under load: compare the few values the status is made of
        # (node objects by identity, the writer's progress by its counter) before building anything.
        leader = sync._getLeader()
        others = tuple(sync.otherNodes)
        last_applied = sync.raftLastApplied
        key = (leader, sync._isLeader(), sync.raftCurrentTerm, sync.raftCommitIndex, last_applied,
               self._write_gen, getattr(sync, "_SyncObj__leaderCommitIndex", None), sync.isReady(), others)
        if key == self._tick_key:
            return
        self._tick_key = key
        members = frozenset([self.self_spec, *(str(n.id) for n in others)])
        st = RaftStatus(
            leader=str(leader.id) if leader is not None else None,
            is_leader=bool(key[1]),
            term=int(key[2]),
            commit_index=int(key[3]),
            applied_index=self._durable_applied(int(last_applied)),
            leader_commit_index=key[6],
            ready=bool(key[7]),
            members=members,
        )
        if st == self._status:
            return
        if st.leader != self._status.leader:
            log.info("Raft leader is now %s (term %d)", st.leader, st.term)
        self._status = st
        if members != self._saved_members:
            self._save_members(members)
        if self._status_waiters and self._loop is not None and not self._closing:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._notify)

    def _send_new_entries(self, sync: _PinsetSyncObj) -> None:
        """Raft thread, end of tick: as leader, send what this tick added to the log (or committed) to the
        followers, in one append-entries message each.

        PySyncObj's no-batch mode sends one message per follower for every command and again after every apply
        (each pickled, compressed and sealed: most of the leader's Raft CPU under load); its batch mode waits
        for the heartbeat period. Sending at the end of each tick groups everything that arrived in the tick
        and adds no wait, since the poll ends a tick as soon as anything arrives."""
        if not sync._isLeader():
            return
        mark = (int(sync._SyncObj__getCurrentLogIndex()), int(sync.raftCommitIndex))
        if mark != self._sent_mark:
            self._sent_mark = mark
            transport = self._transport
            if transport is None:
                sync._SyncObj__sendAppendEntries()
                return
            transport.defer_journal_sync = True
            try:
                sync._SyncObj__sendAppendEntries()
            finally:
                transport.defer_journal_sync = False
            transport.flush_journal()

    def _durable_applied(self, last_applied: int) -> int:
        """PySyncObj's last applied index, held back to what the state writer has written."""
        first = self._first_unwritten()
        return last_applied if first is None else min(last_applied, first - 1)

    def _save_members(self, members: frozenset[str]) -> None:
        path = self.folder / PEERS_FILE
        tmp = path.with_suffix(".tmp")
        try:
            with open(tmp, "w") as f:
                json.dump(sorted(members), f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            self._saved_members = members
        except OSError as exc:
            log.warning("cannot save the Raft peerset to %s: %s", path, exc)

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = asyncio.Event()

    async def _wait_for(self, pred: Callable[[RaftStatus], bool], timeout: float, what: str) -> RaftStatus:
        deadline = time.monotonic() + timeout
        # Counted before the status is read: a change the Raft thread makes after that read sees the count and
        # wakes us (and the wait is bounded to 0.25 s anyway).
        self._status_waiters += 1
        try:
            while True:
                st = self._status
                if pred(st):
                    return st
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise Timeout(f"timed out after {timeout:.1f}s waiting for {what}")
                ev = self._changed
                assert ev is not None
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(ev.wait(), min(remaining, 0.25))
        finally:
            self._status_waiters -= 1

    # -- writes ---------------------------------------------------------------------------------------------

    async def log_pin(self, key: bytes, value: bytes) -> None:
        with tracing.span("consensus/LogPin"):
            await self._submit((OP_PUT, bytes(key), bytes(value)))

    async def log_unpin(self, key: bytes) -> None:
        with tracing.span("consensus/LogUnpin"):
            if await self.state.get(key) is None:
                raise NotFound("pin is not part of the pinset")
            await self._submit((OP_DELETE, bytes(key), None))

    async def log_ops(self, ops: Sequence[Op]) -> None:
        """Commit many operations (bulk import); returns when all are committed."""
        await asyncio.gather(*(self._submit(op) for op in ops))

    async def _submit(self, op: Op) -> None:
        if self._closing or self._sync is None or self._wake is None:
            raise Unavailable("the Raft consensus is not running")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._pending.append((op, fut))
        self._wake.set()
        await fut

    async def _run_batcher(self) -> None:
        assert self._wake is not None and self._window is not None
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            while self._pending and not self._closing:
                if self._inflight >= self._eager_inflight and len(self._pending) < self._batch_ops:
                    break  # gather more: the next result (or a full batch) wakes us
                await self._window.acquire()
                ops: list[Op] = []
                futs: list[asyncio.Future[None]] = []
                size = 0
                while self._pending and len(ops) < self._batch_ops:
                    op, fut = self._pending[0]
                    n = len(op[1]) + len(op[2] or b"") + 8
                    if ops and size + n > self._batch_bytes:
                        break
                    self._pending.popleft()
                    ops.append(op)
                    futs.append(fut)
                    size += n
                overall = self._leader_timeout + self._network_timeout
                batch = _Batch(ops, futs, time.monotonic() + overall, size=size)
                self._send(batch)

    def _send(self, batch: _Batch) -> None:
        loop = self._loop
        sync = self._sync
        assert loop is not None and sync is not None
        batch.attempts += 1
        batch.done = False
        self._inflight += 1
        self.commands_sent += 1
        self.ops_sent += len(batch.ops)
        blob = _ops_encoder.encode(batch.ops)

        def callback(_res: Any, err: int) -> None:
            if err == FAIL_REASON.SUCCESS and self._defer_ack(batch):
                return
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._on_result, batch, err)

        batch.timer = loop.call_later(self._network_timeout, self._on_result, batch, _TIMED_OUT)
        sync.apply_ops(blob, callback=callback)
        self._kick()

    def _kick(self) -> None:
        notifier = self._notifier
        if notifier is not None:
            with contextlib.suppress(OSError):
                notifier.notify()

    def _on_result(self, batch: _Batch, err: int) -> None:
        if batch.done:
            return
        batch.done = True
        if batch.timer is not None:
            batch.timer.cancel()
        assert self._window is not None
        self._window.release()
        self._inflight -= 1
        if self._pending and self._wake is not None:
            self._wake.set()  # the batcher may send what gathered meanwhile
        if err == FAIL_REASON.SUCCESS:
            for f in batch.futures:
                if not f.done():
                    f.set_result(None)
            return
        reason = "no answer within network_timeout" if err == _TIMED_OUT else _FAIL_NAMES.get(err, str(err))
        if self._closing or time.monotonic() > batch.deadline:
            exc: Exception = (Unavailable if self._closing else Timeout)(
                f"could not commit {len(batch.ops)} pinset change(s) to Raft after {batch.attempts} attempt(s): "
                f"{reason}; is a majority of the peers up?"
            )
            for f in batch.futures:
                if not f.done():
                    f.set_exception(exc)
            return
        log.debug("retrying a Raft batch of %d ops after %s (attempt %d)", len(batch.ops), reason, batch.attempts)
        assert self._loop is not None
        self._loop.call_later(self._retry_delay, self._resend, batch)

    def _resend(self, batch: _Batch) -> None:
        async def go() -> None:
            assert self._window is not None
            await self._window.acquire()
            if self._closing:
                self._window.release()
                for f in batch.futures:
                    if not f.done():
                        f.set_exception(Unavailable("the Raft consensus is shutting down"))
                return
            self._send(batch)

        task = asyncio.ensure_future(go())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- membership and status ----------------------------------------------------------------------------------

    async def ready(self, timeout: float | None = None) -> None:
        t = self._leader_timeout if timeout is None else timeout
        await self._wait_for(lambda s: s.leader is not None and s.ready, t, "a Raft leader and initial sync")

    async def wait_for_sync(self, timeout: float | None = None) -> None:
        t = self._leader_timeout if timeout is None else timeout
        await self._wait_for(
            lambda s: s.leader is not None and s.leader_commit_index is not None
            and s.applied_index >= s.leader_commit_index,
            t,
            "this peer to apply the leader's committed entries",
        )

    async def wait_for_leader(self, timeout: float | None = None) -> str:
        t = self._leader_timeout if timeout is None else timeout
        st = await self._wait_for(lambda s: s.leader is not None, t, "a Raft leader")
        assert st.leader is not None
        return _peer_of(st.leader)

    async def leader(self) -> str:
        st = self._status
        if st.leader is None:
            raise Unavailable("there is no Raft leader right now (an election is in progress or no quorum)")
        return _peer_of(st.leader)

    async def peers(self) -> list[str]:
        return sorted(_peer_of(m) for m in self._status.members)

    def members(self) -> list[str]:
        """Raft member specs (``peer@host:port``), sorted."""
        return sorted(self._status.members)

    def is_trusted_peer(self, peer_id: str) -> bool:
        return any(_peer_of(m) == peer_id for m in self._status.members)

    def trusted_peers(self) -> list[str]:
        return sorted({_peer_of(m) for m in self._status.members})

    async def _membership(self, kind: str, spec: str) -> None:
        sync = self._sync
        loop = self._loop
        if sync is None or loop is None:
            raise Unavailable("the Raft consensus is not running")
        deadline = time.monotonic() + self._leader_timeout + self._network_timeout
        while True:
            fut: asyncio.Future[int] = loop.create_future()

            def settle(fut: asyncio.Future[int], err: int) -> None:
                if not fut.done():
                    fut.set_result(err)

            def cb(_res: Any, err: int, fut: asyncio.Future[int] = fut) -> None:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(settle, fut, err)

            if kind == "add":
                sync.addNodeToCluster(spec, callback=cb)
            else:
                sync.removeNodeFromCluster(spec, callback=cb)
            self._kick()
            try:
                err = await asyncio.wait_for(fut, self._network_timeout)
            except TimeoutError:
                err = _TIMED_OUT
            done = (spec in self._status.members) == (kind == "add")
            if err == FAIL_REASON.SUCCESS or (err == FAIL_REASON.REQUEST_DENIED and done):
                await self._wait_for(lambda s: (spec in s.members) == (kind == "add"), 5.0, f"the {kind} of {spec}")
                return
            if time.monotonic() > deadline:
                raise Timeout(f"could not {kind} Raft peer {spec}: {_FAIL_NAMES.get(err, err)}")
            await asyncio.sleep(self._retry_delay)

    async def add_peer(self, peer_id: str, address: str) -> None:
        spec = RaftPeer(peer_id, address).spec
        if spec in self._status.members:
            return
        for m in self._status.members:
            if _peer_of(m) == peer_id:
                raise InvalidInput(f"peer {peer_id} is already a member at {m.partition('@')[2]}; remove it first")
        await self._membership("add", spec)

    async def rm_peer(self, peer_id: str) -> None:
        specs = [m for m in self._status.members if _peer_of(m) == peer_id]
        if not specs:
            raise NotFound(f"peer {peer_id} is not in the Raft peerset")
        if specs[0] == self.self_spec and self._status.is_leader:
            raise InvalidInput("the leader cannot remove itself; call shutdown(leave=True) instead")
        await self._membership("rm", specs[0])

    async def _leave(self) -> None:
        sync = self._sync
        assert sync is not None
        await self.transfer_leadership()
        if len(self._status.members) > 1:
            await self._membership("rm", self.self_spec)

    async def transfer_leadership(self) -> str | None:
        """If this peer leads a peerset of several, hand leadership to another member and wait for it; returns
        the new leader's peer ID (None when there was nothing to hand over)."""
        sync = self._sync
        if sync is None or not self._status.is_leader or len(self._status.members) < 2:
            return None
        sync.transferLeadership()
        status = await self._wait_for(lambda s: s.leader is not None and s.leader != self.self_spec, 10.0,
                                      "leadership to move to another peer")
        return _peer_of(status.leader) if status.leader else None

    async def shutdown(self, *, leave: bool = False) -> None:
        if self._sync is None:
            return
        if leave:
            try:
                await self._leave()
            except Exception as exc:
                log.warning("could not leave the Raft peerset before shutdown: %s", exc)
        self._closing = True
        if self._wake is not None:
            self._wake.set()
        if self._batcher is not None:
            self._batcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._batcher
        while self._pending:
            _op, fut = self._pending.popleft()
            if not fut.done():
                fut.set_exception(Unavailable("the Raft consensus is shutting down"))
        sync = self._sync
        self._sync = None
        sync.removeOnTickCallback(self._on_tick)
        await asyncio.to_thread(sync.destroy_synchronous)
        await asyncio.to_thread(self._stop_writer)
        syncs = self._transport.journal_flushes if self._transport is not None else 0
        sent, resent = self.entries_replicated
        log.info("Raft stopped: this peer sent %d commands carrying %d pinset changes; %d state transactions "
                 "(%d synced to the disk, the others' entries were in the synced journal); %d journal syncs; "
                 "%d log entries replicated to other peers (%d of them again)",
                 self.commands_sent, self.ops_sent, self.group_commits, self.group_commits_fsynced, syncs, sent,
                 resent)
        for _ in range(100):
            if self._ser_state != SERIALIZER_STATE.SERIALIZING:
                break
            await asyncio.sleep(0.05)
        if self._store is not None:
            await asyncio.to_thread(self._store.close)

    async def clean(self) -> Path | None:
        """Remove (or rotate to ``raft.old.N``) this peer's Raft data; only while stopped."""
        if self._sync is not None:
            raise InvalidInput("stop the Raft consensus before cleaning its data folder")
        return await asyncio.to_thread(clean_raft_folder, self.folder, self.config.backups_rotate)
