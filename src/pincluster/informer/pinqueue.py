"""The ``pinqueue`` informer: how many pins wait in this peer's tracker queue (spec §7.3.10).

Allocating by it (``allocate_by: ["pinqueue", ...]``) steers new pins away from busy peers. Queue lengths are
bucketed so that small differences do not reorder peers.
"""

from __future__ import annotations

from typing import Protocol

from pincluster.clock import SYSTEM_CLOCK, Clock
from pincluster.config.sections import PinQueueInformerConfig
from pincluster.informer.interface import ttl_ns
from pincluster.types.models import Metric

__all__ = ["PinQueueInformer", "PinQueueSource"]


class PinQueueSource(Protocol):
    """The tracker (``PinTracker.pin_queue_size``)."""

    def pin_queue_size(self) -> int: ...


class PinQueueInformer:
    """``pinqueue``: value = queued pins; weight = −(queued // bucket) (no division when bucket is 0)."""

    name = "pinqueue"

    def __init__(
        self, config: PinQueueInformerConfig, tracker: PinQueueSource, *, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.config = config
        self._tracker = tracker
        self._clock = clock

    async def get_metrics(self) -> list[Metric]:
        n = self._tracker.pin_queue_size()
        bucket = self.config.weight_bucket_size
        weight = -(n // bucket) if bucket > 0 else -n
        expire = self._clock.now_ns() + ttl_ns(self.config.metric_ttl)
        return [Metric(name="pinqueue", value=str(n), weight=weight, valid=True, expire=expire)]
