"""The Cluster: the one object that knows every component and wires them together (Go's ``cluster.go``).

It implements :class:`pincluster.api.interface.ClusterAPI` for the API servers, and the cluster-level RPC
services that other peers call. Components only know their own small interfaces; everything that crosses
them (consensus applying a pin → the tracker tracking it, a metric expiring → re-pinning) happens here.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import sqlite3
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pincluster import CLUSTER_COMPAT_VERSION, RPC_PROTOCOL_VERSION
from pincluster.aio import cancel_and_wait
from pincluster.allocator.allocate import Allocator, repin_after_alert
from pincluster.allocator.balanced import BalancedAllocator
from pincluster.api.interface import AddParams
from pincluster.clock import SYSTEM_CLOCK, Clock
from pincluster.config import ServiceConfig
from pincluster.errors import NOT_IN_PINSET, InvalidInput, NotFound, PinclusterError, Unavailable
from pincluster.informer.disk import DiskInformer
from pincluster.informer.interface import Informer
from pincluster.informer.pinqueue import PinQueueInformer
from pincluster.informer.tags import TagsInformer
from pincluster.ipfsconn.interface import IPFSConnector
from pincluster.monitor.monitor import InformerPublisher, Monitor, ping_metric
from pincluster.observe import tracing
from pincluster.observe.bandwidth import BandwidthCounter
from pincluster.p2p.host import Host
from pincluster.pintracker.heads import HEAD_CACHE_FILE, HeadCache, RangeReader
from pincluster.pintracker.listing import PeerEntries, local_lines, merged_lines, sparse_lines
from pincluster.pintracker.rows import StatusRows
from pincluster.pintracker.stateless import StatelessPinTracker
from pincluster.rpc.core import RPC, UNBOUNDED
from pincluster.rpc.errors import UnknownMethod
from pincluster.state.store import SQLiteStore
from pincluster.types.cid import CID
from pincluster.types.codec import (
    StoredPin,
    decode_state,
    from_json,
    held_status_keys,
    pin_from_state,
    pin_to_state,
    state_pin_lines,
    status_key,
    stored_pin_modes,
)
from pincluster.types.gotime import go_now
from pincluster.types.models import (
    ID,
    IPFSID,
    AddedOutput,
    Alert,
    Bandwidth,
    ConnectGraph,
    GlobalPinInfo,
    GlobalRepoGC,
    IPFSRepoGC,
    IPFSRepoStat,
    Metric,
    Pin,
    PingValue,
    PinInfo,
    PinOptions,
    RepoGC,
)
from pincluster.types.multiaddr import Multiaddr
from pincluster.types.peer import PeerID
from pincluster.types.status import PinMode, PinType, TrackerStatus

log = logging.getLogger("pincluster.cluster")

STATUS_TIMEOUT = 15.0
#: Pins per NDJSON chunk of ``GET /allocations`` (~60 KB).
LISTING_CHUNK = 200
RPC_PROTOCOL = f"/pincluster/rpc/{RPC_PROTOCOL_VERSION}"


def _seconds(td: timedelta) -> float:
    return td.total_seconds()


_StoredPage = list[tuple[bytes, bytes]]
_ListingPage = list[tuple[bytes, bytes, bytes | None]]

#: How long a write waits for this peer to catch up with the leader before saying "not in the pinset".
_SYNC_BEFORE_NOT_FOUND = 3.0


class StatePinset:
    """The consensus state seen as Pins (the tracker's ``PinsetReader``); decodes on the fly, holds nothing."""

    def __init__(self, state_getter: Callable[[], Any]) -> None:
        self._state = state_getter
        self._reader: tuple[Path, sqlite3.Connection] | None = None

    def _read_now(self, store: SQLiteStore, key: bytes) -> tuple[bool, bytes | None]:
        """One primary-key read on the event loop, on a read-only connection of our own (WAL: never waits
        for the writer; busy_timeout 0: if SQLite is busy, e.g. a snapshot being restored, give up at once).

        A pin request reads the pinset once; the thread hop of ``to_thread`` cost more than the read itself.
        Returns (False, None) when the caller should read through the async state instead."""
        try:
            if self._reader is None or self._reader[0] != store.path:
                self.close()
                conn = sqlite3.connect(f"file:{store.path}?mode=ro", uri=True, timeout=0)
                self._reader = (store.path, conn)
            row = self._reader[1].execute("SELECT value FROM pins WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error:
            self.close()
            return False, None
        return True, None if row is None else bytes(row[0])

    def close(self) -> None:
        if self._reader is not None:
            with contextlib.suppress(sqlite3.Error):
                self._reader[1].close()
            self._reader = None

    async def get(self, cid: CID) -> Pin | None:
        state = self._state()
        store = getattr(state, "store", None)
        done, raw = self._read_now(store, cid.bytes) if isinstance(store, SQLiteStore) else (False, None)
        if not done:
            raw = await state.get(cid.bytes)
        return None if raw is None else pin_from_state(raw)

    async def list(self) -> AsyncIterator[Pin]:
        async for _key, raw in self._state().list():
            yield pin_from_state(raw)

    async def raw_pages(self) -> AsyncIterator[_StoredPage]:
        """The stored ``(CID bytes, pin bytes)`` pairs in key order, a page at a time (listings that write
        JSON straight from the stored form)."""
        state = self._state()
        if hasattr(state, "list_pages"):
            async for page in state.list_pages():
                yield page
            return
        chunk: _StoredPage = []
        async for key, raw in state.list():
            chunk.append((key, raw))
            if len(chunk) >= 1000:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    async def listing_pages(self) -> AsyncIterator[_ListingPage]:
        """``raw_pages`` with each pin's stored status key (``types.codec.status_key``), derived here when the
        state does not keep it."""
        state = self._state()
        if hasattr(state, "listing_pages"):
            async for page in state.listing_pages():
                yield page
            return
        async for raw_page in self.raw_pages():
            yield [(key, raw, status_key(raw)) for key, raw in raw_page]

    def listing_reader(self) -> RangeReader | None:
        """The state store itself when it is the SQLite one: the merged listing walks it by key ranges and keeps
        its line heads between listings, watching the store for changes (``pintracker.heads``)."""
        store = getattr(self._state(), "store", None)
        return store if isinstance(store, SQLiteStore) else None

    async def listed_for(self, peer: PeerID) -> AsyncIterator[_StoredPage]:
        """Pages of ``(key, status key)`` of the stored pins ``peer`` holds (allocated to it, or to every
        peer): from the allocations index when the state has one, else by a scan."""
        state = self._state()
        if hasattr(state, "pins_listed_for"):
            async for listed in state.pins_listed_for(peer.bytes):
                yield listed
            return
        async for raw_page in self.raw_pages():
            held = held_status_keys(raw_page, peer.bytes)
            if held:
                yield held

    async def stored(self, key: bytes) -> StoredPin | None:
        """One stored pin, decoded only as far as listings need (None when not in the pinset)."""
        pin = await self.get(CID(key))
        return None if pin is None else decode_state(pin_to_state(pin))

    async def allocated_to(self, peer: PeerID) -> AsyncIterator[Pin]:
        """The pins allocated to ``peer``: from the allocations index (state format 2), which reads only those
        pins, else by a scan. Streamed by key, so callers may re-allocate the pins as they go."""
        state = self._state()
        if hasattr(state, "pins_allocated_to"):
            async for _key, raw in state.pins_allocated_to(peer.bytes):
                yield pin_from_state(raw)
            return
        async for pin in self.list():
            if peer in pin.allocations:
                yield pin

    async def expired(self, now: datetime) -> AsyncIterator[Pin]:
        """The pins whose ``expire_at`` is before ``now``: from the expiry index when the state has one."""
        state = self._state()
        if hasattr(state, "expired"):
            async for _key, raw in state.expired(now):
                yield pin_from_state(raw)
            return
        async for pin in self.list():
            if pin.expired_at(now):
                yield pin


@dataclass(frozen=True)
class _PeerInfo:
    """What the ping metric tells about a peer: its name and IPFS daemon."""

    peername: str = ""
    ipfs_id: PeerID | None = None
    ipfs_addresses: tuple[Multiaddr, ...] = ()


class Cluster:
    """A running cluster peer. Create with the started transport pieces, then ``await start()``."""

    def __init__(
        self,
        *,
        config: ServiceConfig,
        folder: Path,
        host: Host,
        rpc: RPC,
        consensus: Any,
        ipfs: IPFSConnector,
        clock: Clock = SYSTEM_CLOCK,
        bandwidth: BandwidthCounter | None = None,
    ) -> None:
        self.config = config
        #: The peer's byte counts per protocol (its host and Raft count into it), or None: no reporter.
        self.bandwidth_counter = bandwidth
        self.folder = folder
        self.host = host
        self.rpc = rpc
        self.consensus = consensus
        self.ipfs = ipfs
        self.clock = clock
        self.peer_id: PeerID = host.peer_id
        cc = config.cluster
        self.peername = cc.peername
        self.pinset = StatePinset(lambda: self.consensus.state)
        self._ipfs_id: IPFSID = IPFSID(error="IPFS not contacted yet")
        self.monitor = Monitor(
            config.pubsubmon,
            broadcast=self._broadcast_metric,
            peers=self.member_ids,
            on_alert=self._on_alert,
            clock=clock,
        )
        #: The merged listing's line heads between listings: a file of this daemon run (``pintracker.heads``).
        self.heads = HeadCache(folder / HEAD_CACHE_FILE)
        self.tracker = StatelessPinTracker(
            config.stateless,
            self.peer_id,
            ipfs,
            self.pinset,
            peername=self.peername,
            clock=clock,
            ipfs_info=self._ipfs_info,
            recover_interval=cc.pin_recover_interval,
            heads=self.heads,
        )
        self.allocator = Allocator(
            self.monitor,
            BalancedAllocator(config.balanced),
            is_trusted=lambda p: True,  # Raft: every member is trusted
            pin_only_on_trusted_peers=cc.pin_only_on_trusted_peers,
            pin_only_on_untrusted_peers=cc.pin_only_on_untrusted_peers,
        )
        self.informers: list[Informer] = self._make_informers()
        self.publisher = InformerPublisher(self.informers, self.monitor, self.peer_id, clock=clock)
        self._tasks: list[asyncio.Task[None]] = []
        self._apply_queue: asyncio.Queue[list[tuple[int, bytes, bytes | None]]] = asyncio.Queue()
        self._ready = asyncio.Event()
        self._shutdown_requested = asyncio.Event()
        self._members_cache: list[PeerID] = [self.peer_id]
        self._members_texts: list[str] | None = None  # the consensus peerset _members_cache was decoded from
        self._swarm_known: dict[PeerID, PeerID] = {}  # cluster peer -> the IPFS node we connected ours to

    # ------------------------------------------------------------------ wiring
    def _make_informers(self) -> list[Informer]:
        cfg = self.config
        out: list[Informer] = []
        if cfg.is_loaded("informer.disk") or not cfg.is_loaded("allocator.balanced"):
            out.append(DiskInformer(cfg.disk, self.ipfs, clock=self.clock))
        if cfg.is_loaded("informer.tags"):
            out.append(TagsInformer(cfg.tags, clock=self.clock))
        if cfg.is_loaded("informer.pinqueue"):
            out.append(PinQueueInformer(cfg.pinqueue, self.tracker, clock=self.clock))
        if not out:
            raise InvalidInput("no informers are configured: service.json needs at least informer.disk")
        return out

    def on_apply(self, ops: list[tuple[int, bytes, bytes | None]]) -> None:
        """Called by consensus (on the event loop) with every batch of committed operations."""
        self._apply_queue.put_nowait(ops)

    async def _apply_loop(self) -> None:
        """Feed committed changes to the tracker in commit order.

        Consensus may say what each key held before the change (``AppliedOps.previous``): then a pin allocated
        elsewhere that was never allocated here needs no IPFS unpin (see ``StatelessPinTracker.track``)."""
        while True:
            ops = await self._apply_queue.get()
            previous: list[bytes | None] | None = getattr(ops, "previous", None)
            for j, (_kind, key, value) in enumerate(ops):
                try:
                    if value is not None:
                        if previous is None:
                            await self.tracker.track_stored(key, value, None, before_known=False)
                        else:
                            await self.tracker.track_stored(key, value, previous[j])
                    else:
                        await self.tracker.untrack(CID(key))
                except Exception:
                    log.exception("tracking a committed change of %s failed", CID(key))

    async def start(self) -> None:
        """Start components after consensus and the IPFS connector are up (the daemon does those)."""
        await self.heads.open()
        await self.tracker.start()
        await self.monitor.start()
        self._tasks += [
            asyncio.create_task(self._apply_loop(), name="cluster-apply"),
            asyncio.create_task(self._ping_loop(), name="cluster-ping"),
            asyncio.create_task(self._ready_then_recover(), name="cluster-ready"),
            asyncio.create_task(self._state_sync_loop(), name="cluster-state-sync"),
            asyncio.create_task(self._peer_watch_loop(), name="cluster-peer-watch"),
        ]
        if self.bandwidth_counter is not None:
            self._tasks.append(asyncio.create_task(self.bandwidth_counter.run(), name="cluster-bandwidth"))
        await self.publisher.start()

    async def _ready_then_recover(self) -> None:
        """Readiness as in Go: consensus ready, then IPFS answers; then recover everything once."""
        cc = self.config.raft
        try:
            await self.consensus.ready(timeout=_seconds(cc.wait_for_leader_timeout) + 5)
        except PinclusterError as exc:
            log.error("consensus did not become ready: %s; is a majority of the peers up?", exc)
            self._shutdown_requested.set()
            return
        await self._refresh_ipfs_id(wait=True)
        self._ready.set()
        log.info("** IPFS Cluster is READY **")
        self._tasks.append(asyncio.create_task(self._connect_swarms_later(), name="cluster-swarm-connect"))
        try:
            n = 0
            async for _ in self.tracker.recover_all():
                n += 1
            if n:
                log.info("recover: re-queued %d items at start", n)
        except Exception as exc:
            log.warning("initial recover failed: %s", exc)
        try:
            t0 = time.monotonic()
            n = await self.tracker.warm_listing()
            if n:
                log.info("listing cache ready: %d pins in %.1f s", n, time.monotonic() - t0)
        except Exception as exc:  # only the first listing's speed depends on it
            log.warning("listing cache not filled at start: %s", exc)

    async def wait_ready(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._ready.wait(), timeout)

    @property
    def is_ready(self) -> bool:
        return self._ready.is_set()

    async def shutdown(self, *, leave: bool = False) -> None:
        await cancel_and_wait(list(self._tasks))
        self._tasks.clear()
        await self.publisher.shutdown()
        await self.monitor.shutdown()
        await self.tracker.shutdown()
        await self.heads.close()
        self.pinset.close()

    # ------------------------------------------------------------------ peers and metrics
    async def member_ids(self) -> list[PeerID]:
        """The consensus peerset as peer IDs (self included), sorted."""
        try:
            texts = await self.consensus.peers()
            if texts == self._members_texts:  # asked for every pin: decode only when the peerset changed
                return list(self._members_cache)
            ids = sorted(PeerID.decode(p) for p in texts)
        except Exception:
            return list(self._members_cache)
        if ids:
            self._members_cache = ids
            self._members_texts = list(texts)
        return ids or [self.peer_id]

    async def _others(self) -> list[PeerID]:
        return [p for p in await self.member_ids() if p != self.peer_id]

    async def learn_addresses(self) -> int:
        """Find addresses for members we cannot reach yet, from the peers we are connected to (each one's ID
        lists the addresses it knows: ``cluster_peers_addresses``). A peer that joined through peer A learns
        of peer B this way, as libp2p's peer exchange would tell it in Go. Returns how many peers it learnt."""
        members = await self._others()
        connected = set(self.host.connected_peers())
        missing = {m for m in members if m not in connected and not self.host.peerstore.addrs(m)}
        learnt = 0
        for src in (m for m in members if m in connected):
            if not missing:
                break
            try:
                ident: ID = await self.rpc.call(src, "Cluster.ID", result_type=ID, timeout=5.0)
            except PinclusterError as exc:
                log.debug("cannot ask %s for addresses: %s", src, exc)
                continue
            for addr in ident.cluster_peers_addresses or ():
                pid = addr.peer_id
                if pid in missing:
                    self.host.peerstore.add_addrs(pid, [addr])
                    missing.discard(pid)
                    learnt += 1
        return learnt

    async def _broadcast_metric(self, metric: Metric) -> None:
        others = await self._others()
        if not others:
            return
        if any(p not in self.host.connected_peers() and not self.host.peerstore.addrs(p) for p in others):
            await self.learn_addresses()
        results = await self.rpc.call_many(others, "PeerMonitor.LogMetric", metric, timeout=5.0)
        for peer, res in zip(others, results, strict=True):
            if isinstance(res, Exception):
                log.debug("metric %s not delivered to %s: %s", metric.name, peer, res)

    async def receive_metric(self, metric: Metric) -> None:
        """A metric broadcast by another peer. The first one from a peer means it just joined (or came back):
        answer with ours at once, so that it can allocate pins without waiting for our next round."""
        new = metric.peer is not None and metric.peer not in self.monitor.store.peers()
        await self.monitor.log_metric(metric)
        if new and self._ready.is_set():
            self._spawn(self._greet(), "cluster-greet")
        if metric.name == "ping" and metric.peer is not None:
            self._connect_ipfs_of(metric)

    def _spawn(self, coro: Awaitable[Any], name: str) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.append(task)
        task.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)

    def _connect_ipfs_of(self, ping: Metric) -> None:
        """Keep our IPFS node connected to every other peer's node, so they fetch blocks from each other: the
        first ping of a peer (or one whose node changed) triggers a swarm connect to the node it names."""
        try:
            value = from_json(ping.value.encode(), PingValue)
        except (PinclusterError, ValueError):
            return
        if value.ipfs_id is None or not value.ipfs_addresses or value.ipfs_id == self._ipfs_id.id:
            return
        if self._swarm_known.get(ping.peer) == value.ipfs_id:  # type: ignore[arg-type]
            return
        self._swarm_known[ping.peer] = value.ipfs_id  # type: ignore[index]
        addrs = [a.with_p2p(value.ipfs_id) for a in value.ipfs_addresses]

        async def connect() -> None:
            try:
                n = await self.ipfs.connect_swarms(addrs)
                log.debug("ipfshttp: connected our IPFS node to %s (%d addresses)", value.ipfs_id, n)
            except PinclusterError as exc:
                self._swarm_known.pop(ping.peer, None)  # type: ignore[arg-type]
                log.warning("ipfshttp: cannot connect our IPFS node to %s: %s", value.ipfs_id, exc)

        self._spawn(connect(), "cluster-swarm-connect")

    async def _greet(self) -> None:
        try:
            await self.publisher.push_all()
            await self._publish_ping()
        except Exception as exc:
            log.debug("could not send our metrics to a new peer: %s", exc)

    def _ipfs_info(self) -> tuple[PeerID | None, tuple[Multiaddr, ...]]:
        return self._ipfs_id.id, tuple(self._ipfs_id.addresses or ())

    async def _refresh_ipfs_id(self, *, wait: bool = False) -> IPFSID:
        try:
            ipfs_id = await (self.ipfs.wait_ready() if wait else self.ipfs.id())
            self._ipfs_id = ipfs_id
        except PinclusterError as exc:
            log.warning("ipfshttp: %s", exc)
            self._ipfs_id = IPFSID(addresses=None, error=str(exc))
        return self._ipfs_id

    async def _publish_ping(self) -> None:
        if self._ipfs_id.error or self._ipfs_id.id is None:
            await self._refresh_ipfs_id()
        metric = ping_metric(
            self.peer_id,
            peer_name=self.peername,
            ipfs_id=self._ipfs_id.id,
            ipfs_addresses=tuple(self._ipfs_id.addresses or ()),
            interval=self.config.cluster.monitor_ping_interval,
            now_ns=self.clock.now_ns(),
        )
        await self.monitor.publish_metric(metric)

    async def _ping_loop(self) -> None:
        interval = _seconds(self.config.cluster.monitor_ping_interval)
        while True:
            try:
                await self._publish_ping()
            except Exception as exc:
                log.warning("cannot publish the ping metric: %s", exc)
            await self.clock.sleep(interval)

    async def _peer_info(self, peer: PeerID) -> _PeerInfo:
        """Name and IPFS daemon of a peer, from its last ping metric (as Go does for status answers)."""
        if peer == self.peer_id:
            return _PeerInfo(self.peername, self._ipfs_id.id, tuple(self._ipfs_id.addresses or ()))
        m = self.monitor.store.latest("ping", peer)
        if m is not None:
            with contextlib.suppress(PinclusterError, ValueError):
                v = from_json(m.value.encode(), PingValue)
                return _PeerInfo(v.peer_name, v.ipfs_id, tuple(v.ipfs_addresses))
        return _PeerInfo()

    def _on_alert(self, alert: Alert) -> Awaitable[None]:
        return self._handle_alert(alert)

    async def _handle_alert(self, alert: Alert) -> None:
        log.warning("alert: metric %s of peer %s expired", alert.name, alert.peer)
        if alert.name == "ping" and alert.peer is not None:
            self._swarm_known.pop(alert.peer, None)  # reconnect our IPFS node to its node when it is back
        if self.config.cluster.follower_mode:
            return
        members = await self.member_ids()
        if alert.peer is None:
            return
        done, failed = await repin_after_alert(
            alert,
            self.pinset.allocated_to(alert.peer),
            self.peer_id,
            members,
            self._repin,
            disable_repinning=self.config.cluster.disable_repinning,
        )
        if done or failed:
            log.info("re-pinned %d pins of %s (%d failed)", done, alert.peer, failed)

    async def _repin(self, pin: Pin, failed_peer: PeerID) -> Pin:
        return await self._pin(pin, blacklist=(failed_peer,))

    async def _connect_swarms_later(self) -> None:
        """Ask our IPFS node to connect to the other peers' nodes, so they fetch blocks from each other."""
        await self.clock.sleep(_seconds(self.config.ipfshttp.connect_swarms_delay))
        await self.connect_swarms()

    async def connect_swarms(self) -> int:
        addrs: list[Multiaddr] = []
        for peer in await self._others():
            info = await self._peer_info(peer)
            if info.ipfs_id is not None:
                addrs += [a.with_p2p(info.ipfs_id) for a in info.ipfs_addresses]
        if not addrs:
            return 0
        try:
            return await self.ipfs.connect_swarms(addrs)
        except PinclusterError as exc:
            log.warning("ipfshttp: swarm connect failed: %s", exc)
            return 0

    async def _state_sync_loop(self) -> None:
        """Unpin expired pins; only the closest trusted peer acts on each CID (spec §3.7, §13.6)."""
        from pincluster.allocator.allocate import is_closest_peer

        interval = _seconds(self.config.cluster.state_sync_interval)
        while True:
            await self.clock.sleep(interval)
            if self.config.cluster.follower_mode or not self._ready.is_set():
                continue
            now = go_now()
            members = await self.member_ids()
            expired = [
                p.cid async for p in self.pinset.expired(now) if is_closest_peer(self.peer_id, p.cid, members)
            ]
            for cid in expired:
                with contextlib.suppress(PinclusterError):
                    await self.unpin(cid)
                    log.info("unpinned %s: its expire_at passed", cid)

    async def _peer_watch_loop(self) -> None:
        """A peer removed from the peerset shuts itself down (spec §13.7)."""
        interval = _seconds(self.config.cluster.peer_watch_interval)
        while True:
            await self.clock.sleep(interval)
            if not self._ready.is_set():
                continue
            with contextlib.suppress(Exception):
                peers = await self.consensus.peers()
                if (peers and str(self.peer_id) not in peers) or await self._removed_per_others(peers):
                    log.warning("this peer was removed from the cluster peerset: shutting down")
                    self._shutdown_requested.set()
                    return

    async def _removed_per_others(self, peers: list[str]) -> bool:
        """Whether the other members say this peer is no longer one of them.

        PySyncObj's leader stops replicating to a peer as soon as it removes it, so the removed peer may never
        see its own removal: its local peerset still lists it, and it may go on believing in the old leader. So
        a follower asks the leader it knows, and a peer without a leader asks the others (``Cluster.ID`` is
        open to any peer); when every one that answers lists a peerset without this peer, it was removed.
        """
        try:
            leader: str | None = await self.consensus.leader()
        except PinclusterError:
            leader = None
        if leader == str(self.peer_id):
            return False  # the leader's own peerset is the truth
        # With a leader we believe in, ask it (one call per interval); without one, ask every other member.
        others = [PeerID.decode(leader)] if leader else [PeerID.decode(p) for p in peers if p != str(self.peer_id)]
        if not others:
            return False
        results = await self.rpc.call_many(others, "Cluster.ID", result_type=ID, timeout=STATUS_TIMEOUT)
        # A peer that is still starting reports only itself: that says nothing about us, so it does not count.
        answers = [r for r in results if not isinstance(r, BaseException) and len(r.cluster_peers) > 1]
        return bool(answers) and all(self.peer_id not in r.cluster_peers for r in answers)

    @property
    def shutdown_requested(self) -> asyncio.Event:
        return self._shutdown_requested

    # ------------------------------------------------------------------ ClusterAPI: identity and peers
    async def id(self) -> ID:
        # IPFS is asked each time, as Go does, so that /id shows an IPFS daemon that went down; the last good
        # answer stays cached for pings and status (Go reuses it there too).
        try:
            ipfs = await self.ipfs.id()
            self._ipfs_id = ipfs
        except PinclusterError as exc:
            ipfs = IPFSID(addresses=None, error=str(exc))
        members = await self.member_ids()
        addrs = [a.with_p2p(p) for p in members if p != self.peer_id for a in self.host.peerstore.addrs(p)]
        return ID(
            id=self.peer_id,
            addresses=tuple(self.host.addrs),
            cluster_peers=tuple(members),
            cluster_peers_addresses=tuple(addrs),
            version=CLUSTER_COMPAT_VERSION,
            commit="",
            rpc_protocol_version=RPC_PROTOCOL,
            error="",
            ipfs=ipfs,
            peername=self.peername,
        )

    async def peers(self) -> AsyncIterator[ID]:
        members = await self.member_ids()
        results = await self.rpc.call_many(members, "Cluster.ID", result_type=ID, timeout=STATUS_TIMEOUT)
        for peer, res in zip(members, results, strict=True):
            if isinstance(res, Exception):
                yield ID(id=peer, error=str(res), ipfs=IPFSID(addresses=None, error=""))
            else:
                yield res

    async def peer_add(self, peer: PeerID) -> ID:
        address: str = await self.rpc.call(peer, "Consensus.Address", result_type=str, timeout=STATUS_TIMEOUT)
        await self.consensus.add_peer(str(peer), address)
        return await self.rpc.call(peer, "Cluster.ID", result_type=ID, timeout=STATUS_TIMEOUT)  # type: ignore[no-any-return]

    async def peer_rm(self, peer: PeerID) -> None:
        members = await self.member_ids()
        if peer not in members:
            raise NotFound(f"peer {peer} is not part of the cluster peerset")
        if not self.config.cluster.disable_repinning:
            moved = 0
            async for pin in self.pinset.allocated_to(peer):
                try:
                    await self._pin(pin, blacklist=(peer,))
                    moved += 1
                except PinclusterError as exc:
                    log.warning("could not re-allocate %s away from %s: %s", pin.cid, peer, exc)
            log.info("re-allocated %d pins before removing %s", moved, peer)
        await self.consensus.rm_peer(str(peer))

    # ------------------------------------------------------------------ ClusterAPI: pinning
    async def pin(self, cid: CID, options: PinOptions) -> Pin:
        with tracing.span("cluster/Pin", cid=cid):
            if self.config.cluster.follower_mode:
                raise InvalidInput("this peer is configured to be in follower mode. Write operations are disabled")
            if options.pin_update is not None and options.pin_update != cid:
                return await self.pin_update(options.pin_update, cid, options)
            now = go_now()
            return await self._pin(Pin.with_options(cid, options, timestamp=now), now=now)

    async def _pin(self, pin: Pin, *, blacklist: Collection[PeerID] = (), now: datetime | None = None) -> Pin:
        """Validate, allocate and commit ``pin``, stamped ``now`` (default: the current time)."""
        cc = self.config.cluster
        if now is None:
            now = go_now()
        existing = await self.pinset.get(pin.cid)
        pin = pin.with_replication_defaults(cc.replication_factor_min, cc.replication_factor_max)
        if pin.expired_at(now):
            raise InvalidInput("pin.ExpireAt set before current time")
        if existing is not None:
            if existing.type != pin.type:
                raise InvalidInput(
                    "cannot repin CID with different tracking method, clear state with pin rm to proceed. "
                    f"New: {pin.type.value}. Was: {existing.type.value}"
                )
            if existing.max_depth < 0 and pin.max_depth == 0:
                raise InvalidInput(
                    "cannot repin a CID which is already pinned in recursive mode (new pin is pinned as "
                    f"{pin.mode.value}). Unpin it first."
                )
        if pin.type is PinType.DATA and pin.reference is not None:
            raise InvalidInput("data pins cannot have a reference")
        if pin.type is not PinType.META and (not pin.allocations or blacklist):
            current = existing.allocations if existing is not None else ()
            allocations = await self.allocator.allocate(
                pin.cid,
                [p for p in current if p not in blacklist] if current else (),
                pin.replication_factor_min,
                pin.replication_factor_max,
                blacklist=blacklist,
                priority=pin.user_allocations or (),
            )
            pin = pin.replace(timestamp=now, allocations=allocations)  # one copy for both changes
        elif pin.timestamp is not now:
            pin = pin.replace(timestamp=now)
        await self.consensus.log_pin(pin.cid.bytes, pin_to_state(pin))
        if log.isEnabledFor(logging.DEBUG):  # per pin: debug (thousands per second at info cost ~7%)
            where = ", ".join(map(str, pin.allocations)) if pin.allocations else "every peer"
            log.debug("pinned %s on %s", pin.cid, where)
        return pin

    async def pin_update(self, from_cid: CID, to_cid: CID, options: PinOptions) -> Pin:
        """Spec §4.3: a copy of ``from`` with ``cid=to``; allocations and factors copied; ``from`` stays. A name,
        metadata or origins given in ``options`` replace the old pin's (Go takes only the name)."""
        old = await self._existing_pin(from_cid)
        if old.type is not PinType.DATA:
            raise InvalidInput("this pin type cannot be updated")
        changes: dict[str, Any] = {"cid": to_cid, "pin_update": from_cid, "timestamp": go_now()}
        if options.name:
            changes["name"] = options.name
        # Go keeps the old pin's metadata and origins even when the update gives new ones; we take them.
        if options.metadata:
            changes["metadata"] = options.metadata
        if options.origins:
            changes["origins"] = options.origins
        if options.expire_at is not None and not old.expired_at(go_now()) and options.expire_at > go_now():
            changes["expire_at"] = options.expire_at
        pin = old.replace(**changes)
        await self.consensus.log_pin(pin.cid.bytes, pin_to_state(pin))
        return pin

    async def pin_path(self, path: str, options: PinOptions) -> Pin:
        return await self.pin(await self._resolve(path), options)

    async def _existing_pin(self, cid: CID) -> Pin:
        """The pin a write (unpin, update) applies to. A pin just committed through another peer may not be
        applied here yet: before answering "not in the pinset", wait (briefly) until this peer has applied what
        the leader committed, so that a client may pin on one peer and unpin or update on another."""
        pin = await self.pinset.get(cid)
        if pin is None:
            with contextlib.suppress(PinclusterError):
                if await self.consensus.leader() != str(self.peer_id):
                    # A follower learns the leader's commit index from the next append-entries message, sent at
                    # least every heartbeat period: "in sync" right now may predate the write the client saw
                    # acknowledged through another peer. One period later it covers it.
                    await asyncio.sleep(_seconds(self.config.raft.heartbeat_timeout) / 10 + 0.05)
                await self.consensus.wait_for_sync(timeout=_SYNC_BEFORE_NOT_FOUND)
            pin = await self.pinset.get(cid)
        if pin is None:
            raise NotFound(NOT_IN_PINSET)
        return pin

    async def unpin(self, cid: CID) -> Pin:
        with tracing.span("cluster/Unpin", cid=cid):
            if self.config.cluster.follower_mode:
                raise InvalidInput("this peer is configured to be in follower mode. Write operations are disabled")
            pin = await self._existing_pin(cid)
            if pin.type is PinType.SHARD:
                raise InvalidInput("cannot unpin a shard directly. Unpin content root CID instead")
            if pin.type is PinType.CLUSTER_DAG:
                raise InvalidInput("cannot unpin a Cluster DAG directly. Unpin content root CID instead")
            await self.consensus.log_unpin(cid.bytes)
            log.debug("unpinned %s", cid)
            return pin

    async def unpin_path(self, path: str) -> Pin:
        return await self.unpin(await self._resolve(path))

    async def _resolve(self, path: str) -> CID:
        parts = [p for p in path.strip("/").split("/") if p]
        if len(parts) < 2 or parts[0] not in ("ipfs", "ipns", "ipld"):
            raise InvalidInput(f"error parsing path: invalid path {path!r}")
        if parts[0] == "ipfs" and len(parts) == 2:
            return CID.decode(parts[1])
        return await self.ipfs.resolve("/" + "/".join(parts))

    async def pin_get(self, cid: CID) -> Pin:
        pin = await self.pinset.get(cid)
        if pin is None:
            raise NotFound(NOT_IN_PINSET)
        return pin

    async def pins(self, types: Collection[PinType] | None = None) -> AsyncIterator[Pin]:
        async for pin in self.pinset.list():
            if not types or pin.type in types:
                yield pin

    async def pin_modes(self) -> AsyncIterator[list[tuple[str, PinMode]]]:
        """Only the fields the proxy's ``pin/ls`` shows, from the stored pins (a Pin costs ~4 µs to build)."""
        async for page in self.pinset.raw_pages():
            out = stored_pin_modes(page)
            if out:
                yield out

    # ------------------------------------------------------------------ ClusterAPI: status and recover
    async def _error_info(self, cid: CID, peer: PeerID, err: Exception, pin: Pin | None) -> PinInfo:
        """A peer that could not answer shows as ``cluster_error`` with the reason."""
        blank = pin or Pin(cid=cid, allocations=(), timestamp=go_now())
        return await self._remote_info(blank, peer, TrackerStatus.CLUSTER_ERROR, error=str(err))

    async def _remote_info(self, pin: Pin, peer: PeerID, status: TrackerStatus, error: str = "") -> PinInfo:
        """A status this peer states for another peer without asking it (remote, unpinned, cluster_error),
        with that peer's name and IPFS node from its last ping metric."""
        info = await self._peer_info(peer)
        return PinInfo(
            cid=pin.cid,
            name=pin.name,
            peer=peer,
            allocations=pin.allocations,
            origins=pin.origins,
            created=pin.timestamp,
            metadata=pin.metadata,
            peername=info.peername,
            ipfs_peer_id=info.ipfs_id,
            ipfs_peer_addresses=info.ipfs_addresses,
            status=status,
            timestamp=go_now(),
            error=error,
        )

    async def _global_op(self, cid: CID, method: str) -> GlobalPinInfo:
        """Status or Recover on the peers that matter for ``cid`` (spec §4.5, §4.6)."""
        members = await self.member_ids()
        pin = await self.pinset.get(cid)
        if pin is None:  # Go's answer to both: every member "unpinned" (only a local recover is a 404)
            blank = Pin(cid=cid, allocations=(), timestamp=go_now())
            infos = [await self._remote_info(blank, p, TrackerStatus.UNPINNED) for p in members]
            return GlobalPinInfo.from_pin_infos(infos)
        ask = members if pin.is_pin_everywhere else [p for p in members if p in pin.allocations]
        infos = [await self._remote_info(pin, p, TrackerStatus.REMOTE) for p in members if p not in ask]
        results = await self.rpc.call_many(ask, method, cid, result_type=PinInfo, timeout=STATUS_TIMEOUT)
        for peer, res in zip(ask, results, strict=True):
            infos.append(await self._error_info(cid, peer, res, pin) if isinstance(res, Exception) else res)
        return GlobalPinInfo.from_pin_infos(infos)

    async def status(self, cid: CID, *, local: bool = False) -> GlobalPinInfo:
        with tracing.span("cluster/StatusLocal" if local else "cluster/Status", cid=cid):
            if local:
                return (await self.tracker.status(cid)).to_global()
            return await self._global_op(cid, "PinTracker.Status")

    async def recover(self, cid: CID, *, local: bool = False) -> GlobalPinInfo:
        with tracing.span("cluster/RecoverLocal" if local else "cluster/Recover", cid=cid):
            if local:
                return (await self.tracker.recover(cid)).to_global()
            return await self._global_op(cid, "PinTracker.Recover")

    async def status_all(self, filter: TrackerStatus, *, local: bool = False) -> AsyncIterator[GlobalPinInfo]:
        if local:
            async for info in self.tracker.status_all(filter):
                yield info.to_global()
            return
        async for g in self._merge_all("PinTracker.StatusAll", int(filter)):
            yield g

    async def recover_all(self, *, local: bool = False) -> AsyncIterator[GlobalPinInfo]:
        if local:
            async for info in self.tracker.recover_all():
                yield info.to_global()
            return
        async for g in self._merge_all("Cluster.RecoverAllLocal", None):
            yield g

    async def _merge_all(self, method: str, arg: Any) -> AsyncIterator[GlobalPinInfo]:
        """Every member streams its local statuses in CID order; merge them by CID as they arrive, so memory
        holds one message of items per member rather than the whole pinset (Go collects everything in a map).

        Remote items come in batches (``RPC.stream_batches``); the merge only awaits a member when its batch
        is used up, and the first batches are fetched concurrently."""
        members = await self.member_ids()
        streams = [
            # No deadline: a listing of a large pinset takes minutes (None would mean RPC's default, 60 s).
            self.rpc.stream_batches(p, method, arg, result_type=PinInfo, timeout=UNBOUNDED) for p in members
        ]
        failed: dict[PeerID, Exception] = {}
        bufs: list[list[PinInfo]] = [[] for _ in members]
        pos = [0] * len(members)
        heads: list[tuple[bytes, int, PinInfo]] = []
        yielded = False

        async def refill(i: int) -> bool:
            """Next non-empty batch of member ``i``; False at its end (or failure, recorded)."""
            while True:
                try:
                    batch = await anext(streams[i])
                except StopAsyncIteration:
                    return False
                except Exception as exc:
                    failed[members[i]] = exc
                    log.warning("%s on %s failed: %s", method, members[i], exc)
                    return False
                if batch:
                    bufs[i], pos[i] = batch, 0
                    return True

        def push(i: int) -> None:
            info = bufs[i][pos[i]]
            pos[i] += 1
            heapq.heappush(heads, (info.cid.bytes, i, info))

        try:
            for i, ok in enumerate(await asyncio.gather(*(refill(i) for i in range(len(streams))))):
                if ok:
                    push(i)
            while heads:
                key, i, first = heapq.heappop(heads)
                group = [first]
                nexts = [i]
                while heads and heads[0][0] == key:
                    _, j, info = heapq.heappop(heads)
                    group.append(info)
                    nexts.append(j)
                for peer, exc in failed.items():
                    group.append(await self._error_info(first.cid, peer, exc, None))
                yield GlobalPinInfo.from_pin_infos(group)
                yielded = True
                for j in nexts:
                    if pos[j] < len(bufs[j]) or await refill(j):
                        push(j)
            if not yielded and failed and len(failed) == len(members):
                # Nobody answered: an empty listing (204) would claim there are no pins at all.
                raise Unavailable(f"{method}: no peer could list its statuses: " + "; ".join(
                    f"{peer}: {exc}" for peer, exc in failed.items()))
        finally:
            for s in streams:
                with contextlib.suppress(Exception):
                    await s.aclose()

    # ------------------------------------------------------------------ listings as NDJSON
    async def pins_ndjson(self, types: Collection[PinType] | None = None) -> AsyncIterator[bytes]:
        """``pins(types)`` as NDJSON chunks written straight from the stored pins (``GET /allocations``)."""
        bits = 0
        for t in types or ():
            bits |= t.bits
        async for page in self.pinset.raw_pages():
            raws = [raw for _, raw in page if not bits or decode_state(raw).type & bits]
            for i in range(0, len(raws), LISTING_CHUNK):
                yield state_pin_lines(raws[i : i + LISTING_CHUNK])

    async def status_all_ndjson(self, filter: TrackerStatus, *, local: bool = False) -> AsyncIterator[bytes]:
        """``status_all`` as NDJSON chunks, assembled from compact rows (see ``pincluster.pintracker.listing``):
        the same lines as ``to_json`` of each GlobalPinInfo, at a fraction of the cost."""
        name, ipfs_id, addrs = self.tracker.identity()
        me = PeerEntries(self.peer_id, name, ipfs_id, addrs)
        if local:
            async for chunk in local_lines(self.tracker.status_pages(filter), me):
                yield chunk
            return
        members = await self.member_ids()

        async def entries_of(peer: PeerID) -> PeerEntries:
            info = await self._peer_info(peer)
            return PeerEntries(peer, info.peername, info.ipfs_id, info.ipfs_addresses)

        if filter == 0 and self.peer_id in members:
            sparse = {p: self._sparse_rows_of(p) for p in members if p != self.peer_id}
            async for chunk in sparse_lines(members, self.peer_id, self.tracker.listing_pages(), me, sparse,
                                            entries_of, self.pinset.stored, self.clock.now_ns):
                yield chunk
            return
        remotes = {p: self._status_rows_of(p, filter) for p in members if p != self.peer_id}
        # The local walk also gives the pins' fields for the other peers' rows; with a filter only operations
        # can match, those rows are few and their pins are read one by one instead (no pinset walk).
        every = not self.tracker.only_operations(filter)
        async for chunk in merged_lines(
            members, self.peer_id, self.tracker.status_pages(filter, every=every), me, remotes, entries_of,
            self.pinset.stored, self.clock.now_ns,
        ):
            yield chunk

    async def _sparse_rows_of(self, peer: PeerID) -> AsyncIterator[tuple[bool, list[StatusRows]]]:
        """``peer``'s rows for an unfiltered merged listing: ``StatusAllSparse`` (True: what is not sent is
        derived here), or all its rows from a peer that does not have it (False)."""
        first = True
        try:
            async with contextlib.aclosing(self.rpc.stream_batches(
                    peer, "PinTracker.StatusAllSparse", None, result_type=StatusRows, timeout=UNBOUNDED)) as stream:
                async for batches in stream:
                    first = False
                    yield True, batches
            return
        except UnknownMethod:
            if not first:
                raise
            log.debug("%s has no StatusAllSparse (an older version): asking for every row", peer)
        async for batches in self._status_rows_of(peer, TrackerStatus.UNDEFINED):
            yield False, batches

    async def _status_rows_of(self, peer: PeerID, filter: TrackerStatus) -> AsyncIterator[list[StatusRows]]:
        """``peer``'s rows for a merged listing: ``StatusAllCompact``, or ``StatusAllRows`` from a peer that
        does not have it (an older version). No deadline: a listing of a large pinset takes minutes (None
        would mean RPC's default, 60 s)."""
        yielded = False
        for method in ("PinTracker.StatusAllCompact", "PinTracker.StatusAllRows"):
            try:
                async with contextlib.aclosing(self.rpc.stream_batches(
                        peer, method, int(filter), result_type=StatusRows, timeout=UNBOUNDED)) as stream:
                    async for batches in stream:
                        yielded = True
                        yield batches
                return
            except UnknownMethod:
                if yielded or method == "PinTracker.StatusAllRows":
                    raise
                log.debug("%s has no StatusAllCompact (an older version): asking for StatusAllRows", peer)

    # ------------------------------------------------------------------ ClusterAPI: the rest
    async def repo_gc(self, *, local: bool = False) -> GlobalRepoGC:
        if local:
            rg = await self.repo_gc_local()
            return GlobalRepoGC(peer_map={self.peer_id: rg})
        peer_map: dict[PeerID, RepoGC] = {}
        for peer in await self.member_ids():
            try:
                peer_map[peer] = await self.rpc.call(peer, "Cluster.RepoGCLocal", result_type=RepoGC,
                                                     timeout=UNBOUNDED)  # a GC may take minutes
            except Exception as exc:
                info = await self._peer_info(peer)
                peer_map[peer] = RepoGC(peer=peer, peername=info.peername, keys=(), error=str(exc))
        return GlobalRepoGC(peer_map=peer_map)

    async def repo_stat(self, *, local: bool = False) -> IPFSRepoStat:
        """Sum of the members' IPFS repo stats; unreachable members are skipped, as Go's proxy does."""
        if local:
            return await self.ipfs.repo_stat()
        members = await self.member_ids()
        results = await self.rpc.call_many(members, "IPFSConnector.RepoStat", result_type=IPFSRepoStat,
                                           timeout=STATUS_TIMEOUT)
        size = smax = 0
        for peer, res in zip(members, results, strict=True):
            if isinstance(res, Exception):
                log.debug("repo/stat of %s: %s", peer, res)
                continue
            size += res.repo_size
            smax += res.storage_max
        return IPFSRepoStat(repo_size=size, storage_max=smax)

    async def repo_gc_local(self) -> RepoGC:
        keys: list[IPFSRepoGC] = []
        try:
            async for k in self.ipfs.repo_gc():
                keys.append(k)
        except PinclusterError as exc:
            return RepoGC(peer=self.peer_id, peername=self.peername, keys=tuple(keys), error=str(exc))
        return RepoGC(peer=self.peer_id, peername=self.peername, keys=tuple(keys))

    async def connect_graph(self) -> ConnectGraph:
        members = await self.member_ids()
        names: dict[PeerID, str] = {}
        cluster_links: dict[PeerID, tuple[PeerID, ...]] = {}
        ipfs_links: dict[PeerID, tuple[PeerID, ...]] = {}
        to_ipfs: dict[PeerID, PeerID] = {}
        results = await self.rpc.call_many(members, "Cluster.ID", result_type=ID, timeout=STATUS_TIMEOUT)
        for peer, res in zip(members, results, strict=True):
            if isinstance(res, Exception):
                cluster_links[peer] = ()
                continue
            names[peer] = res.peername
            cluster_links[peer] = tuple(p for p in (res.cluster_peers or ()) if p != peer and p in members)
            if not res.ipfs.error and res.ipfs.id is not None:
                to_ipfs[peer] = res.ipfs.id
                try:
                    swarm = await self.rpc.call(peer, "IPFSConnector.SwarmPeers", result_type=list[PeerID],
                                                timeout=STATUS_TIMEOUT)
                    ipfs_links[res.ipfs.id] = tuple(swarm)
                except Exception as exc:
                    log.debug("swarm peers of %s: %s", peer, exc)
                    ipfs_links[res.ipfs.id] = ()
        return ConnectGraph(
            cluster_id=self.peer_id,
            id_to_peername=names,
            ipfs_links=ipfs_links,
            cluster_links=cluster_links,
            cluster_trust_links=dict.fromkeys(members, True),
            cluster_to_ipfs=to_ipfs,
        )

    async def alerts(self) -> list[Alert]:
        return self.monitor.recent_alerts()

    async def latest_metrics(self, name: str) -> list[Metric]:
        return await self.monitor.latest_metrics(name)

    async def metric_names(self) -> list[str]:
        return self.monitor.metric_names()

    async def bandwidth(self) -> dict[str, Bandwidth] | None:
        """This peer's traffic per protocol (``GET /health/bandwidth``); None when nothing counts it."""
        return None if self.bandwidth_counter is None else self.bandwidth_counter.by_protocol()

    async def add(self, entries: AsyncIterable[Any], params: AddParams) -> AsyncIterator[AddedOutput]:
        from pincluster.cluster_add import add_content

        async for out in add_content(self, entries, params):
            yield out

    async def wait_pinned(self, cid: CID, timeout: float) -> GlobalPinInfo:
        """Poll the global status until every allocated peer reports pinned (used by tests and ``--wait``)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            g = await self.status(cid)
            if all(s.status in (TrackerStatus.PINNED, TrackerStatus.REMOTE) for s in g.peer_map.values()):
                return g
            if asyncio.get_running_loop().time() > deadline:
                return g
            await asyncio.sleep(0.2)

