"""pincluster: IPFS Cluster, written in Python.

The version we report to users and peers is the IPFS Cluster version we are drop-in compatible with;
our own release is ``__version__``.
"""

__version__ = "0.1.0"

#: The IPFS Cluster release whose user-facing contract (REST, ctl, service.json) we implement.
CLUSTER_COMPAT_VERSION = "1.1.6"

#: RPC protocol version carried in every cluster handshake (`/pincluster/rpc/<major.minor>`). 2.0: state format 2
#: (snapshots of format 2 must not reach a format-1 peer, so the two refuse each other at the handshake). 2.1: RPC
#: request headers may carry the caller's trace context (sent only to peers of 2.1 or later; 2.0 peers still work).
#: 3.0: state format 3 (format-3 snapshots must not reach a format-2 peer).
RPC_PROTOCOL_VERSION = "3.0"
