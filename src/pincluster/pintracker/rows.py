"""Compact status rows: what a peer sends for a merged status listing (RPC ``PinTracker.StatusAllRows``).

Every peer holds the same pinset, so a peer answering a listing need not repeat each pin's fields (name,
allocations, origins, created, metadata) nor its own identity (peername, IPFS ID and addresses) per item, as
``PinTracker.StatusAll``'s PinInfos do: it sends its identity once, then batches of rows in CID order. The
peer serving the listing takes the pin's fields from its own pinset and zips the rows in by CID.

A row's timestamp is ``None`` for a status derived from the pinset at the batch's time (``StatusRows.ts_ns``:
when this peer looked); operations in flight or failed keep their own times.

Derived rows are most rows of a large pinset, and all they say is a status out of four. ``StatusAllCompact``
sends runs of them as the CIDs plus one status code byte each (``keys``/``codes``), which costs both ends less
than 7-tuples; rows of operations still go as rows.
"""

from __future__ import annotations

from typing import Final

import msgspec
from msgspec import Struct

from pincluster.types.codec import StatusKey, StoredPin, allocated_elsewhere
from pincluster.types.status import UNEXPECTEDLY_UNPINNED_ERROR, PinType, TrackerStatus

__all__ = ["DERIVED_CODES", "DERIVED_ERRORS", "ListedPage", "LocalRow", "Row", "StatusRows", "derived_row",
           "implied_status"]

#: The statuses a tracker derives from a pinset entry and its IPFS node's pins (rows without a time of their
#: own), each with the error text it carries.
DERIVED_ERRORS: Final[dict[int, str]] = {
    int(TrackerStatus.PINNED): "",
    int(TrackerStatus.UNEXPECTEDLY_UNPINNED): UNEXPECTEDLY_UNPINNED_ERROR,
    int(TrackerStatus.SHARDED): "",
    int(TrackerStatus.REMOTE): "",
}

#: The derived statuses by their code in a compact batch (``StatusRows.codes``), and the codes by status.
DERIVED_CODES: Final[tuple[int, ...]] = tuple(DERIVED_ERRORS)
CODE_OF: Final[dict[int, int]] = {st: i for i, st in enumerate(DERIVED_CODES)}

#: ``(cid bytes, TrackerStatus bits, timestamp ns or None = the batch's, error, attempt_count, priority_pin,
#: in_pinset)``; ``in_pinset`` False: the PinInfo would carry no pin fields (an unpin in progress).
Row = tuple[bytes, int, int | None, str, int, bool, bool]

#: What the local tracker gives the cluster: ``(cid bytes, stored pin or None, row or None)``; the row is None
#: for a pin whose status does not match the listing's filter (the pin still gives merged items their fields).
LocalRow = tuple[bytes, StoredPin | None, Row | None]


class ListedPage:
    """A page of what the local tracker gives an unfiltered merged listing (``listing_pages``), in columns:
    CIDs, the start of each pin's line and its status key (``types.codec.status_key``), and this peer's
    status: a derived status (int) or an operation's row. ``outside``: operations on CIDs outside the pinset,
    with no text nor key."""

    __slots__ = ("heads", "keys", "outside", "skeys", "states", "ts_ns")

    def __init__(self, ts_ns: int, keys: list[bytes], heads: list[bytes], skeys: list[bytes],
                 states: list[int | Row], *, outside: bool = False) -> None:
        self.ts_ns = ts_ns
        self.keys = keys
        self.heads = heads
        self.skeys = skeys
        self.states = states
        self.outside = outside


_META: Final = PinType.META.bits
_SHARDED: Final = int(TrackerStatus.SHARDED)
_REMOTE: Final = int(TrackerStatus.REMOTE)


def implied_status(f: StatusKey, peer: bytes) -> int | None:
    """The status peer ``peer`` (peer-ID bytes) has for a pin from its status key alone: ``sharded`` for a
    metadata pin, ``remote`` for a pin allocated to other peers; None when the peer's IPFS pins decide."""
    if f.type == _META:
        return _SHARDED
    return _REMOTE if allocated_elsewhere(f, peer) else None


def derived_row(key: bytes, code: int) -> Row:
    """The row a compact batch's ``key`` and status ``code`` stand for."""
    st = DERIVED_CODES[code]
    return (key, st, None, DERIVED_ERRORS[st], 0, False, True)


class StatusRows(Struct, array_like=True, gc=False):
    """One RPC item: a batch of rows, or (``StatusAllCompact``) of derived rows in compact form: ``keys`` and
    one byte of ``codes`` (an index into ``DERIVED_CODES``) per key; a batch holds one form or the other.
    ``ident`` (peername, IPFS peer ID bytes or None, IPFS addresses) is only in a stream's first batch."""

    ts_ns: int
    rows: list[Row]
    ident: tuple[str, bytes | None, list[str]] | None = None
    keys: list[bytes] = msgspec.field(default_factory=list)
    codes: bytes = b""
