"""Who may call each RPC method (spec §13.2).

Closed = only the local peer; Trusted = local or trusted peers (Raft: every cluster peer); Open = any peer
holding the cluster secret. Every method must be listed: registering one that is not raises MissingPolicy.
"""

from __future__ import annotations

from enum import StrEnum


class Policy(StrEnum):
    OPEN = "open"
    TRUSTED = "trusted"
    CLOSED = "closed"


def _expand(rows: dict[str, Policy]) -> dict[str, Policy]:
    out: dict[str, Policy] = {}
    for names, pol in rows.items():
        service, _, methods = names.partition(".")
        for m in methods.split("/"):
            out[f"{service}.{m}"] = pol
    return out


_O, _T, _C = Policy.OPEN, Policy.TRUSTED, Policy.CLOSED

POLICIES: dict[str, Policy] = _expand(
    {
        "Cluster.Alerts": _C,
        "Cluster.BandwidthByProtocol": _C,
        "Cluster.BlockAllocate": _C,
        "Cluster.ConnectGraph": _C,
        "Cluster.ID": _O,
        "Cluster.IDStream": _O,
        "Cluster.IPFSID": _C,
        "Cluster.Join": _C,
        "Cluster.PeerAdd": _O,
        "Cluster.PeerRemove": _T,
        "Cluster.Peers": _T,
        "Cluster.PeersWithFilter": _C,
        "Cluster.Pin/Unpin/PinPath/UnpinPath/PinGet": _C,
        "Cluster.Pins": _C,
        "Cluster.Recover/RecoverAll": _C,
        "Cluster.RecoverAllLocal/RecoverLocal": _T,
        "Cluster.RepoGC": _C,
        "Cluster.RepoGCLocal": _T,
        "Cluster.SendInformerMetrics/SendInformersMetrics": _C,
        "Cluster.Status/StatusAll/StatusAllLocal/StatusLocal": _C,
        "Cluster.Version": _O,
        "PinTracker.PinQueueSize": _C,
        "PinTracker.Recover": _T,
        "PinTracker.RecoverAll": _C,
        "PinTracker.Status": _T,
        "PinTracker.StatusAll": _T,
        "PinTracker.Track/Untrack": _C,
        "IPFSConnector.BlockGet": _C,
        "IPFSConnector.BlockStream": _T,
        "IPFSConnector.ConfigKey": _C,
        "IPFSConnector.Pin/Unpin/PinLs/PinLsCid/Resolve": _C,
        "IPFSConnector.RepoStat": _T,
        "IPFSConnector.SwarmPeers": _T,
        "Consensus.AddPeer/LogPin/LogUnpin/RmPeer": _T,
        "Consensus.Peers": _C,
        "PeerMonitor.LatestMetrics/MetricNames": _C,
    }
)

#: Methods pincluster adds to IPFS Cluster's set, because its peers are not go-libp2p hosts: Raft runs on its own
#: address, which a joining peer asks for, and metrics travel by RPC instead of gossipsub.
EXTENSIONS: dict[str, Policy] = {
    "Consensus.Address": _O,  # this peer's Raft endpoint, so that a peer can be added by its cluster peer ID
    "PeerMonitor.LogMetric": _T,  # a peer's metric, broadcast to every member (Go: pubsub topic monitor.metrics)
    # Compact statuses for merged listings: the peer's identity once, then rows (CID, status, …) in CID order.
    "PinTracker.StatusAllRows": _T,
    "PinTracker.StatusAllCompact": _T,  # the same, with runs of derived statuses as CIDs plus a code byte each
    "PinTracker.StatusAllSparse": _T,  # unfiltered, without the remote/sharded statuses the caller derives
}
POLICIES.update(EXTENSIONS)

SERVICES = ("Cluster", "PinTracker", "IPFSConnector", "Consensus", "PeerMonitor")
