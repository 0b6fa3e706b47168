"""The Consensus protocol (Go's ``Consensus`` component, spec §13.2), as the cluster daemon uses it.

Writes are ``log_pin`` / ``log_unpin`` and return only once the change is committed by a majority and written
to this peer's state store. Any peer takes writes; a follower forwards them to the leader. The state is
read-only and streamed. Peers are cluster peer IDs (base58 text); with Raft every member is trusted.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from pincluster.state.interface import ReadOnlyState


@runtime_checkable
class Consensus(Protocol):
    async def ready(self, timeout: float | None = None) -> None:
        """Wait until a leader is known and this peer has applied everything the leader had committed."""
        ...

    async def log_pin(self, key: bytes, value: bytes) -> None:
        """Commit ``key → value`` (CID bytes → encoded Pin) to the shared state."""
        ...

    async def log_unpin(self, key: bytes) -> None:
        """Commit the removal of ``key``."""
        ...

    @property
    def state(self) -> ReadOnlyState:
        """The local copy of the shared state (read-only, streaming)."""
        ...

    async def leader(self) -> str:
        """Peer ID of the current leader; raises ``Unavailable`` when there is none."""
        ...

    async def peers(self) -> list[str]:
        """Peer IDs of every member of the consensus peerset, self included, sorted."""
        ...

    def is_trusted_peer(self, peer_id: str) -> bool:
        """Whether ``peer_id`` is trusted for ``Trusted`` RPC methods (Raft: every member)."""
        ...

    async def add_peer(self, peer_id: str, address: str) -> None:
        """Add a member (``address`` is where its consensus endpoint listens)."""
        ...

    async def rm_peer(self, peer_id: str) -> None:
        """Remove a member."""
        ...

    async def wait_for_sync(self, timeout: float | None = None) -> None:
        """Wait until this peer has applied what the leader has committed."""
        ...

    async def shutdown(self, *, leave: bool = False) -> None:
        """Stop; with ``leave`` first remove this peer from the peerset."""
        ...
