"""Raft consensus on PySyncObj, with the pinset in SQLite (``state.store``).

How the PySyncObj hazards measured in FINDINGS.md are handled here:

- pickles: every frame is authenticated with a key derived from the cluster secret (``transport``) and every
  unpickling goes through an allow-list (``safe_pickle.install``); log entries carry msgpack bytes only;
- unbounded in-flight commands: at most ``max_inflight`` (≤ 1000) Raft commands are outstanding; each command is
  a batch of up to ``batch_ops`` pin operations, so concurrent writers share round trips and fsyncs;
- apply must be idempotent: each batch is written in one SQLite transaction together with its Raft index,
  and an index at or below the stored one is skipped;
- followers truncating entries they already applied (and then compaction emptying the journal, which made the
  tick thread crash on every tick): the journal truncates only on a real conflict (``journal``), and the
  serializer checker refuses a compaction that would leave the journal shorter than the snapshot;
- compaction pickling the state: the snapshot is a ``VACUUM INTO`` copy of the database made by a background
  thread (``serializeChecker``), so the Raft thread only starts it; threshold 100k entries, 2 min, or 16 MiB
  of entries (PySyncObj keeps the journal in memory);
- the journal is not fsynced: a write is acknowledged only after the acknowledging peer committed it to SQLite
  with ``synchronous=FULL`` (an fsync of the WAL), and followers msync the journal before telling the leader
  they hold new entries (``sync_journal``, see ``transport.SecretTCPTransport.send``).
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
from pincluster.consensus.config import RaftConfig
from pincluster.consensus.transport import (
    PeerNode,
    RaftAuthenticator,
    SecretTCPTransport,
    raft_request,
    split_host_port,
)
from pincluster.errors import InvalidInput, NotFound, PeerError, StateError, Timeout, Unavailable
from pincluster.state.store import (
    OP_DELETE,
    OP_PUT,
    Op,
    SnapshotSuperseded,
    SQLiteState,
    SQLiteStore,
    read_snapshot_info,
)

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
    has_data = (folder / DUMP_FILE).exists() or (folder / STATE_FILE).exists()
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
    def encryptor(self) -> Any:
        # PySyncObj's TCP code only checks that an encryptor exists; the transport installs per-connection ones.
        return self._owner.authenticator

    def _getEncryptor(self) -> Any:
        return self._owner.authenticator

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
        batch_ops: int = 256,
        batch_bytes: int = 32 * 1024,
        durable: bool = True,
        sync_journal: bool = True,
    ) -> None:
        if not 1 <= max_inflight <= MAX_INFLIGHT_LIMIT:
            raise InvalidInput(f"max_inflight must be between 1 and {MAX_INFLIGHT_LIMIT}, got {max_inflight}")
        if not peer_id or "@" in peer_id:
            raise InvalidInput(f"invalid peer id {peer_id!r}")
        self.peer_id = peer_id
        self.config = config
        self.folder = Path(data_folder)
        self.authenticator = RaftAuthenticator(secret)
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
        self._batch_ops = batch_ops
        self._batch_bytes = batch_bytes
        self._durable = durable
        self.sync_journal = sync_journal
        self._store: SQLiteStore | None = None
        self._state: SQLiteState | None = None
        self._sync: _PinsetSyncObj | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._status = RaftStatus()
        self._changed: asyncio.Event | None = None
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

    # -- setup --------------------------------------------------------------------------------------------

    @staticmethod
    def _listen_host_port(maddr: str) -> tuple[str, int]:
        from pincluster.types.multiaddr import Multiaddr

        try:
            host, port = Multiaddr(maddr).tcp_host_port()
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

    async def start(self) -> None:
        """Open the state (refusing other format versions), find the peerset, start the Raft thread."""
        safe_pickle.install()
        raft_journal.install()
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        self._wake = asyncio.Event()
        self._window = asyncio.Semaphore(self._max_inflight)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._store = await asyncio.to_thread(SQLiteStore, self.folder / STATE_FILE, durable=self._durable)
        self._state = SQLiteState(self._store)
        members = await self._initial_members()
        others = [m for m in members if m != self.self_spec]
        opts = self.config.syncobj_options()
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
            appendEntriesUseBatch=False,
            logCompactionBatchSize=1024 * 1024,
            maxBindRetries=10,
            bindRetryTime=0.5,
            autoTickPeriod=min(0.005, opts["appendEntriesPeriod"]),
        )
        log.info("starting Raft as %s with peers %s", self.self_spec, others or "(none)")
        # Constructed on the loop's thread: PySyncObj's tick thread stops when its creator thread ends.
        self._sync = _PinsetSyncObj(self, self.self_spec, others, conf, self._transport_class)
        journal = getattr(self._sync, "_SyncObj__raftLog", None)
        if isinstance(journal, raft_journal.ConflictOnlyJournal):
            journal.on_kept_tail = self._reapply_membership
        try:
            await asyncio.to_thread(self._sync.waitBinded)
        except Exception as exc:
            self._sync.destroy()
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
                    return sorted(set(members) | {self.self_spec})
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
        timeout = self.config.network_timeout
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
            raft_request, self.authenticator, address, ["add", self.self_spec], self.config.network_timeout
        )
        if not (isinstance(res, str) and res.startswith("SUCCESS")):
            # PySyncObj refuses to add a member twice, where hashicorp-raft's AddVoter with the same id and
            # address succeeds: a peer whose raft/ folder was wiped rejoins as the member it already is. The
            # member's own view of the peerset (not ours: it starts with us in it) decides.
            status = await asyncio.to_thread(
                raft_request, self.authenticator, address, ["status"], self.config.network_timeout
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
        store = self._store
        assert store is not None
        try:
            ops: list[Op] = list(_ops_decoder.decode(blob))
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.error("skipping Raft entry %d: it is not a valid operation batch (%s)", index, exc)
            return
        if not store.apply(index, term, ops):
            return
        self._bytes_since_snapshot += len(blob)
        if (self._bytes_since_snapshot > self.config.compaction_max_bytes and not self._compaction_forced
                and self._sync is not None):
            self._compaction_forced = True
            self._sync.forceLogCompaction()
        if self._on_apply is not None and self._loop is not None and not self._closing:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._on_apply, ops)

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

    def _deserialize(self, filename: str) -> tuple[Any, Any, Any]:
        """PySyncObj's deserializer hook: our own snapshot at restart, or one just received from the leader."""
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
        nodes = [PeerNode(spec) for spec in cluster]
        return (last, prev, nodes)

    def _on_tick(self) -> None:
        sync = self._sync
        if sync is None:
            return
        if self._notifier is None:
            # Created on the Raft thread, which owns the poller. Submissions write to it so that the Raft
            # thread wakes at once instead of at its next tick (PySyncObj only does this in no-batch mode).
            self._notifier = PipeNotifier(sync._poller)
        leader = sync._getLeader()
        members = frozenset([self.self_spec, *(str(n.id) for n in sync.otherNodes)])
        st = RaftStatus(
            leader=str(leader.id) if leader is not None else None,
            is_leader=bool(sync._isLeader()),
            term=int(sync.raftCurrentTerm),
            commit_index=int(sync.raftCommitIndex),
            applied_index=int(sync.raftLastApplied),
            leader_commit_index=getattr(sync, "_SyncObj__leaderCommitIndex", None),
            ready=bool(sync.isReady()),
            members=members,
        )
        if st == self._status:
            return
        if st.leader != self._status.leader:
            log.info("Raft leader is now %s (term %d)", st.leader, st.term)
        self._status = st
        if members != self._saved_members:
            self._save_members(members)
        if self._loop is not None and not self._closing:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._notify)

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

    # -- writes ---------------------------------------------------------------------------------------------

    async def log_pin(self, key: bytes, value: bytes) -> None:
        await self._submit((OP_PUT, bytes(key), bytes(value)))

    async def log_unpin(self, key: bytes) -> None:
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
                overall = self.config.wait_for_leader_timeout + self.config.network_timeout
                batch = _Batch(ops, futs, time.monotonic() + overall, size=size)
                self._send(batch)

    def _send(self, batch: _Batch) -> None:
        loop = self._loop
        sync = self._sync
        assert loop is not None and sync is not None
        batch.attempts += 1
        batch.done = False
        blob = _ops_encoder.encode(batch.ops)

        def callback(_res: Any, err: int) -> None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._on_result, batch, err)

        batch.timer = loop.call_later(self.config.network_timeout, self._on_result, batch, _TIMED_OUT)
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
        self._loop.call_later(self.config.commit_retry_delay, self._resend, batch)

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
        t = self.config.wait_for_leader_timeout if timeout is None else timeout
        await self._wait_for(lambda s: s.leader is not None and s.ready, t, "a Raft leader and initial sync")

    async def wait_for_sync(self, timeout: float | None = None) -> None:
        t = self.config.wait_for_leader_timeout if timeout is None else timeout
        await self._wait_for(
            lambda s: s.leader is not None and s.leader_commit_index is not None
            and s.applied_index >= s.leader_commit_index,
            t,
            "this peer to apply the leader's committed entries",
        )

    async def wait_for_leader(self, timeout: float | None = None) -> str:
        t = self.config.wait_for_leader_timeout if timeout is None else timeout
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
        deadline = time.monotonic() + self.config.wait_for_leader_timeout + self.config.network_timeout
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
                err = await asyncio.wait_for(fut, self.config.network_timeout)
            except TimeoutError:
                err = _TIMED_OUT
            done = (spec in self._status.members) == (kind == "add")
            if err == FAIL_REASON.SUCCESS or (err == FAIL_REASON.REQUEST_DENIED and done):
                await self._wait_for(lambda s: (spec in s.members) == (kind == "add"), 5.0, f"the {kind} of {spec}")
                return
            if time.monotonic() > deadline:
                raise Timeout(f"could not {kind} Raft peer {spec}: {_FAIL_NAMES.get(err, err)}")
            await asyncio.sleep(self.config.commit_retry_delay)

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
