"""Compact status rows: what a peer sends for a merged status listing (RPC ``PinTracker.StatusAllRows``).

Every peer holds the same pinset, so a peer answering a listing need not repeat each pin's fields (name,
allocations, origins, created, metadata) nor its own identity (peername, IPFS ID and addresses) per item, as
``PinTracker.StatusAll``'s PinInfos do: it sends its identity once, then batches of rows in CID order. The
peer serving the listing takes the pin's fields from its own pinset and zips the rows in by CID.

A row's timestamp is ``None`` for a status derived from the pinset at the batch's time (``StatusRows.ts_ns``:
when this peer looked); operations in flight or failed keep their own times.
"""

from __future__ import annotations

from typing import Final

from msgspec import Struct

from pincluster.types.codec import StoredPin
from pincluster.types.status import UNEXPECTEDLY_UNPINNED_ERROR, TrackerStatus

__all__ = ["DERIVED_ERRORS", "LocalRow", "Row", "StatusRows"]

#: The statuses a tracker derives from a pinset entry and its IPFS node's pins (rows without a time of their
#: own), each with the error text it carries.
DERIVED_ERRORS: Final[dict[int, str]] = {
    int(TrackerStatus.PINNED): "",
    int(TrackerStatus.UNEXPECTEDLY_UNPINNED): UNEXPECTEDLY_UNPINNED_ERROR,
    int(TrackerStatus.SHARDED): "",
    int(TrackerStatus.REMOTE): "",
}

#: ``(cid bytes, TrackerStatus bits, timestamp ns or None = the batch's, error, attempt_count, priority_pin,
#: in_pinset)``; ``in_pinset`` False: the PinInfo would carry no pin fields (an unpin in progress).
Row = tuple[bytes, int, int | None, str, int, bool, bool]

#: What the local tracker gives the cluster: ``(cid bytes, stored pin or None, row or None)``; the row is None
#: for a pin whose status does not match the listing's filter (the pin still gives merged items their fields).
LocalRow = tuple[bytes, StoredPin | None, Row | None]


class StatusRows(Struct, array_like=True, gc=False):
    """One RPC item: a batch of rows. ``ident`` (peername, IPFS peer ID bytes or None, IPFS addresses) is
    only in a stream's first batch."""

    ts_ns: int
    rows: list[Row]
    ident: tuple[str, bytes | None, list[str]] | None = None
