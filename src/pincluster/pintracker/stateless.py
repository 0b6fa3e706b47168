"""The stateless pin tracker (Go's ``pintracker/stateless``; spec §3.1, §4.5, §4.6, §7.3.7, §13.5).

It keeps no copy of the pinset. The shared state says what should be pinned here, IPFS says what is, and the
tracker holds only the operations in between (queued, running, failed). A status is the operation's status if
there is one, otherwise it is derived on the spot from the pinset entry and IPFS.

Queue: ``concurrent_pins`` pin workers read one priority queue with two lanes (young pins with few attempts
first, the rest after, FIFO within a lane); one worker handles unpins. Each queue holds at most
``max_pin_queue_size`` live operations (cancelled entries, skipped by the workers, do not count); an
operation that does not fit is left in ``pin_error``/``unpin_error`` with Go's text, so ``recover`` retries it
later.

``status_all`` streams: it first reads the IPFS node's pins into two compact indexes of multihashes
(recursive and direct; 8 bytes per pin, see ``_MultihashIndex``), then walks the pinset iterator once. A
sorted merge would need both streams in the same order, and kubo's ``pin/ls`` is not sorted (nor is CID-bytes
order multihash order once CIDv1s are mixed in); the indexes cost memory in the number of pins *this node*
holds, never the cluster pinset. Keys are multihashes so that a CIDv0 and its CIDv1 match. Direct pins are
listed too, so direct cluster pins show ``pinned`` (Go lists only recursive pins and shows them
``unexpectedly_unpinned``: a bug not copied).

Listings and recover walk the stored pins as compact rows (``status_pages``), building objects only for
what is returned; ``status_rows`` is the same walk for another peer merging a listing (``pintracker.rows``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from array import array
from bisect import bisect_left
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine, Iterator
from datetime import datetime, timedelta
from typing import Any, cast

from pincluster.aio import cancel_and_wait
from pincluster.clock import SYSTEM_CLOCK, Clock
from pincluster.config.sections import StatelessTrackerConfig
from pincluster.errors import NOT_IN_PINSET, NotFound, Unavailable
from pincluster.ipfsconn.interface import IPFSError
from pincluster.observe import tracing
from pincluster.pintracker.heads import HeadCache, HeadSession, RangeReader, WalkPage
from pincluster.pintracker.interface import QUEUE_FULL_ERROR, PinsetReader, TrackerIPFS
from pincluster.pintracker.optracker import Operation, OperationTracker, OpPhase, OpType
from pincluster.pintracker.rows import (
    CODE_OF,
    DERIVED_ERRORS,
    ListedPage,
    LocalRow,
    Row,
    StatusRows,
    implied_status,
)
from pincluster.types.cid import CID
from pincluster.types.codec import (
    DecodeError,
    StatusFields,
    StoredPin,
    allocated_elsewhere,
    cid_multihash,
    decode_state,
    decode_status_fields,
    decode_status_key,
    global_head_json,
    held_status_keys,
    pin_from_state,
    pin_from_stored,
    pin_to_state,
    status_key,
)
from pincluster.types.gotime import ZERO_TIME, from_unix_nano, is_zero_time, unix_nano
from pincluster.types.models import Pin, PinInfo
from pincluster.types.multiaddr import Multiaddr
from pincluster.types.peer import PeerID
from pincluster.types.status import UNEXPECTEDLY_UNPINNED_ERROR, IPFSPinStatus, PinType, TrackerStatus

__all__ = ["IPFSInfo", "StatelessPinTracker"]

log = logging.getLogger("pincluster.pintracker")

IPFSInfo = Callable[[], tuple[PeerID | None, tuple[Multiaddr, ...]]]
"""Returns this peer's IPFS daemon ID and addresses for PinInfo (the lead wires it to the ping metric cache)."""

#: Statuses that can only come from a pinset entry (as opposed to an operation).
_PINSET_STATUSES = (
    TrackerStatus.PINNED
    | TrackerStatus.UNEXPECTEDLY_UNPINNED
    | TrackerStatus.SHARDED
    | TrackerStatus.REMOTE
    | TrackerStatus.CLUSTER_ERROR
)
_RECOVERABLE = TrackerStatus.PIN_ERROR | TrackerStatus.UNPIN_ERROR | TrackerStatus.UNEXPECTEDLY_UNPINNED

# Lanes of the pin queue (lower is served first).
_PRIORITY_LANE = 0
_NORMAL_LANE = 1


#: Rows per ``StatusRows`` message (~25 KB; each row's error text is at most a few hundred bytes).
_ROWS_PER_BATCH = 500
_PINNED = int(TrackerStatus.PINNED)
_REMOTE = int(TrackerStatus.REMOTE)
_SHARDED = int(TrackerStatus.SHARDED)
_META_CODE = PinType.META.bits
#: ``listing_pages``: a status key that leaves this peer's status to its IPFS node's recursive / direct pins.
_NEEDS_RECURSIVE = 0
_NEEDS_DIRECT = -1
_KINDS_MAX = 1 << 16


def _render_head(raw: bytes) -> bytes:
    """A merged listing line's start, from the stored pin (``HeadSession.heads`` keeps it between listings)."""
    return global_head_json(decode_state(raw)).encode()


class _Kinds:
    """What a status key means for this peer: its status when the key decides it (remote, sharded), else
    which IPFS pin decides it (``_NEEDS_RECURSIVE``, ``_NEEDS_DIRECT``). Worked out once per distinct key: a
    listing has a handful (pins with the same allocations and replication share one)."""

    __slots__ = ("known", "me")

    def __init__(self, me: bytes) -> None:
        self.me = me
        self.known: dict[bytes, int] = {}

    def of(self, skey: bytes) -> int:
        kind = self.known.get(skey)
        if kind is not None:
            return kind
        if len(self.known) >= _KINDS_MAX:  # many distinct allocation sets: keep the memory bounded
            self.known.clear()
        f = decode_status_key(skey)
        kind = implied_status(f, self.me)
        if kind is None:
            kind = _NEEDS_DIRECT if f.max_depth == 0 else _NEEDS_RECURSIVE
        self.known[skey] = kind
        return kind


def _row_batches(ts_ns: int, rows: list[Row], compact: bool) -> Iterator[StatusRows]:
    """``rows`` in bounded batches (an RPC message stays far below the stream's size limit, errors included);
    with ``compact``, runs of derived rows (no time of their own) in compact form."""
    n = _ROWS_PER_BATCH
    i = 0
    while i < len(rows):
        derived = compact and rows[i][2] is None
        j = min(i + n, len(rows))
        if compact:  # the run ends at the first row of the other kind
            j = next((k for k in range(i + 1, j) if (rows[k][2] is None) != derived), j)
        run = rows[i:j]
        if derived:
            yield StatusRows(ts_ns=ts_ns, rows=[], keys=[r[0] for r in run], codes=bytes([CODE_OF[r[1]] for r in run]))
        else:
            yield StatusRows(ts_ns=ts_ns, rows=run)
        i = j


def _first(row: LocalRow) -> bytes:
    return row[0]


def _op_key(op: Operation) -> bytes:
    return op.cid.bytes


class _MultihashIndex:
    """A set of multihashes in ~9 bytes each: a sorted ``array`` of their 64-bit hashes, cut into buckets by
    their top bits.

    A listing needs "does IPFS hold this multihash" for every pin of the pinset; a ``set`` of the multihashes
    costs ~100 bytes per IPFS pin (tens of MB at a million pins, which the allocator then keeps). The bucket
    of a hash (about 8 hashes each; hashes are uniform) bounds the binary search to a few comparisons. A false
    positive needs two different multihashes with equal 64-bit SipHash values: about n/2^64 per lookup."""

    __slots__ = ("_keys", "_shift", "_sorted", "_starts")

    def __init__(self) -> None:
        self._keys = array("q")
        self._sorted = True
        self._shift = 64
        self._starts = array("q", [0, 0])

    def add_cids(self, cids: list[bytes]) -> None:
        """Add the multihashes of binary CIDs (v0 and v1 of one multihash are one entry)."""
        self._keys.extend([hash(cid_multihash(c)) for c in cids])
        self._sorted = False

    def freeze(self) -> None:
        """Sort once after the adds and find where each bucket starts (lookups need both)."""
        if self._sorted:
            return
        keys = sorted(self._keys)
        bits = min(24, (len(keys) // 8).bit_length())
        shift = 64 - bits
        # bucket b holds the hashes h with (h + 2^63) >> shift == b: it starts at the first h >= b·2^shift − 2^63
        starts = [bisect_left(keys, (b << shift) - _HALF) for b in range(1 << bits)]
        starts.append(len(keys))
        self._starts = array("q", starts)
        self._keys, self._shift, self._sorted = array("q", keys), shift, True

    def __len__(self) -> int:
        return len(self._keys)

    def holds(self, mhs: list[bytes]) -> list[bool]:
        """``mh in self`` for each of ``mhs``, by columns: a listing asks for a page of pins at a time, and a
        call per pin costs several times the lookup."""
        if not self._sorted:
            self.freeze()
        keys, starts, shift = self._keys, self._starts, self._shift
        hs = [hash(m) for m in mhs]
        bs = [(h + _HALF) >> shift for h in hs]
        ends = [starts[b + 1] for b in bs]
        at = [bisect_left(keys, h, starts[b], e) for h, b, e in zip(hs, bs, ends, strict=True)]
        return [i < e and keys[i] == h for i, e, h in zip(at, ends, hs, strict=True)]

    def __contains__(self, mh: object) -> bool:
        if not self._sorted:
            self.freeze()
        h = hash(mh)
        b = (h + _HALF) >> self._shift
        starts = self._starts
        hi = starts[b + 1]
        i = bisect_left(self._keys, h, starts[b], hi)
        return i < hi and self._keys[i] == h


#: Added to a signed 64-bit hash to order it as unsigned (its top bits then number its bucket).
_HALF = 1 << 63


def _td_ns(d: timedelta) -> int:
    return ((d.days * 86400 + d.seconds) * 1_000_000 + d.microseconds) * 1000


def _satisfies(st: IPFSPinStatus, max_depth: int) -> bool:
    """Whether IPFS holds the CID as the pin needs. A recursive IPFS pin also holds a direct cluster pin's
    block (a recursive pin cannot be downgraded, spec §4.1), so it counts as pinned for max_depth 0.
    Compared by value, so any enum with these values works."""
    if max_depth == 0:
        return st.value in ("direct", "recursive")
    return st.value == "recursive"


def _is_not_pinned_error(exc: BaseException) -> bool:
    """kubo's answer to unpinning something that is not pinned: nothing to do, not a failure."""
    return isinstance(exc, IPFSError) and "not pinned" in exc.message


class StatelessPinTracker:
    """Reconciles the pins allocated to ``peer`` with its IPFS node. Implements ``PinTracker``."""

    def __init__(
        self,
        config: StatelessTrackerConfig,
        peer: PeerID,
        ipfs: TrackerIPFS,
        pinset: PinsetReader,
        *,
        peername: str = "",
        clock: Clock = SYSTEM_CLOCK,
        ipfs_info: IPFSInfo | None = None,
        recover_interval: timedelta | None = None,
        heads: HeadCache | None = None,
    ) -> None:
        self.config = config
        #: The merged listing's line heads from one listing to the next (None: formatted every time).
        self.heads = heads
        self.peer = peer
        self.peername = peername
        self._ipfs = ipfs
        self._pinset = pinset
        self._clock = clock
        self._ipfs_info = ipfs_info
        self._recover_interval = recover_interval
        self._ops = OperationTracker()
        #: The IPFS pin indexes of the last listing, with the pins generation they were read at.
        self._pin_index: tuple[int, _MultihashIndex, _MultihashIndex] | None = None
        self._seq = itertools.count()
        # Unbounded asyncio queues; the bound is on live entries, counted here per operation type.
        self._pin_q: asyncio.PriorityQueue[tuple[int, int, Operation]] = asyncio.PriorityQueue()
        self._unpin_q: asyncio.Queue[Operation] = asyncio.Queue()
        self._queued: dict[OpType, int] = dict.fromkeys(OpType, 0)
        self._tasks: list[asyncio.Task[None]] = []
        self._max_age_ns = _td_ns(config.priority_pin_max_age)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Start the workers (and the periodic recover loop when ``recover_interval`` is set)."""
        if self._tasks:
            return
        for i in range(self.config.concurrent_pins):
            self._tasks.append(asyncio.create_task(self._pin_worker(), name=f"pintracker-pin-{i}"))
        self._tasks.append(asyncio.create_task(self._unpin_worker(), name="pintracker-unpin"))
        if self._recover_interval is not None and self._recover_interval > timedelta(0):
            self._tasks.append(asyncio.create_task(self._recover_loop(), name="pintracker-recover"))

    async def shutdown(self) -> None:
        """Stop the workers and cancel running IPFS calls (those operations stay ``pinning``/``unpinning``
        until the process ends; after a restart, recover brings every pin back from the pinset)."""
        for op in self._ops:
            if op.phase is OpPhase.IN_PROGRESS:
                op.cancel()
        await cancel_and_wait(self._tasks)
        self._tasks.clear()

    # ------------------------------------------------------------------ consensus hooks
    async def track(self, pin: Pin, *, maybe_here: bool = True) -> None:
        """Consensus added or updated ``pin``: pin it here if allocated here, make sure it is not if not.

        ``maybe_here=False`` says the cluster never had this pin allocated here (a new pin, or its previous
        version was allocated elsewhere too). Then a pin allocated elsewhere needs no IPFS call when no
        operation is pending for it. Go unpins every "remote" pin in IPFS on every peer, which costs one IPFS
        call per pin per peer and also removes a pin a user made directly in IPFS; we only unpin what the
        cluster may have pinned here."""
        if pin.type is PinType.META:
            return  # meta-pins are never pinned in IPFS (status "sharded")
        if pin.is_remote_pin(self.peer):
            if not maybe_here and self._ops.get(pin.cid) is None:
                return  # status "remote", derived from the pinset
            await self._unpin_remote(pin)
            return
        self._enqueue(pin, OpType.PIN)

    async def track_stored(self, key: bytes, value: bytes, before: bytes | None, *, before_known: bool = True) -> None:
        """``track`` of a committed change as the state stores it: ``value`` the pin now, ``before`` what the key
        held just before (None: nothing; ``before_known=False``: not known).

        Most committed pins are allocated elsewhere and were never allocated here: with no operation pending
        they need nothing, which the stored fields tell without building the Pin (a third of the apply loop's
        time on a peer during ingest was spent building Pins that were then ignored)."""
        me = self.peer.bytes
        maybe_here = not before_known or (
            before is not None and not allocated_elsewhere(decode_status_fields(before), me))
        if (not maybe_here and allocated_elsewhere(decode_status_fields(value), me)
                and self._ops.get_bytes(key) is None):
            return  # what ``track`` decides for it ("remote", derived from the pinset), without the Pin
        await self.track(pin_from_state(value), maybe_here=maybe_here)

    async def untrack(self, cid: CID) -> None:
        """Consensus removed ``cid``: unpin it."""
        self._enqueue(Pin(cid=cid), OpType.UNPIN)

    # ------------------------------------------------------------------ queries
    def pin_queue_size(self) -> int:
        """Pin operations waiting for a worker (the ``pinqueue`` informer's value)."""
        return self._queued[OpType.PIN]

    def status_counts(self) -> dict[TrackerStatus, int]:
        """Live operations by status (queued, running, failed) for the metrics: O(operations), not pinset."""
        counts: dict[TrackerStatus, int] = {}
        for op in self._ops:
            counts[op.status] = counts.get(op.status, 0) + 1
        return counts

    async def status(self, cid: CID) -> PinInfo:
        """This peer's status for ``cid`` (spec §4.5 StatusLocal)."""
        op = self._ops.get(cid)
        if op is not None:
            return self._op_info(op)
        pin = await self._pinset.get(cid)
        if pin is None:
            return self._info(Pin(cid=cid), TrackerStatus.UNPINNED, in_pinset=False)
        return await self._pin_status(pin)

    async def status_all(self, flt: TrackerStatus = TrackerStatus.UNDEFINED) -> AsyncIterator[PinInfo]:
        """Stream this peer's status of every pin (and of operations on CIDs no longer in the pinset),
        keeping those that match ``flt`` (0 = all)."""
        ipfs = self._ipfs_id()
        async for page_ts, page in self.status_pages(flt):
            for key, stored, row in page:
                if row is None:
                    continue
                _, status, ts_ns, error, attempts, priority, in_pinset = row
                pin = pin_from_stored(stored) if stored is not None else Pin(cid=CID(key))
                yield self._info(pin, TrackerStatus(status), in_pinset=in_pinset, error=error, attempts=attempts,
                                 priority=priority, ts_ns=page_ts if ts_ns is None else ts_ns, ipfs=ipfs)

    async def recover(self, cid: CID) -> PinInfo:
        """Re-queue a failed operation or an unexpectedly unpinned pin; returns the new status.

        Raises NotFound when the CID is neither in the pinset nor has a failed operation."""
        op = self._ops.get(cid)
        if op is not None:
            self._recover_op(op)
            return await self.status(cid)
        pin = await self._pinset.get(cid)
        if pin is None:
            raise NotFound(NOT_IN_PINSET)  # Go's text, as every other answer about a CID outside the pinset
        info = await self._pin_status(pin)
        if info.status is TrackerStatus.UNEXPECTEDLY_UNPINNED:
            self._enqueue(pin, OpType.PIN)
            return await self.status(cid)
        return info

    async def recover_all(self) -> AsyncIterator[PinInfo]:
        """Recover every failed or unexpectedly unpinned item; yields the status of each one re-queued.

        Walks compact rows (``status_pages``): at start-up every pin of the pinset is looked at, and only
        the few to recover become objects."""
        unexpected = int(TrackerStatus.UNEXPECTEDLY_UNPINNED)
        async for _, page in self.status_pages(_RECOVERABLE):
            for key, _, row in page:
                if row is None:
                    continue
                op = self._ops.get_bytes(key)
                if op is not None:
                    requeued = self._recover_op(op)
                elif row[1] == unexpected:
                    pin = await self._pinset.get(CID(key))
                    requeued = pin is not None and self._enqueue(pin, OpType.PIN) is not None
                else:
                    requeued = False
                if requeued:
                    new = self._ops.get_bytes(key)
                    if new is not None:
                        yield self._op_info(new)

    # ------------------------------------------------------------------ internals: queueing
    def _is_priority(self, op: Operation) -> bool:
        """Young pins with few attempts go first (Go: timestamp after now−max_age, attempts ≤ max_retries)."""
        ts = op.pin.timestamp
        if is_zero_time(ts):
            return False
        age = self._clock.now_ns() - unix_nano(ts)
        return age < self._max_age_ns and op.attempt_count <= self.config.priority_pin_max_retries

    def _enqueue(self, pin: Pin, typ: OpType) -> Operation | None:
        """Queue ``typ`` for ``pin``. Returns the new operation, or None when an equal one is already
        queued or running. An operation of the other type is cancelled; a failed one of the same type
        passes its attempt count on."""
        old = self._ops.get(pin.cid)
        attempts = 0
        if old is not None:
            if old.type is typ and old.phase is OpPhase.QUEUED:
                old.pin = pin  # the worker will use the newest options
                return None
            if old.type is typ and old.phase is OpPhase.IN_PROGRESS and old.pin.max_depth == pin.max_depth:
                return None
            if old.type is typ or (old.type is OpType.REMOTE and typ is OpType.UNPIN):
                attempts = old.attempt_count
            self._cancel(old)
        op = Operation(pin=pin, type=typ, phase=OpPhase.QUEUED, timestamp_ns=self._clock.now_ns(),
                       attempt_count=attempts)
        self._ops.put(op)
        if self._queued[typ] >= self.config.max_pin_queue_size:
            op.phase = OpPhase.ERROR
            op.error = QUEUE_FULL_ERROR
            log.error("%s %s: %s", typ.value, pin.cid, QUEUE_FULL_ERROR)
            return op
        self._queued[typ] += 1
        if typ is OpType.PIN:
            op.priority = self._is_priority(op)
            lane = _PRIORITY_LANE if op.priority else _NORMAL_LANE
            self._pin_q.put_nowait((lane, next(self._seq), op))
        else:
            self._unpin_q.put_nowait(op)
        return op

    def _cancel(self, op: Operation) -> None:
        """Cancel ``op``; a queued one stops counting against the queue size (its entry is skipped later)."""
        if op.phase is OpPhase.QUEUED and not op.cancelled:
            self._queued[op.type] -= 1
        op.cancel()

    def _dequeued(self, op: Operation) -> bool:
        """A worker took ``op`` off a queue: True if it is live (then it no longer counts as queued)."""
        if op.cancelled or op.phase is not OpPhase.QUEUED:
            return False
        self._queued[op.type] -= 1
        return True

    def _recover_op(self, op: Operation) -> bool:
        """Re-queue a failed operation (a failed remote unpin becomes an unpin). True if re-queued."""
        if op.phase is not OpPhase.ERROR:
            return False
        typ = OpType.PIN if op.type is OpType.PIN else OpType.UNPIN
        return self._enqueue(op.pin, typ) is not None

    async def _unpin_remote(self, pin: Pin) -> None:
        """A pin allocated elsewhere must not stay pinned here: unpin it now (status ``remote`` meanwhile)."""
        old = self._ops.get(pin.cid)
        if old is not None:
            self._cancel(old)
        op = Operation(pin=pin, type=OpType.REMOTE, phase=OpPhase.IN_PROGRESS, timestamp_ns=self._clock.now_ns())
        self._ops.put(op)
        await self._execute(op)

    # ------------------------------------------------------------------ internals: workers
    async def _pin_worker(self) -> None:
        while True:
            _, _, op = await self._pin_q.get()
            if not self._dequeued(op):
                continue
            await self._execute(op)

    async def _unpin_worker(self) -> None:
        while True:
            op = await self._unpin_q.get()
            if not self._dequeued(op):
                continue
            await self._execute(op)

    async def _execute(self, op: Operation) -> None:
        """Run the operation's IPFS call as a cancellable task; record success (forget) or error. While tracing
        runs, in a span (``tracker/stateless/Pin``) holding its IPFS calls."""
        with tracing.span(lambda: f"tracker/stateless/{op.type.value.capitalize()}", cid=op.cid,
                          attempt=op.attempt_count + 1) as sp:
            await self._run(op)
            if sp is not None and op.phase is OpPhase.ERROR:
                sp.set_attribute("error", op.error)

    async def _run(self, op: Operation) -> None:
        op.phase = OpPhase.IN_PROGRESS
        op.attempt_count += 1
        op.timestamp_ns = self._clock.now_ns()
        call: Coroutine[Any, Any, None] = self._do_pin(op.pin) if op.type is OpType.PIN else self._do_unpin(op.pin)
        task = asyncio.ensure_future(call)
        op.task = task
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError:
            task.cancel()
            raise
        finally:
            op.task = None
        if op.cancelled or task.cancelled():
            log.debug("%s %s cancelled", op.type.value, op.cid)
            return
        exc = task.exception()
        op.timestamp_ns = self._clock.now_ns()
        if exc is None:
            op.phase = OpPhase.DONE
            self._ops.clean(op)
            return
        op.phase = OpPhase.ERROR
        op.error = str(exc) or type(exc).__name__
        log.warning("%s %s failed (attempt %d): %s", op.type.value, op.cid, op.attempt_count, op.error)

    async def _do_pin(self, pin: Pin) -> None:
        await self._ipfs.pin(pin.cid, pin.max_depth, pin_update=pin.pin_update, origins=pin.origins or ())

    async def _do_unpin(self, pin: Pin) -> None:
        try:
            await self._ipfs.unpin(pin.cid)
        except IPFSError as exc:
            if not _is_not_pinned_error(exc):
                raise

    async def _recover_loop(self) -> None:
        """Every ``pin_recover_interval``: RecoverAllLocal (the cluster runs the first one at start)."""
        assert self._recover_interval is not None
        period = self._recover_interval.total_seconds()
        while True:
            await self._clock.sleep(period)
            n = 0
            try:
                async for _ in self.recover_all():
                    n += 1
            except Exception as exc:  # a down IPFS must not end the loop
                log.warning("periodic recover failed: %s", exc)
                continue
            if n:
                log.info("periodic recover re-queued %d items", n)

    # ------------------------------------------------------------------ internals: statuses
    def _now(self) -> datetime:
        return from_unix_nano(self._clock.now_ns())

    def _ipfs_id(self) -> tuple[PeerID | None, tuple[Multiaddr, ...]]:
        return self._ipfs_info() if self._ipfs_info is not None else (None, ())

    def _info(
        self,
        pin: Pin,
        status: TrackerStatus,
        *,
        in_pinset: bool = True,
        error: str = "",
        attempts: int = 0,
        priority: bool = False,
        ts_ns: int | None = None,
        now: datetime | None = None,
        ipfs: tuple[PeerID | None, tuple[Multiaddr, ...]] | None = None,
    ) -> PinInfo:
        ipfs_id, addrs = ipfs if ipfs is not None else self._ipfs_id()
        return PinInfo(
            cid=pin.cid,
            name=pin.name if in_pinset else "",
            peer=self.peer,
            allocations=pin.allocations if in_pinset else None,
            origins=pin.origins if in_pinset else None,
            created=pin.timestamp if in_pinset else ZERO_TIME,
            metadata=pin.metadata if in_pinset else None,
            peername=self.peername,
            ipfs_peer_id=ipfs_id,
            ipfs_peer_addresses=addrs,
            status=status,
            timestamp=from_unix_nano(ts_ns) if ts_ns is not None else (now or self._now()),
            error=error,
            attempt_count=attempts,
            priority_pin=priority,
        )

    def _op_info(self, op: Operation) -> PinInfo:
        in_pinset = op.type is not OpType.UNPIN
        return self._info(
            op.pin,
            op.status,
            in_pinset=in_pinset,
            error=op.error,
            attempts=op.attempt_count,
            priority=op.priority,
            ts_ns=op.timestamp_ns,
        )

    def _static_status(self, pin: Pin) -> TrackerStatus | None:
        """The status that needs no IPFS lookup, if any."""
        if pin.type is PinType.META:
            return TrackerStatus.SHARDED
        if pin.is_remote_pin(self.peer):
            return TrackerStatus.REMOTE
        return None

    async def _pin_status(self, pin: Pin) -> PinInfo:
        static = self._static_status(pin)
        if static is not None:
            return self._info(pin, static)
        try:
            st = await self._ipfs.pin_ls_cid(pin.cid, pin.max_depth)
        except Exception as exc:
            return self._info(pin, TrackerStatus.CLUSTER_ERROR, error=str(exc) or type(exc).__name__)
        if _satisfies(st, pin.max_depth):
            return self._info(pin, TrackerStatus.PINNED)
        if st.value == "error":
            return self._info(pin, TrackerStatus.CLUSTER_ERROR, error=f"IPFS reported an error status for {pin.cid}")
        return self._info(pin, TrackerStatus.UNEXPECTEDLY_UNPINNED, error=UNEXPECTEDLY_UNPINNED_ERROR)

    async def _ipfs_pinsets(self) -> tuple[_MultihashIndex, _MultihashIndex]:
        """Multihashes of the node's recursive and direct pins, from one streamed ``pin/ls``; kept for the
        next listing when the connector can tell that the node's pins have not changed since."""
        generation = self._ipfs.pins_generation()
        kept = self._pin_index
        if generation is not None and kept is not None and kept[0] == generation:
            return kept[1], kept[2]
        self._pin_index = None
        recursive = _MultihashIndex()
        direct = _MultihashIndex()
        try:
            async for st, keys in self._ipfs.pin_pages(("recursive", "direct")):
                if st is IPFSPinStatus.RECURSIVE:
                    recursive.add_cids(keys)
                elif st is IPFSPinStatus.DIRECT:
                    direct.add_cids(keys)
        except Unavailable:
            raise
        except Exception as exc:
            raise Unavailable(f"cannot list the IPFS node's pins ({exc}); check that IPFS is running") from exc
        recursive.freeze()
        direct.freeze()
        if generation is not None:  # unchanged during the read too, or the next listing reads again
            self._pin_index = (generation, recursive, direct)
        return recursive, direct

    # ------------------------------------------------------------------ compact rows (merged listings)
    def identity(self) -> tuple[str, PeerID | None, tuple[Multiaddr, ...]]:
        """This peer's name and IPFS daemon, as its statuses show them."""
        ipfs_id, addrs = self._ipfs_id()
        return self.peername, ipfs_id, addrs

    async def status_rows(self, flt: TrackerStatus = TrackerStatus.UNDEFINED, *,
                          compact: bool = False) -> AsyncIterator[StatusRows]:
        """``status_all`` as batches of rows (RPC ``PinTracker.StatusAllRows``; with ``compact``,
        ``StatusAllCompact``): the identity in the first batch, then rows in CID order (see
        ``pincluster.pintracker.rows``)."""
        name, ipfs_id, addrs = self.identity()
        ident: tuple[str, bytes | None, list[str]] | None = (
            name, None if ipfs_id is None else ipfs_id.bytes, [str(a) for a in addrs])
        async for ts_ns, page in self.status_pages(flt, fields=False):
            rows = [row for _, _, row in page if row is not None]
            for batch in _row_batches(ts_ns, rows, compact):
                if ident is not None:
                    batch.ident, ident = ident, None
                yield batch
        if ident is not None:  # nothing to list: still say who we are
            yield StatusRows(ts_ns=self._clock.now_ns(), rows=[], ident=ident)

    async def status_rows_sparse(self) -> AsyncIterator[StatusRows]:
        """The unfiltered ``status_rows`` (compact) without what the peer merging the listing derives from
        its own pinset (RPC ``PinTracker.StatusAllSparse``): the pins allocated to other peers (remote) and
        metadata pins (sharded) are left out, unless this peer has an operation on them. What is sent: the
        pins this peer holds (allocated here or everywhere, read from the allocations index with their status
        keys: a third of the pinset at replication 1 on 3 peers, none of it decoded), and every operation, in
        CID order."""
        name, ipfs_id, addrs = self.identity()
        ident: tuple[str, bytes | None, list[str]] | None = (
            name, None if ipfs_id is None else ipfs_id.bytes, [str(a) for a in addrs])
        now_ns = self._clock.now_ns()
        recursive, direct = await self._ipfs_pinsets()
        pinned, unexpected = CODE_OF[_PINNED], CODE_OF[int(TrackerStatus.UNEXPECTEDLY_UNPINNED)]
        ops = self._ops
        op_keys = sorted(op.cid.bytes for op in ops)  # a snapshot: operations that end meanwhile are skipped
        oi = 0
        kinds = _Kinds(self.peer.bytes)
        batches: list[StatusRows] = []
        keys: list[bytes] = []
        codes = bytearray()
        rows: list[Row] = []

        def flush() -> None:
            """End the current run (derived statuses, or operations' rows) as a batch."""
            nonlocal keys, codes, rows
            if keys:
                batches.append(StatusRows(ts_ns=now_ns, rows=[], keys=keys, codes=bytes(codes)))
                keys, codes = [], bytearray()
            if rows:
                batches.append(StatusRows(ts_ns=now_ns, rows=rows))
                rows = []

        def op_row(op: Operation) -> None:
            if keys or len(rows) >= _ROWS_PER_BATCH:
                flush()
            rows.append(self._op_row(op))

        def ops_before(key: bytes | None) -> None:
            """Rows of the operations on CIDs before ``key`` (all left, for None) that the walk does not meet."""
            nonlocal oi
            while oi < len(op_keys) and (key is None or op_keys[oi] < key):
                op = ops.get_bytes(op_keys[oi])
                if op is not None:
                    op_row(op)
                oi += 1

        async for page in self._held():
            check_ops = len(ops) > 0
            for key, skey in page:
                if op_keys:
                    ops_before(key)
                    if oi < len(op_keys) and op_keys[oi] == key:
                        oi += 1
                op = ops.get_bytes(key) if check_ops else None
                if op is not None:
                    op_row(op)
                    continue
                kind = kinds.of(skey)
                if kind == _SHARDED:
                    continue  # the merging peer derives it
                if rows:
                    flush()
                keys.append(key)
                if kind > 0:
                    codes.append(CODE_OF[kind])
                else:
                    mh = cid_multihash(key)
                    codes.append(pinned if (mh in recursive or (kind == _NEEDS_DIRECT and mh in direct))
                                 else unexpected)
                if len(keys) >= _ROWS_PER_BATCH:
                    flush()
            if page:
                flush()
            for batch in batches:
                if ident is not None:
                    batch.ident, ident = ident, None
                yield batch
            batches.clear()
        ops_before(None)
        flush()
        for batch in batches:
            if ident is not None:
                batch.ident, ident = ident, None
            yield batch
        if ident is not None:  # nothing to list: still say who we are
            yield StatusRows(ts_ns=now_ns, rows=[], ident=ident)

    async def _held(self) -> AsyncIterator[list[tuple[bytes, bytes]]]:
        """Pages of ``(key, status key)`` of the pins this peer holds, from the pinset's index when it has one."""
        pages = getattr(self._pinset, "listed_for", None)
        if pages is not None:
            async for page in pages(self.peer):
                yield page
            return
        async for page in self._stored_pages():
            yield held_status_keys(page, self.peer.bytes)

    async def warm_listing(self) -> int:
        """Fill the merged listing's line-head cache (``heads``) from the pinset, at low priority: the daemon
        does it once it is ready, so that a first listing after a start is as fast as the next ones. Returns
        the pins walked (0 without a cache, or a pinset the cache cannot watch)."""
        reader = self._listing_reader()
        if self.heads is None or reader is None:
            return 0
        return await self.heads.warm(reader, _render_head)

    def _listing_reader(self) -> RangeReader | None:
        """The state store, when the pinset gives it (``StatePinset.listing_reader``): the listing cache walks
        it and watches it for changes."""
        reader_of = getattr(self._pinset, "listing_reader", None)
        return None if reader_of is None else cast(RangeReader | None, reader_of())

    async def listing_pages(self) -> AsyncIterator[ListedPage]:
        """This peer's unfiltered statuses for a merged listing (``pincluster.pintracker.listing``), as pages
        in columns: the pinset's CIDs in order, with the start of each pin's line and its stored status key
        (what the merge needs to write the line and the other peers' remote/sharded entries) and this peer's
        status;
        then a page of the operations on CIDs outside the pinset, sorted (``outside``).

        A status key's meaning here (remote, sharded, or which IPFS pin it needs) is worked out once per
        distinct key: most pins need no decoding at all. Line heads come from ``heads`` when the pin has not
        changed since the listing before (``pintracker.heads``)."""
        now_ns = self._clock.now_ns()
        pages = getattr(self._pinset, "listing_pages", None)
        reader = self._listing_reader()
        kinds = _Kinds(self.peer.bytes)
        cache = None if self.heads is None else await self.heads.session(reader)

        async def stored() -> AsyncIterator[WalkPage]:
            if cache is not None and reader is not None:  # unchanged pages from the cache, unread
                async for walked in cache.walk(reader):
                    yield walked
                return
            if pages is not None:
                async for rows in pages():
                    yield WalkPage.of_rows(rows)
                return
            async for page in self._stored_pages():
                yield WalkPage.of_rows([(k, raw, status_key(raw)) for k, raw in page])

        complete = False
        try:
            async with contextlib.aclosing(self._listed(stored(), kinds, cache, now_ns)) as listed_pages:
                async for listed in listed_pages:
                    yield listed
            complete = True
        finally:
            if cache is not None:
                await cache.finish(complete=complete)

    async def _listed(self, stored: AsyncIterator[WalkPage], kinds: _Kinds, cache: HeadSession | None,
                      now_ns: int) -> AsyncGenerator[ListedPage, None]:
        """``listing_pages``' walk of the stored pages."""
        ipfs_error: tuple[int, int, str, int, bool, bool] | None = None  # a Row without its CID
        try:
            recursive, direct = await self._ipfs_pinsets()
        except Unavailable as exc:  # the pins IPFS should hold show the reason; remote and sharded still hold
            recursive = direct = _MultihashIndex()
            ipfs_error = (int(TrackerStatus.CLUSTER_ERROR), now_ns, str(exc), 0, False, True)
        unexpected = int(TrackerStatus.UNEXPECTEDLY_UNPINNED)
        ops = self._ops
        seen: set[bytes] = set()
        async for page in stored:
            keys = page.keys
            if not keys:
                continue
            if None in page.skeys:  # not a readable pin: fails as any listing of it does
                for raw, skey in zip(page.values or (), page.skeys, strict=False):
                    if skey is None:
                        decode_state(raw)
                raise DecodeError("corrupt pin in the state store: no status key")
            skeys = cast(list[bytes], page.skeys)
            # By columns (comprehensions, not a loop per pin): each status key's meaning, then the pins whose
            # IPFS pin decides their status, then the operations, which take over.
            known = [kinds.known.get(skey) for skey in skeys]
            kind_col = cast(list[int], known) if None not in known else [kinds.of(skey) for skey in skeys]
            states: list[int | Row] = cast(list[int | Row], kind_col)
            own = [i for i, kind in enumerate(kind_col) if kind <= 0]  # the pins this peer's IPFS should hold
            if own and ipfs_error is not None:
                for i in own:
                    states[i] = (keys[i], *ipfs_error)
            elif own:
                mhs = [cid_multihash(keys[i]) for i in own]
                found = [_PINNED if held else (_PINNED if (states[i] == _NEEDS_DIRECT and mh in direct) else unexpected)
                         for i, mh, held in zip(own, mhs, recursive.holds(mhs), strict=True)]
                for i, st in zip(own, found, strict=True):
                    states[i] = st
            if len(ops):
                for i in ops.positions(keys):
                    op = ops.get_bytes(keys[i])
                    if op is not None:
                        seen.add(keys[i])
                        states[i] = self._op_row(op)
            if page.heads is not None:  # an unchanged page, from the cache
                heads = page.heads
            elif cache is None:
                heads = [_render_head(raw) for raw in page.values or ()]  # ~3 µs a pin
            else:
                heads = await cache.heads(page, _render_head)
            yield ListedPage(now_ns, keys, heads, skeys, states)
        outside: list[Row] = []
        for other in list(ops):
            key = other.cid.bytes
            if key in seen or await self._pinset.get(other.cid) is not None:
                continue  # met by the walk, or added to the pinset during it: not part of this listing
            outside.append(self._op_row(other))
        if outside:
            outside.sort()
            yield ListedPage(now_ns, [r[0] for r in outside], [], [], list(outside), outside=True)

    @staticmethod
    def only_operations(flt: TrackerStatus) -> bool:
        """Whether only operations (queued, in flight, failed) can match ``flt``: then a listing needs
        neither the pinset walk nor the IPFS pin list."""
        return flt != 0 and not flt & _PINSET_STATUSES

    async def status_pages(
        self, flt: TrackerStatus = TrackerStatus.UNDEFINED, *, every: bool = False, fields: bool = True
    ) -> AsyncIterator[tuple[int, list[LocalRow]]]:
        """This peer's statuses as pages of ``(cid bytes, stored pin, row)``, pinset entries in CID order, then
        operations on CIDs outside the pinset (sorted). ``every``: pinset entries whose status does not match
        ``flt`` are kept with row None (a merged listing takes the pin's fields from them). Statuses derived
        from the pinset carry no time of their own: the page's ``ts_ns`` (one per listing) is theirs.
        ``fields=False``: the stored pins are not wanted (None), only the rows (``status_rows``)."""
        now_ns = self._clock.now_ns()
        if flt != 0 and not flt & _PINSET_STATUSES and not every:
            only = sorted(self._ops.filtered(flt), key=_op_key)
            if only:
                yield now_ns, [(op.cid.bytes, self._op_stored(op), self._op_row(op)) for op in only]
            return
        recursive, direct = await self._ipfs_pinsets()
        fl = int(flt)
        match = {st: TrackerStatus(st).match(flt) for st in DERIVED_ERRORS}
        unexpected = int(TrackerStatus.UNEXPECTEDLY_UNPINNED)
        errors = DERIVED_ERRORS
        me = self.peer.bytes
        ops = self._ops
        seen: set[bytes] = set()
        async for page in self._stored_pages():
            out: list[LocalRow] = []
            check_ops = len(ops) > 0
            for key, raw in page:
                s: StoredPin | StatusFields
                keep: StoredPin | None
                if fields:
                    s = keep = decode_state(raw)
                else:
                    s, keep = decode_status_fields(raw), None
                op = ops.get_bytes(key) if check_ops else None
                if op is not None:
                    seen.add(key)
                    row: Row | None = self._op_row(op)
                    if row is not None and not (fl == 0 or row[1] == 0 or row[1] & fl):
                        row = None
                    out.append((key, keep, row))
                    continue
                if s.type == _META_CODE:
                    st = _SHARDED
                elif not (s.rf_min == -1 and s.rf_max == -1) and me not in s.allocations:  # allocated_elsewhere inline:
                    st = _REMOTE  # the walk's loop is the hot path of every listing
                else:
                    mh = cid_multihash(key)
                    st = _PINNED if (mh in recursive or (s.max_depth == 0 and mh in direct)) else unexpected
                if match[st]:
                    out.append((key, keep, (key, st, None, errors[st], 0, False, True)))
                elif every:
                    out.append((key, keep, None))
            if out:
                yield now_ns, out
        tail_rows: list[LocalRow] = []
        for other in ops.filtered(flt):
            key = other.cid.bytes
            if key in seen:
                continue
            if await self._pinset.get(other.cid) is not None:
                continue  # added to the pinset during the walk: not part of this listing
            tail_rows.append((key, self._op_stored(other), self._op_row(other)))
        if tail_rows:
            tail_rows.sort(key=_first)
            yield now_ns, tail_rows

    def _op_row(self, op: Operation) -> Row:
        return (op.cid.bytes, int(op.status), op.timestamp_ns, op.error, op.attempt_count, op.priority,
                op.type is not OpType.UNPIN)

    def _op_stored(self, op: Operation) -> StoredPin | None:
        """The pin fields an operation's status shows (none for an unpin, as ``_op_info``)."""
        if op.type is OpType.UNPIN:
            return None
        return decode_state(pin_to_state(op.pin))

    async def _stored_pages(self) -> AsyncIterator[list[tuple[bytes, bytes]]]:
        """The pinset's stored ``(key, value)`` pairs by pages, from the reader's ``raw_pages`` when it has
        one (the cluster's state does), else encoded from its pins."""
        raw_pages = getattr(self._pinset, "raw_pages", None)
        if raw_pages is not None:
            async for page in raw_pages():
                yield page
            return
        chunk: list[tuple[bytes, bytes]] = []
        async for pin in self._pinset.list():
            chunk.append((pin.cid.bytes, pin_to_state(pin)))
            if len(chunk) >= 1000:
                yield chunk
                chunk = []
        if chunk:
            yield chunk
