"""pincluster's Python SDK for the IPFS Cluster REST API (used by ``ipfs-cluster-ctl``)."""

from pincluster.client.client import (
    DEFAULT_HOST,
    APIError,
    Client,
    SyncClient,
    WaitTimeout,
    add_query,
    parse_host,
)
from pincluster.client.transport import Endpoint, TransportError

__all__ = ["DEFAULT_HOST", "APIError", "Client", "Endpoint", "SyncClient", "TransportError", "WaitTimeout",
           "add_query",
           "parse_host"]
