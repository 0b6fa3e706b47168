"""pincluster.ipfsconn: how the cluster talks to its IPFS node (kubo RPC over HTTP).

``IPFSConnector`` is the protocol the rest of the cluster depends on; ``IPFSHTTPConnector`` implements it
for kubo and for pincluster's embedded node; ``FakeIPFSConnector`` (in ``pincluster.ipfsconn.fake``) is an
in-memory stand-in for unit tests.
"""

from pincluster.ipfsconn.interface import IPFSBadRequest, IPFSConnector, IPFSError, IPFSVersion
from pincluster.ipfsconn.ipfshttp import IPFSHTTPConnector, UnpinDisabled

__all__ = ["IPFSBadRequest", "IPFSConnector", "IPFSError", "IPFSHTTPConnector", "IPFSVersion", "UnpinDisabled"]
