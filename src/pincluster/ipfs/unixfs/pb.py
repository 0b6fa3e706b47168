"""The UnixFS ``Data`` protobuf (the payload of a dag-pb node's Data field), written by hand.

Field order and presence follow kubo (gogo proto2 marshalling): Type, Data, filesize, blocksizes (one tag
each, not packed), hashType, fanout, mode, mtime. File nodes always carry ``filesize`` (even 0); directories
do not. These details decide CIDs, so they are explicit here rather than left to a protobuf library.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from pincluster.errors import InvalidInput
from pincluster.types.cid import decode_uvarint, encode_uvarint


class UnixFSError(InvalidInput):
    """A dag-pb node whose Data is not valid UnixFS (or not the UnixFS type expected)."""


class DataType(IntEnum):
    RAW = 0
    DIRECTORY = 1
    FILE = 2
    METADATA = 3
    SYMLINK = 4
    HAMT_SHARD = 5


_uvarint = encode_uvarint


def _read_uvarint(buf: bytes, pos: int) -> tuple[int, int]:
    try:
        return decode_uvarint(buf, pos)
    except InvalidInput as exc:
        raise UnixFSError(f"unixfs: {exc}") from None


@dataclass(frozen=True, slots=True)
class UnixFSData:
    """A decoded UnixFS Data message; ``None`` means the optional field is absent."""

    type: DataType
    data: bytes | None = None
    filesize: int | None = None
    blocksizes: tuple[int, ...] = ()
    hash_type: int | None = None
    fanout: int | None = None
    mode: int | None = None
    mtime: tuple[int, int] | None = None  # (seconds, nanoseconds)

    def encode(self) -> bytes:
        parts = [b"\x08", _uvarint(int(self.type))]
        if self.data is not None:
            parts += [b"\x12", _uvarint(len(self.data)), self.data]
        if self.filesize is not None:
            parts += [b"\x18", _uvarint(self.filesize)]
        for bs in self.blocksizes:
            parts += [b"\x20", _uvarint(bs)]
        if self.hash_type is not None:
            parts += [b"\x28", _uvarint(self.hash_type)]
        if self.fanout is not None:
            parts += [b"\x30", _uvarint(self.fanout)]
        if self.mode is not None:
            parts += [b"\x38", _uvarint(self.mode)]
        if self.mtime is not None:
            secs, nanos = self.mtime
            inner = b"\x08" + _uvarint(secs & 0xFFFFFFFFFFFFFFFF)
            if nanos:
                inner += b"\x15" + nanos.to_bytes(4, "little")
            parts += [b"\x42", _uvarint(len(inner)), inner]
        return b"".join(parts)

    @property
    def file_data_size(self) -> int:
        """Bytes of file content this node stands for (filesize, else its inline data)."""
        if self.filesize is not None:
            return self.filesize
        return len(self.data or b"")


def encode_file_leaf(data: bytes, leaf_type: DataType = DataType.FILE) -> bytes:
    """UnixFS bytes of a leaf carrying ``data`` (kubo: Data omitted when empty, filesize always present)."""
    dt = b"\x08" + bytes((int(leaf_type),))
    if data:
        return b"".join((dt, b"\x12", _uvarint(len(data)), data, b"\x18", _uvarint(len(data))))
    return dt + b"\x18\x00"


def encode_file_node(blocksizes: list[int]) -> bytes:
    """UnixFS bytes of an internal file node: no data, total filesize, one blocksize per child."""
    parts = [b"\x08\x02\x18", _uvarint(sum(blocksizes))]
    for bs in blocksizes:
        parts += [b"\x20", _uvarint(bs)]
    return b"".join(parts)


DIRECTORY_DATA = b"\x08\x01"


def decode_data(buf: bytes) -> UnixFSData:
    """Decode UnixFS Data; raises :class:`UnixFSError` on malformed input."""
    typ: int | None = None
    data: bytes | None = None
    filesize: int | None = None
    blocksizes: list[int] = []
    hash_type = fanout = mode = None
    mtime: tuple[int, int] | None = None
    pos = 0
    n = len(buf)
    while pos < n:
        key, pos = _read_uvarint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            val, pos = _read_uvarint(buf, pos)
            if field == 1:
                typ = val
            elif field == 3:
                filesize = val
            elif field == 4:
                blocksizes.append(val)
            elif field == 5:
                hash_type = val
            elif field == 6:
                fanout = val
            elif field == 7:
                mode = val
            # unknown varint fields are skipped, as protobuf does
        elif wire == 2:
            ln, pos = _read_uvarint(buf, pos)
            if pos + ln > n:
                raise UnixFSError("unixfs: field runs past the end")
            chunk = buf[pos : pos + ln]
            pos += ln
            if field == 2:
                data = bytes(chunk)
            elif field == 4:  # packed blocksizes, accepted on read
                p = 0
                while p < len(chunk):
                    v, p = _read_uvarint(chunk, p)
                    blocksizes.append(v)
            elif field == 8:
                mtime = _decode_mtime(chunk)
        elif wire == 5:
            pos += 4
        elif wire == 1:
            pos += 8
        else:
            raise UnixFSError(f"unixfs: unsupported wire type {wire}")
    if pos > n:
        raise UnixFSError("unixfs: truncated message")
    if typ is None:
        raise UnixFSError("unixfs: missing Type")
    try:
        dtype = DataType(typ)
    except ValueError:
        raise UnixFSError(f"unixfs: unknown node type {typ}") from None
    return UnixFSData(dtype, data, filesize, tuple(blocksizes), hash_type, fanout, mode, mtime)


def _decode_mtime(buf: bytes) -> tuple[int, int]:
    secs = 0
    nanos = 0
    pos = 0
    while pos < len(buf):
        key, pos = _read_uvarint(buf, pos)
        if key == 0x08:
            secs, pos = _read_uvarint(buf, pos)
        elif key == 0x15:
            nanos = int.from_bytes(buf[pos : pos + 4], "little")
            pos += 4
        else:
            raise UnixFSError("unixfs: bad mtime field")
    return secs, nanos
