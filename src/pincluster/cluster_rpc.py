"""The RPC services a cluster peer offers to the other peers (spec §13.2), as thin adapters over the Cluster.

Each method's access policy (open/trusted/closed) lives in ``pincluster.rpc.policy``; registering a method
without one fails, so nothing is exposed by accident.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from pincluster.pintracker.rows import StatusRows
from pincluster.rpc.core import RPC, rpc_method
from pincluster.types.cid import CID
from pincluster.types.models import (
    ID,
    Alert,
    Bandwidth,
    GlobalPinInfo,
    IPFSRepoStat,
    Metric,
    Pin,
    PinInfo,
    RepoGC,
    Version,
)
from pincluster.types.peer import PeerID
from pincluster.types.status import TrackerStatus

if TYPE_CHECKING:
    from pincluster.cluster import Cluster


class ClusterService:
    def __init__(self, cluster: Cluster) -> None:
        self.c = cluster

    @rpc_method("ID")
    async def id(self) -> ID:
        return await self.c.id()

    @rpc_method("Version")
    async def version(self) -> Version:
        from pincluster import CLUSTER_COMPAT_VERSION

        return Version(version=CLUSTER_COMPAT_VERSION)

    @rpc_method("Peers")
    async def peers(self) -> AsyncIterator[ID]:
        async for i in self.c.peers():
            yield i

    @rpc_method("PeerAdd")
    async def peer_add(self, peer: PeerID) -> ID:
        return await self.c.peer_add(peer)

    @rpc_method("PeerRemove")
    async def peer_remove(self, peer: PeerID) -> None:
        await self.c.peer_rm(peer)

    @rpc_method("Pin")
    async def pin(self, pin: Pin) -> Pin:
        return await self.c.pin(pin.cid, pin.options)

    @rpc_method("Unpin")
    async def unpin(self, cid: CID) -> Pin:
        return await self.c.unpin(cid)

    @rpc_method("PinGet")
    async def pin_get(self, cid: CID) -> Pin:
        return await self.c.pin_get(cid)

    @rpc_method("Pins")
    async def pins(self) -> AsyncIterator[Pin]:
        async for p in self.c.pins():
            yield p

    @rpc_method("Status")
    async def status(self, cid: CID) -> GlobalPinInfo:
        return await self.c.status(cid)

    @rpc_method("StatusLocal")
    async def status_local(self, cid: CID) -> GlobalPinInfo:
        return await self.c.status(cid, local=True)

    @rpc_method("RecoverLocal")
    async def recover_local(self, cid: CID) -> PinInfo:
        return await self.c.tracker.recover(cid)

    @rpc_method("RecoverAllLocal")
    async def recover_all_local(self) -> AsyncIterator[PinInfo]:
        async for info in self.c.tracker.recover_all():
            yield info

    @rpc_method("RepoGCLocal")
    async def repo_gc_local(self) -> RepoGC:
        return await self.c.repo_gc_local()

    @rpc_method("Alerts")
    async def alerts(self) -> list[Alert]:
        return await self.c.alerts()

    @rpc_method("BandwidthByProtocol")
    async def bandwidth_by_protocol(self) -> dict[str, Bandwidth] | None:
        return await self.c.bandwidth()

    @rpc_method("SendInformersMetrics")
    async def send_informers_metrics(self) -> None:
        await self.c.publisher.push_all()


class PinTrackerService:
    def __init__(self, cluster: Cluster) -> None:
        self.c = cluster

    @rpc_method("Status")
    async def status(self, cid: CID) -> PinInfo:
        return await self.c.tracker.status(cid)

    @rpc_method("StatusAll")
    async def status_all(self, flt: int) -> AsyncIterator[PinInfo]:
        async for info in self.c.tracker.status_all(TrackerStatus(flt or 0)):
            yield info

    @rpc_method("StatusAllRows")
    async def status_all_rows(self, flt: int) -> AsyncIterator[StatusRows]:
        """``StatusAll`` in compact rows, for a peer merging a listing (see ``pincluster.pintracker.rows``)."""
        async for batch in self.c.tracker.status_rows(TrackerStatus(flt or 0)):
            yield batch

    @rpc_method("StatusAllCompact")
    async def status_all_compact(self, flt: int) -> AsyncIterator[StatusRows]:
        """``StatusAllRows`` with runs of derived statuses in compact form (peers of this version and later
        ask for it; a peer without it is asked ``StatusAllRows``)."""
        async for batch in self.c.tracker.status_rows(TrackerStatus(flt or 0), compact=True):
            yield batch

    @rpc_method("StatusAllSparse")
    async def status_all_sparse(self) -> AsyncIterator[StatusRows]:
        """The unfiltered ``StatusAllCompact`` without the statuses the asking peer derives from its own
        pinset (remote, sharded): see ``StatelessPinTracker.status_rows_sparse``."""
        async for batch in self.c.tracker.status_rows_sparse():
            yield batch

    @rpc_method("Recover")
    async def recover(self, cid: CID) -> PinInfo:
        return await self.c.tracker.recover(cid)

    @rpc_method("RecoverAll")
    async def recover_all(self) -> AsyncIterator[PinInfo]:
        async for info in self.c.tracker.recover_all():
            yield info

    @rpc_method("PinQueueSize")
    async def pin_queue_size(self) -> int:
        return self.c.tracker.pin_queue_size()


class IPFSConnectorService:
    def __init__(self, cluster: Cluster) -> None:
        self.c = cluster

    @rpc_method("BlockStream")
    async def block_stream(self, blocks: AsyncIterator[tuple[bytes, bytes]]) -> int:
        """Blocks from an adder on another peer, written to our IPFS node in one streamed request."""

        async def decoded() -> AsyncIterator[tuple[CID, bytes]]:
            async for raw_cid, data in blocks:
                yield CID.from_bytes(raw_cid), data

        return await self.c.ipfs.block_stream(decoded())

    @rpc_method("RepoStat")
    async def repo_stat(self) -> IPFSRepoStat:
        return await self.c.ipfs.repo_stat()

    @rpc_method("SwarmPeers")
    async def swarm_peers(self) -> list[PeerID]:
        return await self.c.ipfs.swarm_peers()

    @rpc_method("Resolve")
    async def resolve(self, path: str) -> CID:
        return await self.c.ipfs.resolve(path)


class ConsensusService:
    def __init__(self, cluster: Cluster) -> None:
        self.c = cluster

    @rpc_method("Peers")
    async def peers(self) -> list[str]:
        return list(await self.c.consensus.peers())

    @rpc_method("Address")
    async def address(self) -> str:
        """Where this peer's Raft endpoint listens, so that another peer can add it to the peerset."""
        return str(self.c.consensus.self_spec.partition("@")[2])

    @rpc_method("AddPeer")
    async def add_peer(self, peer: PeerID) -> None:
        await self.c.peer_add(peer)

    @rpc_method("RmPeer")
    async def rm_peer(self, peer: PeerID) -> None:
        await self.c.consensus.rm_peer(str(peer))


class PeerMonitorService:
    def __init__(self, cluster: Cluster) -> None:
        self.c = cluster

    @rpc_method("LogMetric")
    async def log_metric(self, metric: Metric) -> None:
        await self.c.receive_metric(metric)

    @rpc_method("LatestMetrics")
    async def latest_metrics(self, name: str) -> list[Metric]:
        return await self.c.monitor.latest_metrics(name)

    @rpc_method("MetricNames")
    async def metric_names(self) -> list[str]:
        return self.c.monitor.metric_names()


def register_services(rpc: RPC, cluster: Cluster) -> list[str]:
    """Register every service of this peer on ``rpc``; returns the method names."""
    names: list[str] = []
    for service, obj in (
        ("Cluster", ClusterService(cluster)),
        ("PinTracker", PinTrackerService(cluster)),
        ("IPFSConnector", IPFSConnectorService(cluster)),
        ("Consensus", ConsensusService(cluster)),
        ("PeerMonitor", PeerMonitorService(cluster)),
    ):
        names += rpc.register(service, obj)
    return names

