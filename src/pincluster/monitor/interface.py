"""The peer monitor seam (Go's ``PeerMonitor``; spec §13.3, §13.4).

The monitor keeps the metrics that peers broadcast, answers "latest valid metrics of name X" for the allocator,
and raises alerts when a peer's metric expires. What it needs from the cluster is injected as three plain
async callables, so tests and the lead's wiring need no RPC types here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol, runtime_checkable

from pincluster.types.models import Alert, Metric
from pincluster.types.peer import PeerID

__all__ = ["AlertHook", "Broadcast", "PeerMonitor", "PeersSource"]

Broadcast = Callable[[Metric], Awaitable[None]]
"""Sends a metric to every other peer (the lead wires it to RPC ``PeerMonitor.LogMetric``)."""

PeersSource = Callable[[], Awaitable[list[PeerID]]]
"""The current cluster members (Raft configuration); metrics and alerts of other peers are ignored."""

AlertHook = Callable[[Alert], Awaitable[None]]
"""Called once per alert (the cluster records it and, for ``ping`` alerts, re-pins)."""


@runtime_checkable
class PeerMonitor(Protocol):
    """Metrics store with TTLs, broadcast and alerting."""

    async def start(self) -> None: ...

    async def shutdown(self) -> None: ...

    async def log_metric(self, metric: Metric) -> None:
        """Store a metric received from a peer (RPC ``PeerMonitor.LogMetric``)."""
        ...

    async def publish_metric(self, metric: Metric) -> None:
        """Store one of our own metrics and broadcast it to the peers."""
        ...

    async def latest_metrics(self, name: str) -> list[Metric]:
        """The latest valid, unexpired metric ``name`` of every current peer, sorted by peer."""
        ...

    def metric_names(self) -> list[str]: ...

    def alerts(self) -> AsyncIterator[Alert]:
        """Alerts as they are raised (a bounded channel; the oldest are dropped if nobody reads)."""
        ...

    def recent_alerts(self) -> list[Alert]:
        """The last alerts, newest first (``GET /health/alerts``)."""
        ...
