"""The State protocol: the shared pinset as the rest of pincluster sees it.

Keys are ``CID.bytes`` and values are the compact encoding of a Pin (``types.codec.pin_to_state``). The state is
read-only for everyone but the consensus component, which is the only writer; listing is an async iterator in
key (CID byte) order so that a pinset of millions never has to sit in memory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Protocol, runtime_checkable


@runtime_checkable
class ReadOnlyState(Protocol):
    """What components other than consensus may do with the pinset: read it."""

    @property
    def format_version(self) -> int:
        """The on-disk format version of this state (see ``state.store.FORMAT_VERSION``)."""
        ...

    async def get(self, key: bytes) -> bytes | None:
        """The stored value for ``key``, or None when it is not in the pinset."""
        ...

    async def has(self, key: bytes) -> bool:
        """Whether ``key`` is in the pinset."""
        ...

    async def count(self) -> int:
        """Number of entries (one indexed count, not a scan in Python)."""
        ...

    def list(self, *, page_size: int = 1000) -> AsyncIterator[tuple[bytes, bytes]]:
        """Stream ``(key, value)`` pairs in key order, one page at a time."""
        ...


@runtime_checkable
class IndexedState(ReadOnlyState, Protocol):
    """A state with the format-3 indexes (``state.store``): reads that touch only the pins they return.

    A separate protocol so that fakes and other states need not provide it; callers check ``isinstance`` and
    fall back to scanning ``list()``.
    """

    def pins_allocated_to(self, peer: bytes, *, page_size: int = 1000) -> AsyncIterator[tuple[bytes, bytes]]:
        """Stream the pins whose allocations include ``peer`` (``PeerID.bytes``), in key order."""
        ...

    def expired(self, now: datetime, *, page_size: int = 1000) -> AsyncIterator[tuple[bytes, bytes]]:
        """Stream the pins whose ``expire_at`` is set and before ``now``, oldest first."""
        ...

    def listing_pages(self, *, page_size: int = 2000) -> AsyncIterator[list[tuple[bytes, bytes, bytes | None]]]:
        """Pages of ``(key, value, skey)`` in key order, ``skey`` being the pin's stored status key (format 3,
        ``types.codec.status_key``; None for a value that is not a readable pin)."""
        ...

    def pins_listed_for(self, peer: bytes, *, page_size: int = 2000) -> AsyncIterator[list[tuple[bytes, bytes]]]:
        """Pages of ``(key, status key)`` of the pins a peer holds: allocated to ``peer`` or to every peer
        (rf -1), in key order (``types.codec.StatusKey``)."""
        ...


@runtime_checkable
class State(ReadOnlyState, Protocol):
    """The writable state, used by consensus (and by offline ``state import`` / ``cleanup``)."""

    async def put(self, key: bytes, value: bytes) -> None:
        """Insert or replace one entry (idempotent)."""
        ...

    async def delete(self, key: bytes) -> None:
        """Remove one entry; removing a missing key is not an error (idempotent)."""
        ...
