"""pincluster.rpc: peer-to-peer RPC (spec §13.2) over pincluster.p2p streams."""

from pincluster.rpc.core import RPC, rpc_method
from pincluster.rpc.errors import MissingPolicy, RemoteError, RPCUnauthorized, UnknownMethod
from pincluster.rpc.policy import POLICIES, Policy

__all__ = [
    "POLICIES",
    "RPC",
    "MissingPolicy",
    "Policy",
    "RPCUnauthorized",
    "RemoteError",
    "UnknownMethod",
    "rpc_method",
]
