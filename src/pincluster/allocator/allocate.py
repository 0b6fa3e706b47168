"""Choosing the peers that hold a pin (spec §4.4 steps 1–5), block allocation for adds (step 7), and the
"closest peer" rule (§13.6) that makes exactly one peer act on expiries and re-pins.

The cluster calls :meth:`Allocator.allocate` when a pin has no allocations; on a ``ping`` alert it asks
:func:`pins_to_repin` which pins this peer must re-allocate, then re-pins each with the failed peer
blacklisted.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Collection, Iterable, Sequence
from typing import Protocol

from pincluster.allocator.balanced import BalancedAllocator
from pincluster.cache import cached
from pincluster.errors import InvalidInput, Unavailable
from pincluster.types.cid import CID
from pincluster.types.models import Alert, Metric, Pin
from pincluster.types.peer import PeerID

__all__ = [
    "Allocator",
    "BadReplicationFactors",
    "MetricsSource",
    "NotEnoughPeers",
    "is_closest_peer",
    "pins_to_repin",
    "repin_after_alert",
    "xor_distance",
]

log = logging.getLogger("pincluster.allocator")


class BadReplicationFactors(InvalidInput):
    """min + max == 0: no allocation is possible."""


class NotEnoughPeers(Unavailable):
    """Fewer usable peers than ``replication_factor_min``; start more peers or lower the factor."""


class MetricsSource(Protocol):
    """The monitor (``PeerMonitor.latest_metrics``)."""

    async def latest_metrics(self, name: str) -> list[Metric]: ...


class SharedMetricsSource(MetricsSource, Protocol):
    """A monitor that also answers with a shared snapshot (the latest metrics of several names), the same
    object while the answer is unchanged (:meth:`pincluster.monitor.monitor.Monitor.shared_snapshot`);
    the allocator caches on it."""

    async def shared_snapshot(self, names: tuple[str, ...]) -> tuple[tuple[Metric, ...], ...]: ...


#: Allocations remembered per metrics snapshot (distinct current/priority/blacklist/factor combinations).
_MEMO_SIZE = 1024
_MemoKey = tuple[tuple[PeerID, ...], tuple[PeerID, ...], frozenset[PeerID], int, int]


def _not_enough(needed: int, wanted: int, available: int) -> NotEnoughPeers:
    return NotEnoughPeers(
        f"not enough peers to allocate CID. Needed at least: {needed}. Wanted at most: {wanted}. "
        f"Available candidates: {available}. See logs for more info."
    )


class Allocator:
    """The cluster-level allocation algorithm on top of the monitor's metrics and the balanced allocator."""

    def __init__(
        self,
        monitor: MetricsSource,
        balanced: BalancedAllocator,
        *,
        is_trusted: Callable[[PeerID], bool] | None = None,
        pin_only_on_trusted_peers: bool = False,
        pin_only_on_untrusted_peers: bool = False,
    ) -> None:
        if pin_only_on_trusted_peers and pin_only_on_untrusted_peers:
            raise InvalidInput("pin_only_on_trusted_peers and pin_only_on_untrusted_peers cannot both be true")
        self._monitor = monitor
        self.balanced = balanced
        self._is_trusted = is_trusted or (lambda _p: True)
        self._only_trusted = pin_only_on_trusted_peers
        self._only_untrusted = pin_only_on_untrusted_peers
        # The answer depends only on the metrics, the arguments and trust; with a monitor that tells when
        # its metrics changed (and no trust filter, whose answers may change on their own), answers are
        # remembered until the metrics snapshot changes: the same answer, computed once per change.
        self._shared: SharedMetricsSource | None = None
        if hasattr(monitor, "shared_snapshot") and not (pin_only_on_trusted_peers or
                                                               pin_only_on_untrusted_peers):
            self._shared = monitor  # type: ignore[assignment]
        self._memo_metrics: tuple[tuple[Metric, ...], ...] = ()
        self._memo: dict[_MemoKey, tuple[PeerID, ...]] = {}

    async def allocate(
        self,
        cid: CID,
        current: Sequence[PeerID],
        rmin: int,
        rmax: int,
        *,
        blacklist: Collection[PeerID] = (),
        priority: Sequence[PeerID] = (),
    ) -> tuple[PeerID, ...]:
        """The allocations for ``cid`` (``()`` = everywhere). ``current`` are its present allocations,
        ``priority`` the user's preferred peers, ``blacklist`` peers never to use (e.g. a failed peer).

        Raises BadReplicationFactors, or NotEnoughPeers with Go's text."""
        if rmin + rmax == 0:
            raise BadReplicationFactors(f"bad replication factors: {rmin}/{rmax}")
        if rmin < 0 and rmax < 0:
            return ()
        names = self.balanced.metrics
        if self._shared is None:
            snapshot = tuple([tuple(await self._monitor.latest_metrics(name)) for name in names])
            return self._allocate(cid, snapshot, current, rmin, rmax, blacklist, priority)
        snapshot = await self._shared.shared_snapshot(names)
        memo = self._memo
        if snapshot is not self._memo_metrics:
            memo.clear()
            self._memo_metrics = snapshot
        key = (tuple(current), tuple(priority), frozenset(blacklist), rmin, rmax)
        return cached(memo, key, lambda _k: self._allocate(cid, snapshot, current, rmin, rmax, blacklist, priority),
                      _MEMO_SIZE)

    def _allocate(
        self,
        cid: CID,
        snapshot: tuple[tuple[Metric, ...], ...],
        current: Sequence[PeerID],
        rmin: int,
        rmax: int,
        blacklist: Collection[PeerID],
        priority: Sequence[PeerID],
    ) -> tuple[PeerID, ...]:
        """:meth:`allocate` on the latest metrics of each ``allocate_by`` name (``snapshot``, in order)."""
        names = self.balanced.metrics
        per_peer: dict[PeerID, dict[str, Metric]] = {}
        for name, metrics in zip(names, snapshot, strict=True):
            for m in metrics:
                if m.peer is None or m.peer in blacklist:
                    continue
                if self._only_trusted and not self._is_trusted(m.peer):
                    continue
                if self._only_untrusted and self._is_trusted(m.peer):
                    continue
                per_peer.setdefault(m.peer, {})[name] = m
        # a peer is usable only with a metric of every allocate_by name
        usable = {p: ms for p, ms in per_peer.items() if len(ms) == len(names)}
        cur_peers = [p for p in current if p in usable]
        prio_peers = [p for p in priority if p in usable and p not in cur_peers]
        cand_peers = sorted((p for p in usable if p not in cur_peers and p not in prio_peers), key=lambda p: p.bytes)

        needed = rmin - len(cur_peers)
        wanted = rmax - len(cur_peers)
        available = len(prio_peers) + len(cand_peers)
        log.debug("allocate %s: current %d, needed %d, wanted %d, available %d",
                  cid, len(cur_peers), needed, wanted, available)
        if wanted < 0:  # more than max: drop the extras
            return tuple(cur_peers[: len(cur_peers) + wanted])
        if needed <= 0:  # enough: keep the allocations as they are, minus blacklisted peers, at most max
            kept = [p for p in current if p not in blacklist]
            if len(kept) > rmax:  # some are down (no metrics): keep the valid ones first
                kept = cur_peers + [p for p in kept if p not in cur_peers]
            return tuple(kept[:rmax])
        if available < needed:
            raise _not_enough(needed, wanted, available)

        def mset(peers: Iterable[PeerID]) -> dict[str, list[Metric]]:
            return {name: [usable[p][name] for p in peers] for name in names}

        ordered = self.balanced.allocate(cid, mset(cur_peers), mset(cand_peers), mset(prio_peers))
        if len(ordered) < needed:
            raise _not_enough(needed, wanted, len(ordered))
        return tuple(cur_peers) + tuple(ordered[: min(wanted, len(ordered))])

    async def block_allocate(
        self, cid: CID, rmin: int, rmax: int, *, priority: Sequence[PeerID] = ()
    ) -> tuple[PeerID, ...]:
        """Destinations for an add's blocks: as :meth:`allocate`, except that pin-everywhere returns every
        peer with a valid ``ping`` metric (blocks need real destinations)."""
        if rmin + rmax == 0:
            raise BadReplicationFactors(f"bad replication factors: {rmin}/{rmax}")
        if rmin < 0 and rmax < 0:
            peers = tuple(m.peer for m in await self._monitor.latest_metrics("ping") if m.peer is not None)
            if not peers:
                raise NotEnoughPeers("no peer has a valid ping metric: cannot choose where to add the blocks")
            return peers
        return await self.allocate(cid, (), rmin, rmax, priority=priority)


# --- closest peer (§13.6) -----------------------------------------------------------------------------------
def xor_distance(peer: PeerID, cid: CID) -> bytes:
    """BLAKE2b-256(peer ID bytes) XOR BLAKE2b-256(CID bytes), compared as a big-endian byte string."""
    a = hashlib.blake2b(peer.bytes, digest_size=32).digest()
    b = hashlib.blake2b(cid.bytes, digest_size=32).digest()
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def is_closest_peer(me: PeerID, cid: CID, peers: Iterable[PeerID], exclude: Collection[PeerID] = ()) -> bool:
    """Whether ``me`` is at least as close to ``cid`` as every other peer (``exclude`` and ``me`` skipped),
    so that exactly one peer acts on a CID (ties: every tied peer acts, as in Go)."""
    mine = xor_distance(me, cid)
    return all(mine <= xor_distance(p, cid) for p in peers if p != me and p not in exclude)


async def pins_to_repin(
    alert: Alert, pinset: AsyncIterable[Pin], me: PeerID, peers: Iterable[PeerID]
) -> AsyncIterator[Pin]:
    """The pins this peer must re-allocate after ``alert``: only ``ping`` alerts; pins allocated to the failed
    peer for which this peer is the closest of the other (trusted) peers. Streams the pinset."""
    failed = alert.peer
    if alert.name != "ping" or failed is None or failed == me:
        return
    others = [p for p in peers if p != failed]
    async for pin in pinset:
        if failed in pin.allocations and is_closest_peer(me, pin.cid, others, exclude=(failed,)):
            yield pin


async def repin_after_alert(
    alert: Alert,
    pinset: AsyncIterable[Pin],
    me: PeerID,
    peers: Iterable[PeerID],
    repin: Callable[[Pin, PeerID], Awaitable[object]],
    *,
    disable_repinning: bool,
) -> tuple[int, int]:
    """The cluster's alert handler body (spec §13.4): unless repinning is disabled, call ``repin(pin,
    failed_peer)`` (the cluster's pin with allocations cleared and the failed peer blacklisted) for every pin
    :func:`pins_to_repin` selects. The pins are collected before re-pinning, so the state is not written
    while its iterator is open. A failing re-pin is logged and the rest go on. Returns (re-pinned, failed)."""
    if disable_repinning or alert.name != "ping" or alert.peer is None:
        return 0, 0
    failed_peer = alert.peer
    todo = [pin async for pin in pins_to_repin(alert, pinset, me, peers)]
    done = failed = 0
    for pin in todo:
        try:
            await repin(pin, failed_peer)
            done += 1
        except Exception as exc:
            failed += 1
            log.warning("re-pinning %s away from %s failed: %s", pin.cid, failed_peer, exc)
    if todo:
        log.info("re-pinned %d of %d pins allocated to %s (%d failed)", done, len(todo), failed_peer, failed)
    return done, failed
