"""Core value types: CIDs, peer IDs, multiaddrs, and (in ``models``) the cluster's data model."""

from pincluster.types.cid import CID, InvalidCID
from pincluster.types.multiaddr import InvalidMultiaddr, Multiaddr
from pincluster.types.peer import InvalidPeerID, PeerID

__all__ = ["CID", "InvalidCID", "InvalidMultiaddr", "InvalidPeerID", "Multiaddr", "PeerID"]
