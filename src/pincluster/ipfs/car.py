"""CAR (Content Addressable aRchive) files: a streaming reader and a v1 writer.

A CAR v1 is ``varint(len) | dag-cbor {roots: [CID…], version: 1}`` followed by sections
``varint(len) | CID | block``. A CAR v2 wraps a v1 payload: an 11-byte pragma, a 40-byte header (characteristics,
data offset, data size, index offset) and the v1 bytes at ``data offset``; the reader reads that inner payload
and ignores the index. Nothing is held whole: the reader pulls byte chunks as the caller asks for blocks, so the
memory in use is one section (bounded by ``max_section``). Every block is checked against its CID before it is
handed over, because a CAR comes from a client and the blocks go straight into blockstores.

The header is decoded with ``libipld`` (strict DAG-CBOR, in Rust); it is written by hand since it has one fixed
shape and libipld cannot encode links from Python.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import libipld

from pincluster.errors import InvalidInput
from pincluster.ipfs.dag import links
from pincluster.types.cid import (
    CID,
    IDENTITY,
    decode_uvarint,
    encode_uvarint,
    hash_digest,
    multihash_decode,
    split_cid_prefix,
)

__all__ = [
    "CARV2_PRAGMA",
    "MAX_HEADER",
    "MAX_SECTION",
    "CarBlockMismatch",
    "CarError",
    "CarHeader",
    "CarReader",
    "dag_blocks",
    "encode_header",
    "encode_section",
    "export_car",
    "verify_block",
]

#: The first 11 bytes of every CAR v2: varint(10) then dag-cbor ``{"version": 2}``.
CARV2_PRAGMA = bytes.fromhex("0aa16776657273696f6e02")
_V2_HEADER_LEN = 40
#: go-car's limits: a header (roots) over 32 MiB or a section over 8 MiB is refused rather than buffered.
MAX_HEADER = 32 << 20
MAX_SECTION = 8 << 20
_THREAD_HASH_BYTES = 64 * 1024  # hash bigger blocks off the event loop (hashlib releases the GIL)


class CarError(InvalidInput):
    """The CAR is malformed, truncated or of an unsupported kind (HTTP 400 through the APIs)."""


class CarBlockMismatch(CarError):
    """A block's bytes do not hash to the CID it is stored under."""


@dataclass(frozen=True)
class CarHeader:
    """``version`` is the file's (1 or 2; blocks always come from the v1 payload); ``roots`` in file order."""

    version: int
    roots: tuple[CID, ...]


class _Bytes:
    """Exact-size reads over an async iterator of chunks, with an optional end (the v2 payload's limit)."""

    def __init__(self, chunks: AsyncIterable[bytes]) -> None:
        self._it = aiter(chunks)
        self._buf = bytearray()
        self._pos = 0          # read position inside _buf
        self.offset = 0        # bytes consumed from the start of the file
        self.end: int | None = None
        self._eof = False

    def _available(self) -> int:
        return len(self._buf) - self._pos

    async def _fill(self, n: int) -> bool:
        """Buffer at least ``n`` unread bytes; False if the stream ends first."""
        while self._available() < n:
            if self._eof:
                return False
            if self._pos:
                del self._buf[: self._pos]
                self._pos = 0
            try:
                chunk = await anext(self._it)
            except StopAsyncIteration:
                self._eof = True
                return False
            self._buf += chunk
        return True

    def _limit(self) -> int | None:
        return None if self.end is None else self.end - self.offset

    async def at_end(self) -> bool:
        left = self._limit()
        if left is not None and left <= 0:
            return True
        if await self._fill(1):
            return False
        if left is not None:  # a CAR v2 says how long its payload is: ending early is a cut, not the end
            raise CarError(f"invalid CAR v2 file: truncated payload at byte {self.offset} (the file is cut short)")
        return True

    async def read(self, n: int, what: str) -> bytes:
        left = self._limit()
        if (left is not None and n > left) or not await self._fill(n):
            raise CarError(f"invalid CAR file: truncated {what} at byte {self.offset} (the file is cut short)")
        out = bytes(self._buf[self._pos : self._pos + n])
        self._pos += n
        self.offset += n
        return out

    async def skip(self, n: int, what: str) -> None:
        while n > 0:
            step = min(n, 1 << 20)
            await self.read(step, what)
            n -= step

    async def uvarint(self, what: str) -> int:
        """One varint; at most 10 bytes are looked at."""
        for size in range(1, 11):
            left = self._limit()
            if (left is not None and size > left) or not await self._fill(size):
                break
            if not self._buf[self._pos + size - 1] & 0x80:
                value, _ = decode_uvarint(self._buf, self._pos, self._pos + size)
                self._pos += size
                self.offset += size
                return value
        else:
            raise CarError(f"invalid CAR file: {what} at byte {self.offset} is not a valid varint")
        raise CarError(f"invalid CAR file: truncated {what} at byte {self.offset} (the file is cut short)")


def _decode_v1_header(raw: bytes) -> CarHeader:
    try:
        obj = libipld.decode_dag_cbor(raw)
    except (ValueError, RecursionError) as exc:
        raise CarError(f"invalid CAR header: not DAG-CBOR ({exc})") from None
    if not isinstance(obj, dict):
        raise CarError("invalid CAR header: not a map")
    version = obj.get("version")
    if version == 2:
        raise CarError("invalid CAR file: a CAR v2 pragma inside a CAR v2 payload")
    if version != 1 or isinstance(version, bool):
        raise CarError(f"unsupported CAR version {version!r}: only CAR v1 and v2 files can be read")
    roots = obj.get("roots")
    if not isinstance(roots, list):
        raise CarError("invalid CAR header: 'roots' is missing or not a list")
    out: list[CID] = []
    for r in roots:
        if not isinstance(r, bytes):
            raise CarError("invalid CAR header: a root is not a CID link")
        try:
            out.append(CID.from_bytes(r))
        except InvalidInput as exc:
            raise CarError(f"invalid CAR header: bad root CID ({exc})") from None
    return CarHeader(1, tuple(out))


async def verify_block(cid: CID, data: bytes) -> None:
    """Raise CarBlockMismatch unless ``data`` hashes to ``cid`` (truncated digests compare their prefix)."""
    code, digest = multihash_decode(cid.multihash)
    if code == IDENTITY:
        ok = data == digest
    else:
        try:
            if len(data) >= _THREAD_HASH_BYTES:
                full = await asyncio.to_thread(hash_digest, code, data)
            else:
                full = hash_digest(code, data)
        except InvalidInput as exc:
            raise CarError(f"cannot verify block {cid}: {exc}") from None
        ok = len(digest) <= len(full) and full[: len(digest)] == digest
    if not ok:
        raise CarBlockMismatch(
            f"CAR block {cid} is corrupt: its data does not hash to its CID (re-export the CAR file)")


class CarReader:
    """Reads a CAR from a stream of byte chunks: ``reader = await CarReader.open(chunks)``, then
    ``reader.header`` and ``async for cid, data in reader.blocks()``. Blocks are verified unless
    ``verify=False``; sections over ``max_section`` bytes are refused."""

    def __init__(self, src: _Bytes, header: CarHeader, verify: bool, max_section: int) -> None:
        self._src = src
        self.header = header
        self.verify = verify
        self.max_section = max_section
        self.blocks_read = 0
        self.bytes_read = 0  # block data bytes (not counting CIDs and framing)

    @classmethod
    async def open(cls, chunks: AsyncIterable[bytes], *, verify: bool = True,
                   max_section: int = MAX_SECTION) -> CarReader:
        src = _Bytes(chunks)
        if await src.at_end():
            raise CarError("invalid CAR file: it is empty")
        hlen = await src.uvarint("header length")
        if hlen == 0 or hlen > MAX_HEADER:
            raise CarError(f"invalid CAR file: header length {hlen} is out of range (1..{MAX_HEADER})")
        raw = await src.read(hlen, "header")
        if encode_uvarint(hlen) + raw == CARV2_PRAGMA:
            v2 = await src.read(_V2_HEADER_LEN, "CAR v2 header")
            data_offset, data_size, _index_offset = struct.unpack_from("<QQQ", v2, 16)
            if data_offset < src.offset:
                raise CarError(f"invalid CAR v2 header: data offset {data_offset} is inside the header")
            await src.skip(data_offset - src.offset, "CAR v2 padding")
            src.end = data_offset + data_size
            if await src.at_end():
                raise CarError("invalid CAR v2 file: its CAR v1 payload is empty")
            inner_len = await src.uvarint("header length")
            if inner_len == 0 or inner_len > MAX_HEADER:
                raise CarError(f"invalid CAR file: header length {inner_len} is out of range (1..{MAX_HEADER})")
            inner = _decode_v1_header(await src.read(inner_len, "header"))
            header = CarHeader(2, inner.roots)
        else:
            header = _decode_v1_header(raw)
        return cls(src, header, verify, max_section)

    async def blocks(self) -> AsyncIterator[tuple[CID, bytes]]:
        """Each ``(cid, data)`` in file order; stops at the end of the (v1 payload of the) file."""
        src = self._src
        while not await src.at_end():
            start = src.offset
            n = await src.uvarint("section length")
            if n == 0:
                raise CarError(f"invalid CAR file: empty section at byte {start}")
            if n > self.max_section:
                raise CarError(f"invalid CAR file: section at byte {start} is {n} bytes, over the "
                               f"{self.max_section}-byte limit")
            section = await src.read(n, "block")
            try:
                cid, pos = split_cid_prefix(section)
            except (InvalidInput, IndexError):
                raise CarError(f"invalid CAR file: bad CID in the section at byte {start}") from None
            if pos > len(section):
                raise CarError(f"invalid CAR file: bad CID in the section at byte {start}")
            data = section[pos:]
            if self.verify:
                await verify_block(cid, data)
            self.blocks_read += 1
            self.bytes_read += len(data)
            yield cid, data


# --- writing -------------------------------------------------------------------------------------------------
def _cbor_head(major: int, n: int) -> bytes:
    if n < 24:
        return bytes((major << 5 | n,))
    for extra, fmt in ((24, ">B"), (25, ">H"), (26, ">I"), (27, ">Q")):
        if n < 1 << (8 * struct.calcsize(fmt)):
            return bytes((major << 5 | extra,)) + struct.pack(fmt, n)
    raise ValueError(f"CBOR length {n} is too large")


def encode_header(roots: Sequence[CID]) -> bytes:
    """The length-prefixed CAR v1 header: dag-cbor ``{"roots": [...], "version": 1}`` (keys in dag-cbor order)."""
    body = bytearray(b"\xa2\x65roots")
    body += _cbor_head(4, len(roots))
    for r in roots:
        link = b"\x00" + r.bytes  # tag 42 holds the CID with the identity multibase prefix
        body += b"\xd8\x2a" + _cbor_head(2, len(link)) + link
    body += b"\x67version\x01"
    return encode_uvarint(len(body)) + bytes(body)


def encode_section(cid: CID, data: bytes) -> bytes:
    raw = cid.bytes
    return encode_uvarint(len(raw) + len(data)) + raw + data


class BlockGetter(Protocol):
    async def get(self, cid: CID) -> bytes: ...


async def dag_blocks(getter: BlockGetter, root: CID) -> AsyncIterator[tuple[CID, bytes]]:
    """Every block of the DAG under ``root`` once, depth-first, links in order (kubo's ``dag export`` order).

    Only the CIDs seen so far are remembered (to send each block once), never block data.
    """
    seen: set[bytes] = set()
    stack = [root]
    while stack:
        cid = stack.pop()
        if cid.bytes in seen:
            continue
        seen.add(cid.bytes)
        code, digest = multihash_decode(cid.multihash)
        data = digest if code == IDENTITY else await getter.get(cid)
        yield cid, data
        stack.extend(reversed(links(cid, data, "export")))


async def export_car(getter: BlockGetter, root: CID, *, batch_bytes: int = 256 * 1024) -> AsyncIterator[bytes]:
    """A CAR v1 of the DAG under ``root``, as byte chunks of about ``batch_bytes`` each."""
    buf = bytearray(encode_header([root]))
    async for cid, data in dag_blocks(getter, root):
        buf += encode_section(cid, data)
        if len(buf) >= batch_bytes:
            yield bytes(buf)
            buf.clear()
    if buf:
        yield bytes(buf)
