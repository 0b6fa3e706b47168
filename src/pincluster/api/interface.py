"""What the API servers (REST, IPFS proxy, Pinning Service) need from the cluster.

The servers depend on this protocol, not on ``pincluster.cluster.Cluster``, so they are unit-tested against an
in-process fake and the Cluster can change behind them. Every listing is an async iterator: the servers stream
it to the client as it is produced.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from pincluster.ipfs.unixfs.importer import AddOptions, ImportEntry
    from pincluster.types.cid import CID
    from pincluster.types.models import (
        ID,
        AddedOutput,
        Alert,
        ConnectGraph,
        GlobalPinInfo,
        GlobalRepoGC,
        IPFSRepoStat,
        Metric,
        Pin,
        PinOptions,
    )
    from pincluster.types.peer import PeerID
    from pincluster.types.status import PinMode, PinType, TrackerStatus


@dataclass(frozen=True)
class AddParams:
    """``/add`` parameters (spec §1.10) beyond the UnixFS import options."""

    import_options: AddOptions
    pin_options: PinOptions
    local: bool = False
    no_pin: bool = False
    stream_channels: bool = True
    format: str = "unixfs"  # or "car"
    shard: bool = False
    shard_size: int = 104857600
    extra: dict[str, str] = field(default_factory=dict)


class ClusterAPI(Protocol):
    """The cluster operations behind REST routes (spec §1.8) and the proxy's hijacked endpoints (§9)."""

    async def id(self) -> ID: ...

    def peers(self) -> AsyncIterator[ID]:
        """Every consensus member's ID; unreachable members carry ``error``."""
        ...

    async def peer_add(self, peer: PeerID) -> ID: ...

    async def peer_rm(self, peer: PeerID) -> None:
        """Vacate (re-allocate) the peer's pins, then remove it from consensus."""
        ...

    async def pin(self, cid: CID, options: PinOptions) -> Pin:
        """Allocate and commit a pin (spec §4.1); returns the pin as committed."""
        ...

    async def pin_path(self, path: str, options: PinOptions) -> Pin:
        """Resolve an ``/ipfs|ipns|ipld/...`` path through IPFS, then pin the CID."""
        ...

    async def unpin(self, cid: CID) -> Pin:
        """Remove from the pinset; raises NotFound("pin is not part of the pinset")."""
        ...

    async def unpin_path(self, path: str) -> Pin: ...

    async def pin_get(self, cid: CID) -> Pin:
        """The pin as stored; raises NotFound("pin is not part of the pinset")."""
        ...

    def pins(self, types: Collection[PinType] | None = None) -> AsyncIterator[Pin]:
        """The shared pinset (``/allocations``), filtered by pin type, streamed in CID order."""
        ...

    def pins_ndjson(self, types: Collection[PinType] | None = None) -> AsyncIterator[bytes]:
        """``pins(types)`` as NDJSON chunks of whole lines (``GET /allocations``); the Cluster writes them
        straight from the stored pins, others may use ``api.common.stream.ndjson_chunks``."""
        ...

    def pin_modes(self) -> AsyncIterator[list[tuple[str, PinMode]]]:
        """Pages of ``(CID text, mode)`` of the pins that reach IPFS (metadata pins left out), in CID order:
        the proxy's ``pin/ls``. The Cluster reads them from the stored pins without building Pins; others may
        use ``api.common.stream.pin_mode_pages``."""
        ...

    async def status(self, cid: CID, *, local: bool = False) -> GlobalPinInfo: ...

    def status_all(self, filter: TrackerStatus, *, local: bool = False) -> AsyncIterator[GlobalPinInfo]: ...

    def status_all_ndjson(self, filter: TrackerStatus, *, local: bool = False) -> AsyncIterator[bytes]:
        """``status_all`` as NDJSON chunks of whole lines (``GET /pins``), as ``pins_ndjson``."""
        ...

    async def recover(self, cid: CID, *, local: bool = False) -> GlobalPinInfo: ...

    def recover_all(self, *, local: bool = False) -> AsyncIterator[GlobalPinInfo]: ...

    async def repo_gc(self, *, local: bool = False) -> GlobalRepoGC: ...

    async def repo_stat(self, *, local: bool = False) -> IPFSRepoStat:
        """The IPFS repo size summed over every reachable member (the proxy's ``repo/stat``, spec §9.1)."""
        ...

    async def pin_update(self, from_cid: CID, to_cid: CID, options: PinOptions) -> Pin:
        """Pin ``to_cid`` with ``from_cid``'s allocations and options (spec §4.3); ``from_cid`` stays pinned."""
        ...

    async def connect_graph(self) -> ConnectGraph: ...

    async def alerts(self) -> list[Alert]:
        """Recent alerts, newest first."""
        ...

    async def latest_metrics(self, name: str) -> list[Metric]: ...

    async def metric_names(self) -> list[str]: ...

    def add(self, entries: AsyncIterable[ImportEntry], params: AddParams) -> AsyncIterator[AddedOutput]:
        """Import content, send its blocks to the allocated peers' IPFS nodes, then cluster-pin the root."""
        ...
