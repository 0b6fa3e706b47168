"""The pin tracker's seams: what it offers the cluster, and the two small things it needs (spec §3.1, §13.5).

The tracker reconciles the shared pinset with the IPFS node. It reads the pinset through :class:`PinsetReader`
(the lead connects it to ``pincluster.state``) and talks to IPFS through :class:`TrackerIPFS`, a subset of
``pincluster.ipfsconn.interface.IPFSConnector`` so that unit tests need only a five-method fake.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from pincluster.ipfsconn.interface import IPFSPinner
from pincluster.types.cid import CID
from pincluster.types.models import Pin, PinInfo
from pincluster.types.status import TrackerStatus

__all__ = ["QUEUE_FULL_ERROR", "PinTracker", "PinsetReader", "TrackerIPFS"]

#: Go's text for a full operation queue (spec §7.3.7).
QUEUE_FULL_ERROR = "pin/unpin operation queue is full. Try increasing max_pin_queue_size"


@runtime_checkable
class PinsetReader(Protocol):
    """Read-only view of the shared pinset; the tracker never copies it (bounded memory)."""

    async def get(self, cid: CID) -> Pin | None: ...

    def list(self) -> AsyncIterator[Pin]: ...


#: The IPFS calls the tracker makes: the pinning part of ``IPFSConnector``.
TrackerIPFS = IPFSPinner


@runtime_checkable
class PinTracker(Protocol):
    """Per-peer pin reconciliation: Track/Untrack from consensus, statuses, recover (RPC ``PinTracker.*``)."""

    async def start(self) -> None: ...

    async def shutdown(self) -> None: ...

    async def track(self, pin: Pin, *, maybe_here: bool = True) -> None:
        """A pin was added or updated in the shared state (``maybe_here=False``: it was never allocated to
        this peer before, so a pin allocated elsewhere needs no unpin)."""
        ...

    async def track_stored(self, key: bytes, value: bytes, before: bytes | None, *, before_known: bool = True) -> None:
        """``track`` of a committed change in its stored form (``pincluster.types.codec``): ``value`` is the pin
        now, ``before`` what the key held just before (None: nothing), unless ``before_known`` is False."""
        ...

    async def untrack(self, cid: CID) -> None:
        """A pin was removed from the shared state."""
        ...

    async def status(self, cid: CID) -> PinInfo: ...

    def status_all(self, flt: TrackerStatus = TrackerStatus.UNDEFINED) -> AsyncIterator[PinInfo]: ...

    async def recover(self, cid: CID) -> PinInfo: ...

    def recover_all(self) -> AsyncIterator[PinInfo]: ...

    def pin_queue_size(self) -> int: ...
