"""pincluster: IPFS Cluster, written in Python.

The version we report to users and peers is the IPFS Cluster version we are drop-in compatible with;
our own release is ``__version__``.
"""

__version__ = "0.1.0"

#: The IPFS Cluster release whose user-facing contract (REST, ctl, service.json) we implement.
CLUSTER_COMPAT_VERSION = "1.1.6"

#: RPC protocol version carried in every cluster handshake (`/pincluster/rpc/<major.minor>`).
RPC_PROTOCOL_VERSION = "1.0"
