"""The informer seam: components that measure something about this peer and report it as metrics
(spec §7.3.10, §13.3).

An informer only measures; the monitor's publisher stamps the peer, broadcasts the valid metrics and decides
when to ask again (half the smallest TTL).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Protocol, runtime_checkable

from pincluster.types.models import Metric

__all__ = ["Informer", "ttl_ns"]


def ttl_ns(ttl: timedelta) -> int:
    """A config TTL in nanoseconds (metric ``expire`` is in Unix nanoseconds)."""
    return ((ttl.days * 86400 + ttl.seconds) * 1_000_000 + ttl.microseconds) * 1000


@runtime_checkable
class Informer(Protocol):
    """Produces this peer's metrics. Never raises for a measurement failure: it returns an invalid metric
    (``valid=False``), which is not published, so other peers see the old one expire."""

    @property
    def name(self) -> str:
        """The informer's config name (``disk``, ``tags``, ``pinqueue``, ``numpin``)."""
        ...

    async def get_metrics(self) -> list[Metric]:
        """The current metrics, each with its ``expire`` set from the informer's TTL."""
        ...
