"""The tiny seams other components call to report what they did (no Prometheus import here).

``rpc.core.RPC`` and ``ipfsconn.ipfshttp.IPFSHTTPConnector`` each carry an ``observer`` attribute that is None
unless the daemon runs with metrics on; the hot paths then pay one attribute test. Keeping the protocols here,
free of ``prometheus_client``, lets those modules import them without pulling the metrics stack in.
"""

from __future__ import annotations

from typing import Literal, Protocol

__all__ = ["IPFSObserver", "Outcome", "RPCObserver", "endpoint_of"]

Outcome = Literal["ok", "error", "cancelled"]


class RPCObserver(Protocol):
    """Told about every RPC call this peer makes and serves."""

    def rpc_call(self, method: str, remote: bool, ok: bool, seconds: float) -> None:
        """A call made (``remote`` False: the local fast path), its outcome and how long it took."""
        ...

    def rpc_served(self, method: str, ok: bool) -> None:
        """A call another peer made to us; ``method`` is ``"unknown"`` for names we do not serve."""
        ...


class IPFSObserver(Protocol):
    """Told about every request the IPFS connector sends to the IPFS daemon."""

    def ipfs_call(self, path: str, seconds: float, outcome: Outcome) -> None:
        """``path`` as the connector sent it (``pin/add?arg=…``); observers reduce it with ``endpoint_of``."""
        ...


def endpoint_of(path: str) -> str:
    """``pin/add?arg=Qm…`` → ``pin/add``; ``/api/v0/version`` → ``version`` (bounded label values)."""
    p = path.partition("?")[0]
    if p.startswith("/api/v0/"):
        p = p[len("/api/v0/") :]
    return p.strip("/") or "/"
