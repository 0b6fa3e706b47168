"""The ``numpin`` informer: how many pins the IPFS node holds (spec §7.3.10).

Go ships it but does not load it in the daemon; it is here for allocators that want to balance by pin count.
The count streams ``pin/ls`` and never holds the list.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import Protocol

from pincluster.clock import SYSTEM_CLOCK, Clock
from pincluster.informer.interface import ttl_ns
from pincluster.types.cid import CID
from pincluster.types.models import Metric
from pincluster.types.status import IPFSPinStatus

__all__ = ["NumpinInformer", "PinLister"]

log = logging.getLogger("pincluster.informer")

DEFAULT_TTL = timedelta(seconds=10)


class PinLister(Protocol):
    """``IPFSConnector.pin_ls``."""

    def pin_ls(self, types: Sequence[str] = ("recursive", "direct")) -> AsyncIterator[tuple[CID, IPFSPinStatus]]: ...


class NumpinInformer:
    """``numpin``: value = number of recursive and direct pins; weight = −count (fewer pins first)."""

    name = "numpin"

    def __init__(self, ipfs: PinLister, *, metric_ttl: timedelta = DEFAULT_TTL, clock: Clock = SYSTEM_CLOCK) -> None:
        self._ipfs = ipfs
        self.metric_ttl = metric_ttl
        self._clock = clock

    async def get_metrics(self) -> list[Metric]:
        expire = self._clock.now_ns() + ttl_ns(self.metric_ttl)
        n = 0
        try:
            async for _ in self._ipfs.pin_ls(("recursive", "direct")):
                n += 1
        except Exception as exc:
            log.warning("numpin informer: cannot list IPFS pins: %s", exc)
            return [Metric(name="numpin", valid=False, expire=expire)]
        return [Metric(name="numpin", value=str(n), weight=-n, valid=True, expire=expire)]
