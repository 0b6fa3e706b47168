"""The UnixFS exporter: ``cat`` (with offset and length), ``get`` as a tar stream, and ``ls``.

Reads go through any :class:`BlockGetter`, so the same code serves local blocks and blocks fetched from the
network. ``cat`` uses each node's ``blocksizes`` to skip whole sub-trees before ``offset`` and fetches the
next few children ahead (in order) so a network getter is not waited on one block at a time. Only a window
of blocks is held, whatever the file size.
"""

from __future__ import annotations

import asyncio
import tarfile
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

from pincluster.errors import InvalidInput
from pincluster.ipfs.blockstore import BlockGetter
from pincluster.ipfs.dagpb import PBLink, PBNode, decode_node
from pincluster.ipfs.unixfs.hamt import shard_entries
from pincluster.ipfs.unixfs.pb import DataType, UnixFSData, UnixFSError, decode_data
from pincluster.types.cid import CID, DAG_PB, RAW

__all__ = ["LsLink", "NotAFile", "cat", "get_tar", "ls", "stat_node"]

PREFETCH = 8


class NotAFile(InvalidInput):
    """``cat`` of something that is not a file."""


@dataclass(frozen=True)
class LsLink:
    """One ``ipfs ls`` entry. ``type`` is the UnixFS type number (1 dir, 2 file…), -1 if not resolved;
    ``size`` is the file size for files (0 for directories), ``tsize`` the link's cumulative size."""

    name: str
    cid: CID
    tsize: int
    type: int
    size: int


def _decode(cid: CID, data: bytes) -> tuple[PBNode | None, UnixFSData]:
    """Interpret a block as UnixFS; raw blocks are file leaves."""
    if cid.codec == RAW:
        return None, UnixFSData(DataType.RAW, data, len(data))
    if cid.codec != DAG_PB:
        raise InvalidInput(f"{cid}: not a UnixFS node (codec 0x{cid.codec:x})")
    node = decode_node(data)
    if node.data is None:
        raise UnixFSError(f"{cid}: dag-pb node without UnixFS data")
    return node, decode_data(node.data)


def _file_size(fs: UnixFSData) -> int:
    if fs.filesize is not None:
        return fs.filesize
    return len(fs.data or b"") + sum(fs.blocksizes)


async def stat_node(getter: BlockGetter, cid: CID) -> tuple[int, int]:
    """``(unixfs type, file size)`` of the node at ``cid`` (size 0 for directories)."""
    _node, fs = _decode(cid, await getter.get(cid))
    if fs.type in (DataType.FILE, DataType.RAW):
        return int(DataType.FILE), _file_size(fs)
    return int(fs.type), 0


async def _pieces(
    getter: BlockGetter, cid: CID, data: bytes, start: int, end: int
) -> AsyncIterator[bytes]:
    """Bytes [start, end) of the file node ``cid`` (whose block is ``data``), relative to the node."""
    node, fs = _decode(cid, data)
    if fs.type not in (DataType.FILE, DataType.RAW):
        if fs.type in (DataType.DIRECTORY, DataType.HAMT_SHARD):
            raise NotAFile("this dag node is a directory")
        raise NotAFile(f"{cid} is not a file (UnixFS type {fs.type.name.lower()})")
    inline = fs.data or b""
    pos = 0
    if inline:
        if start < len(inline) and end > 0:
            yield inline[max(start, 0) : min(end, len(inline))]
        pos = len(inline)
    if node is None or not node.links:
        return
    if len(fs.blocksizes) != len(node.links):
        raise UnixFSError(f"{cid}: {len(node.links)} links but {len(fs.blocksizes)} blocksizes")
    wanted: list[tuple[CID, int]] = []
    for link, bs in zip(node.links, fs.blocksizes, strict=True):
        if pos + bs > start and pos < end:
            wanted.append((link.cid, pos))
        pos += bs
        if pos >= end:
            break
    tasks: deque[asyncio.Future[bytes]] = deque()
    try:
        i = 0
        while i < len(wanted):
            while len(tasks) < PREFETCH and i + len(tasks) < len(wanted):
                tasks.append(asyncio.ensure_future(getter.get(wanted[i + len(tasks)][0])))
            child_cid, child_pos = wanted[i]
            child_data = await tasks.popleft()
            i += 1
            async for piece in _pieces(getter, child_cid, child_data, start - child_pos, end - child_pos):
                yield piece
    finally:
        for t in tasks:
            t.cancel()


async def cat(getter: BlockGetter, cid: CID, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
    """Stream the content of the file at ``cid`` from ``offset`` (≥ 0), at most ``length`` bytes."""
    if offset < 0:
        raise InvalidInput(f"cannot specify negative offset {offset}")
    if length is not None and length < 0:
        raise InvalidInput(f"cannot specify negative length {length}")
    data = await getter.get(cid)
    _node, fs = _decode(cid, data)
    size = _file_size(fs) if fs.type in (DataType.FILE, DataType.RAW) else 0
    end = size if length is None else min(size, offset + length)
    if fs.type in (DataType.DIRECTORY, DataType.HAMT_SHARD):
        raise NotAFile("this dag node is a directory")
    if offset >= end:
        return
    async for piece in _pieces(getter, cid, data, offset, end):
        if piece:
            yield piece


def _tar_header(name: str, size: int, is_dir: bool, mtime: int) -> bytes:
    ti = tarfile.TarInfo(name + ("/" if is_dir and not name.endswith("/") else ""))
    ti.size = 0 if is_dir else size
    ti.type = tarfile.DIRTYPE if is_dir else tarfile.REGTYPE
    ti.mode = 0o755 if is_dir else 0o644
    ti.mtime = mtime
    return ti.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="strict")


async def _tar_entries(getter: BlockGetter, cid: CID, name: str) -> AsyncIterator[bytes]:
    data = await getter.get(cid)
    node, fs = _decode(cid, data)
    mtime = fs.mtime[0] if fs.mtime else 0
    if fs.type in (DataType.FILE, DataType.RAW):
        size = _file_size(fs)
        yield _tar_header(name, size, False, mtime)
        written = 0
        if size:
            async for piece in _pieces(getter, cid, data, 0, size):
                written += len(piece)
                yield piece
        if written != size:
            raise UnixFSError(f"{cid}: file size says {size} bytes but the DAG holds {written}")
        if size % 512:
            yield b"\0" * (512 - size % 512)
    elif fs.type == DataType.DIRECTORY:
        yield _tar_header(name, 0, True, mtime)
        assert node is not None
        for link in node.links:
            if not link.name or "/" in link.name or link.name in (".", ".."):
                raise UnixFSError(f"{cid}: directory entry with an invalid name {link.name!r}")
            async for chunk in _tar_entries(getter, link.cid, f"{name}/{link.name}"):
                yield chunk
    elif fs.type == DataType.HAMT_SHARD:
        yield _tar_header(name, 0, True, mtime)
        assert node is not None
        async for entry, link in _hamt_walk(getter, node.links, fs.fanout or 256):
            if not entry or "/" in entry or entry in (".", ".."):
                raise UnixFSError(f"{cid}: directory entry with an invalid name {entry!r}")
            async for chunk in _tar_entries(getter, link.cid, f"{name}/{entry}"):
                yield chunk
    elif fs.type == DataType.SYMLINK:
        ti = tarfile.TarInfo(name)
        ti.type = tarfile.SYMTYPE
        ti.linkname = (fs.data or b"").decode("utf-8", "replace")
        ti.mode = 0o777
        yield ti.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8")
    else:
        raise InvalidInput(f"{cid}: cannot export UnixFS type {fs.type.name.lower()}")


async def _hamt_walk(
    getter: BlockGetter, links: tuple[PBLink, ...], fanout: int
) -> AsyncIterator[tuple[str, PBLink]]:
    """The ``(entry name, link)`` pairs of a HAMT-sharded directory, descending into child shards."""
    for entry, link in shard_entries(links, fanout):
        if entry is not None:
            yield entry, link
            continue
        child, cfs = _decode(link.cid, await getter.get(link.cid))
        if child is None or cfs.type != DataType.HAMT_SHARD:
            raise UnixFSError(f"{link.cid}: expected a HAMT shard")
        async for item in _hamt_walk(getter, child.links, cfs.fanout or fanout):
            yield item


async def get_tar(getter: BlockGetter, cid: CID, name: str) -> AsyncIterator[bytes]:
    """Stream a tar archive of the file or directory at ``cid``, rooted at ``name`` (like ``ipfs get``)."""
    name = name.strip("/") or str(cid)
    async for chunk in _tar_entries(getter, cid, name):
        yield chunk
    yield b"\0" * 1024


async def ls(getter: BlockGetter, cid: CID, resolve_type: bool = True) -> list[LsLink]:
    """The links of a directory (or of a file's chunks), like ``ipfs ls``; a HAMT-sharded directory lists its
    entries (in shard order). With ``resolve_type`` each child's root block is fetched (concurrently) to
    report its type and file size."""
    node, fs = _decode(cid, await getter.get(cid))
    if node is None:
        return []
    if fs.type == DataType.HAMT_SHARD:
        named = [(entry, link) async for entry, link in _hamt_walk(getter, node.links, fs.fanout or 256)]
    else:
        named = [(link.name or "", link) for link in node.links]
    sem = asyncio.Semaphore(16)

    async def one(i: int) -> LsLink:
        name, link = named[i]
        if not resolve_type:
            return LsLink(name, link.cid, link.tsize or 0, -1, 0)
        async with sem:
            typ, size = await stat_node(getter, link.cid)
        return LsLink(name, link.cid, link.tsize or 0, typ, size)

    return list(await asyncio.gather(*(one(i) for i in range(len(named)))))
