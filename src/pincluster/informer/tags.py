"""The ``tags`` informer: user labels such as ``group: eu-west`` (spec §7.3.10).

Tags are partitionable: with ``allocate_by: ["tag:group", "freespace"]`` the allocator spreads the copies of
a pin over different groups before it looks at free space.
"""

from __future__ import annotations

from pincluster.clock import SYSTEM_CLOCK, Clock
from pincluster.config.sections import TagsInformerConfig
from pincluster.informer.interface import ttl_ns
from pincluster.types.models import Metric

__all__ = ["TagsInformer"]


class TagsInformer:
    """One valid, partitionable ``tag:<key>`` metric per tag (sorted by key); without tags, a single invalid
    ``tag:none`` metric, which is not published."""

    name = "tags"

    def __init__(self, config: TagsInformerConfig, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.config = config
        self._clock = clock

    async def get_metrics(self) -> list[Metric]:
        expire = self._clock.now_ns() + ttl_ns(self.config.metric_ttl)
        if not self.config.tags:
            return [Metric(name="tag:none", valid=False, partitionable=True, expire=expire)]
        return [
            Metric(name=f"tag:{k}", value=v, valid=True, partitionable=True, expire=expire)
            for k, v in sorted(self.config.tags.items())
        ]
