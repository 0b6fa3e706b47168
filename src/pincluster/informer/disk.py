"""The ``disk`` informer: free space (or repo size) of the IPFS node, from ``repo/stat`` (spec §7.3.10).

``freespace`` is the default allocation order: peers with more room get new pins first.
"""

from __future__ import annotations

import logging
from typing import Protocol

from pincluster.clock import SYSTEM_CLOCK, Clock
from pincluster.config.sections import DiskInformerConfig
from pincluster.informer.interface import ttl_ns
from pincluster.types.models import IPFSRepoStat, Metric

__all__ = ["DiskInformer", "RepoStatSource"]

log = logging.getLogger("pincluster.informer")


class RepoStatSource(Protocol):
    """The one IPFS call this informer needs (``IPFSConnector.repo_stat``)."""

    async def repo_stat(self) -> IPFSRepoStat: ...


class DiskInformer:
    """``freespace``: StorageMax − RepoSize (invalid and 0 when full); ``reposize``: RepoSize, weight −RepoSize."""

    name = "disk"

    def __init__(self, config: DiskInformerConfig, ipfs: RepoStatSource, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.config = config
        self._ipfs = ipfs
        self._clock = clock

    async def get_metrics(self) -> list[Metric]:
        metric_name = self.config.metric_type
        expire = self._clock.now_ns() + ttl_ns(self.config.metric_ttl)
        try:
            stat = await self._ipfs.repo_stat()
        except Exception as exc:
            log.warning("disk informer: cannot read the IPFS repo size: %s", exc)
            return [Metric(name=metric_name, valid=False, expire=expire)]
        if metric_name == "reposize":
            value, weight, valid = stat.repo_size, -stat.repo_size, True
        elif stat.repo_size < stat.storage_max:
            value = weight = stat.storage_max - stat.repo_size
            valid = True
        else:  # full: stop offering this peer for new pins
            value = weight = 0
            valid = False
        return [Metric(name=metric_name, value=str(value), weight=weight, valid=valid, expire=expire)]
