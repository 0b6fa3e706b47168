"""Where received metrics live: per metric name and peer, a short window of the latest values (spec §13.3).

Memory is bounded by names × peers × ``WINDOW``; peers that leave the cluster are pruned by the monitor.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Iterator

from pincluster.errors import InvalidInput
from pincluster.types.models import Metric
from pincluster.types.peer import PeerID

__all__ = ["WINDOW", "MetricStore"]

#: Metrics kept per (name, peer), as Go's ring.
WINDOW = 25


class MetricStore:
    """Latest metrics by name and peer. Not thread-safe: used from the event loop only."""

    def __init__(self, window: int = WINDOW) -> None:
        self._window = window
        self._by_name: dict[str, dict[PeerID, deque[Metric]]] = {}
        self._versions: dict[str, int] = {}

    def add(self, metric: Metric) -> None:
        """Append ``metric`` to its (name, peer) window. A metric without a name or peer is rejected."""
        if not metric.name or metric.peer is None:
            raise InvalidInput(f"metric {metric.name!r} from {metric.peer}: a metric needs a name and a peer")
        peers = self._by_name.setdefault(metric.name, {})
        ring = peers.get(metric.peer)
        if ring is None:
            ring = peers[metric.peer] = deque(maxlen=self._window)
        ring.append(metric)
        self._versions[metric.name] = self._versions.get(metric.name, 0) + 1

    def version(self, name: str) -> int:
        """A counter that changes whenever the metrics of ``name`` change (for callers caching answers)."""
        return self._versions.get(name, 0)

    def latest(self, name: str, peer: PeerID) -> Metric | None:
        ring = self._by_name.get(name, {}).get(peer)
        return ring[-1] if ring else None

    def window(self, name: str, peer: PeerID) -> list[Metric]:
        """The stored metrics of (name, peer), newest first."""
        return list(reversed(self._by_name.get(name, {}).get(peer, ())))

    def latest_valid(self, name: str, now_ns: int, peers: Collection[PeerID] | None = None) -> list[Metric]:
        """Latest metric per peer that is valid and not expired, optionally only of ``peers``, sorted by peer."""
        out = []
        for peer, ring in self._by_name.get(name, {}).items():
            if peers is not None and peer not in peers:
                continue
            m = ring[-1]
            if not m.discard(now_ns):
                out.append(m)
        out.sort(key=lambda m: m.peer.bytes if m.peer is not None else b"")
        return out

    def all_latest(self, peers: Collection[PeerID] | None = None) -> Iterator[Metric]:
        """The latest metric of every (name, peer), optionally only of ``peers``."""
        for by_peer in list(self._by_name.values()):
            for peer, ring in list(by_peer.items()):
                if ring and (peers is None or peer in peers):
                    yield ring[-1]

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def peers(self) -> set[PeerID]:
        return {p for by_peer in self._by_name.values() for p in by_peer}

    def remove_peer(self, peer: PeerID) -> None:
        for name, by_peer in self._by_name.items():
            if by_peer.pop(peer, None) is not None:
                self._versions[name] = self._versions.get(name, 0) + 1
