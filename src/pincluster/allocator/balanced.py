"""The balanced allocator (Go's ``allocator/balanced``; spec §4.4 step 6, §7.3.9).

Peers are partitioned by the first ``allocate_by`` metric, each partition sub-partitioned by the next one, and
so on. Partitionable metrics (tags) group peers of equal value; the others (free space) give each peer its
own partition. Partitions are ordered by weight (descending; ties by the sub-partitions' aggregated weight,
then by value), and peers are drawn round-robin across partitions, so that copies of a pin spread over tag
groups before two land in the same group. Ties Go leaves to map order are broken by peer ID here, so the
result is deterministic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pincluster.config.sections import BalancedAllocatorConfig
from pincluster.types.cid import CID
from pincluster.types.models import Metric
from pincluster.types.peer import PeerID

__all__ = ["BalancedAllocator", "MetricsSet"]

MetricsSet = Mapping[str, Sequence[Metric]]
"""Metrics by name (each list holds at most one metric per peer)."""


@dataclass
class _Partition:
    value: str
    weight: int
    aggregated: int
    first_peer: bytes
    peers: dict[PeerID, bool] = field(default_factory=dict)  # peer -> already chosen
    sub: _Partitioned | None = None


@dataclass
class _Partitioned:
    name: str
    partitions: list[_Partition]
    cur: int = 0
    no_more: bool = False

    def choose_next(self) -> PeerID | None:
        """The next peer, taking from the following partition each time (Go's ``chooseNext``)."""
        n = len(self.partitions)
        if n == 0 or self.no_more:
            return None
        tried = 0
        while True:
            part = self.partitions[self.cur]
            peer: PeerID | None = None
            if part.sub is not None:
                peer = part.sub.choose_next()
            else:
                for pid, used in part.peers.items():
                    if not used:
                        part.peers[pid] = True
                        peer = pid
                        break
            self.cur = (self.cur + 1) % n
            tried += 1
            if peer is not None:
                return peer
            if tried == n:
                self.no_more = True
                return None

    def sorted_peers(self) -> list[PeerID]:
        out = []
        while (peer := self.choose_next()) is not None:
            out.append(peer)
        return out


def _partition_values(metrics: Sequence[Metric]) -> list[_Partition]:
    parts: list[_Partition] = []
    by_value: dict[str, _Partition] = {}
    for m in sorted(metrics, key=lambda m: m.peer.bytes if m.peer is not None else b""):
        if m.peer is None:
            continue
        if not m.partitionable:
            parts.append(_Partition(m.value, m.weight, m.weight, m.peer.bytes, {m.peer: False}))
            continue
        p = by_value.get(m.value)
        if p is None:
            by_value[m.value] = _Partition(m.value, m.weight, m.weight, m.peer.bytes, {m.peer: False})
        else:
            p.peers[m.peer] = False
            p.weight += m.weight
            p.aggregated += m.weight
    parts.extend(by_value.values())
    return parts


def _partition_metrics(mset: MetricsSet, by: Sequence[str]) -> _Partitioned:
    root = by[0]
    pm = _Partitioned(root, _partition_values(mset.get(root, ())))
    if len(by) > 1:
        for part in pm.partitions:
            filtered = {
                name: [m for m in ms if m.peer in part.peers] for name, ms in mset.items() if name != root
            }
            part.sub = _partition_metrics(filtered, by[1:])
            part.aggregated += sum(sp.aggregated for sp in part.sub.partitions)
    pm.partitions.sort(key=lambda p: (-p.weight, -p.aggregated, p.value, p.first_peer))
    return pm


class BalancedAllocator:
    """Orders candidate peers for a pin: priority peers first, then the others, each balanced."""

    def __init__(self, config: BalancedAllocatorConfig) -> None:
        self.config = config

    @property
    def metrics(self) -> tuple[str, ...]:
        """The metric names the allocator needs from the monitor (``allocate_by``)."""
        return tuple(self.config.allocate_by)

    def allocate(
        self, cid: CID, current: MetricsSet, candidates: MetricsSet, priority: MetricsSet
    ) -> list[PeerID]:
        """Candidate peers in preference order (``current`` is not re-ordered: the caller keeps them).

        Every peer in ``candidates``/``priority`` must have a metric of every ``allocate_by`` name (the
        cluster-level algorithm filters the others out first)."""
        by = self.metrics
        first = _partition_metrics(priority, by).sorted_peers()
        last = _partition_metrics(candidates, by).sorted_peers()
        return first + last
