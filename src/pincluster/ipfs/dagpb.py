"""dag-pb codec, written by hand.

The ``protobuf`` package writes Data (field 1) before Links (field 2); kubo writes Links first, so any node with
both would get a different CID (FINDINGS.md). Hand-written varints are also much faster on 256 KiB leaves.
Decoding is strict about wire types and lengths so a corrupt or hostile block gives :class:`DagPBError`, never
a half-parsed node.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pincluster.errors import InvalidInput
from pincluster.types.cid import CID, InvalidCID, decode_uvarint, encode_uvarint


class DagPBError(InvalidInput):
    """A block is not valid dag-pb."""


_uvarint = encode_uvarint


def _read_uvarint(buf: bytes | memoryview, pos: int, end: int) -> tuple[int, int]:
    try:
        return decode_uvarint(buf, pos, end)
    except InvalidInput as exc:
        raise DagPBError(f"dag-pb: {exc}") from None


@dataclass(frozen=True, slots=True)
class PBLink:
    """One link: target CID, optional name (``None`` = absent, ``""`` = present and empty) and Tsize."""

    cid: CID
    name: str | None = ""
    tsize: int | None = None

    def encode(self) -> bytes:
        h = self.cid.bytes
        parts = [b"\x0a", _uvarint(len(h)), h]
        if self.name is not None:
            nb = self.name.encode("utf-8")
            parts += [b"\x12", _uvarint(len(nb)), nb]
        if self.tsize is not None:
            parts += [b"\x18", _uvarint(self.tsize)]
        return b"".join(parts)


@dataclass(frozen=True, slots=True)
class PBNode:
    """A decoded dag-pb node. ``data`` is ``None`` when the Data field is absent."""

    links: tuple[PBLink, ...]
    data: bytes | None


def encode_node(links: Sequence[PBLink], data: bytes | None) -> bytes:
    """Encode a dag-pb node: every link (field 2) first, then Data (field 1), as kubo does.

    Links are written in the order given; callers that build directories sort them by name first.
    """
    parts: list[bytes] = []
    for link in links:
        lb = link.encode()
        parts += [b"\x12", _uvarint(len(lb)), lb]
    if data is not None:
        parts += [b"\x0a", _uvarint(len(data)), data]
    return b"".join(parts)


def _decode_link(buf: bytes, pos: int, end: int) -> PBLink:
    cid: CID | None = None
    name: str | None = None
    tsize: int | None = None
    last_field = 0
    while pos < end:
        key, pos = _read_uvarint(buf, pos, end)
        field, wire = key >> 3, key & 7
        if field <= last_field:
            raise DagPBError("dag-pb: link fields out of order or repeated")
        last_field = field
        if field == 1 and wire == 2:
            ln, pos = _read_uvarint(buf, pos, end)
            if pos + ln > end:
                raise DagPBError("dag-pb: link hash runs past the end")
            try:
                cid = CID.from_bytes(buf[pos : pos + ln])
            except InvalidCID as exc:
                raise DagPBError(f"dag-pb: bad link CID: {exc}") from None
            pos += ln
        elif field == 2 and wire == 2:
            ln, pos = _read_uvarint(buf, pos, end)
            if pos + ln > end:
                raise DagPBError("dag-pb: link name runs past the end")
            try:
                name = buf[pos : pos + ln].decode("utf-8")
            except UnicodeDecodeError:
                raise DagPBError("dag-pb: link name is not UTF-8") from None
            pos += ln
        elif field == 3 and wire == 0:
            tsize, pos = _read_uvarint(buf, pos, end)
        else:
            raise DagPBError(f"dag-pb: unexpected link field {field} (wire type {wire})")
    if cid is None:
        raise DagPBError("dag-pb: link without a hash")
    return PBLink(cid, name, tsize)


def decode_node(buf: bytes) -> PBNode:
    """Decode a dag-pb block; raises :class:`DagPBError` on anything malformed."""
    links: list[PBLink] = []
    data: bytes | None = None
    pos = 0
    end = len(buf)
    while pos < end:
        key, pos = _read_uvarint(buf, pos, end)
        field, wire = key >> 3, key & 7
        if wire != 2 or field not in (1, 2):
            raise DagPBError(f"dag-pb: unexpected field {field} (wire type {wire})")
        ln, pos = _read_uvarint(buf, pos, end)
        if pos + ln > end:
            raise DagPBError("dag-pb: field runs past the end of the block")
        if field == 2:
            if data is not None:
                raise DagPBError("dag-pb: link after data")
            links.append(_decode_link(buf, pos, pos + ln))
        else:
            if data is not None:
                raise DagPBError("dag-pb: duplicate data field")
            data = bytes(buf[pos : pos + ln])
        pos += ln
    return PBNode(tuple(links), data)


def link_cids(buf: bytes) -> list[CID]:
    """Only the link targets of a dag-pb block (used by traversal, GC and pin walks)."""
    return [link.cid for link in decode_node(buf).links]
