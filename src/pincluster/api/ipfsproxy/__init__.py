"""The IPFS proxy API (spec §9): kubo's RPC API with pinning turned into cluster pinning."""

from pincluster.api.ipfsproxy.server import IPFSProxy

__all__ = ["IPFSProxy"]
