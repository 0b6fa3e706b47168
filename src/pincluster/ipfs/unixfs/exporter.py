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
from pincluster.ipfs.unixfs.hamt import name_hash, shard_entries
from pincluster.ipfs.unixfs.pb import DataType, UnixFSData, UnixFSError, decode_data
from pincluster.types.cid import CID, DAG_PB, RAW

__all__ = ["LsLink", "NotAFile", "cat", "get_tar", "lookup", "ls"]

PREFETCH = 8


class NotAFile(InvalidInput):
    """``cat`` of something that is not a file."""


@dataclass(frozen=True)
class LsLink:
    """One ``ipfs ls`` entry, as kubo reports it: ``type`` 1 directory, 2 file, 4 symlink, 0 not known (a link
    not resolved, or not UnixFS); ``size`` a file's size (0 for a directory), a symlink's target length, or a
    raw link's size; ``mode`` Go ``os.FileMode`` bits (0: none stored); ``mtime`` (seconds, nanoseconds)."""

    name: str
    cid: CID
    size: int
    type: int
    target: str = ""
    mode: int = 0
    mtime: tuple[int, int] | None = None


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
    if fs.type in (DataType.DIRECTORY, DataType.HAMT_SHARD):
        raise NotAFile("this dag node is a directory")
    if fs.type == DataType.SYMLINK:  # kubo's cat gives a symlink's target
        target = fs.data or b""
        piece = target[offset:] if length is None else target[offset : offset + length]
        if piece:
            yield piece
        return
    size = _file_size(fs) if fs.type in (DataType.FILE, DataType.RAW) else 0
    end = size if length is None else min(size, offset + length)
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


async def ls(getter: BlockGetter, cid: CID, resolve: bool = True) -> AsyncIterator[LsLink]:
    """The entries of a directory (a HAMT-sharded one in shard order), or the chunk links of a file, as kubo's
    ``ls`` gives them (``coreapi.UnixfsAPI.Ls``). A raw link is a file whose size is the link's; with
    ``resolve`` each dag-pb child's root block is read (up to ``PREFETCH`` ahead, in order) for its type,
    size, symlink target, mode and mtime; without, those stay zero."""
    node, fs = _decode(cid, await getter.get(cid))
    if node is None:
        return
    named: AsyncIterator[tuple[str, PBLink]] = (
        _hamt_walk(getter, node.links, fs.fanout or 256) if fs.type == DataType.HAMT_SHARD
        else _plain_links(node.links)
    )
    pending: deque[tuple[str, PBLink, asyncio.Future[bytes] | None]] = deque()
    try:
        async for name, link in named:
            want = resolve and link.cid.codec == DAG_PB
            pending.append((name, link, asyncio.ensure_future(getter.get(link.cid)) if want else None))
            if len(pending) >= PREFETCH:
                yield await _ls_link(*pending.popleft())
        while pending:
            yield await _ls_link(*pending.popleft())
    finally:
        for _name, _link, fut in pending:
            if fut is not None:
                fut.cancel()


async def _plain_links(links: tuple[PBLink, ...]) -> AsyncIterator[tuple[str, PBLink]]:
    for link in links:
        yield link.name or "", link


#: Go's ``os.FileMode`` bits that ``FSNode.Mode`` sets besides the permissions.
_GO_MODE_DIR, _GO_MODE_SYMLINK = 1 << 31, 1 << 27


async def _ls_link(name: str, link: PBLink, block: asyncio.Future[bytes] | None) -> LsLink:
    """boxo's ``processLink``: the entry for ``link``, from the child's block when it was read."""
    if link.cid.codec == RAW:
        return LsLink(name, link.cid, link.tsize or 0, int(DataType.FILE))
    if block is None:
        return LsLink(name, link.cid, 0, 0)
    _node, fs = _decode(link.cid, await block)
    if fs.type in (DataType.FILE, DataType.RAW):
        return LsLink(name, link.cid, fs.filesize or 0, int(DataType.FILE), "", _go_mode(fs, 0), fs.mtime)
    if fs.type in (DataType.DIRECTORY, DataType.HAMT_SHARD, DataType.METADATA):
        return LsLink(name, link.cid, 0, int(DataType.DIRECTORY), "", _go_mode(fs, _GO_MODE_DIR), fs.mtime)
    if fs.type == DataType.SYMLINK:
        target = (fs.data or b"").decode("utf-8", "replace")
        return LsLink(name, link.cid, len(fs.data or b""), int(DataType.SYMLINK), target,
                      _go_mode(fs, _GO_MODE_SYMLINK), fs.mtime)
    return LsLink(name, link.cid, 0, 0)


def _go_mode(fs: UnixFSData, kind: int) -> int:
    """boxo's ``FSNode.Mode``: Go ``os.FileMode`` bits of the node's UnixFS permissions (0 when it has none)."""
    perms = (fs.mode or 0) & 0xFFF
    if not perms:
        return 0
    return (perms & 0x1FF) | ((perms & 0xC00) << 12) | ((perms & 0x200) << 11) | kind


async def lookup(getter: BlockGetter, cid: CID, name: str) -> CID | None:
    """The CID of entry ``name`` of the directory at ``cid`` (a basic or a HAMT-sharded one: its hash picks the
    slot at each level, as boxo's ``hamt.Shard.Find``), or of a dag-pb node's link of that name; None when
    there is none (a dag-pb node that is not UnixFS is searched by link name too)."""
    if cid.codec != DAG_PB:
        return None
    node = decode_node(await getter.get(cid))
    try:
        fs = decode_data(node.data) if node.data is not None else None
    except UnixFSError:
        fs = None
    if fs is None or fs.type != DataType.HAMT_SHARD:
        return next((link.cid for link in node.links if link.name == name), None)
    fanout = fs.fanout or 256
    bits = fanout.bit_length() - 1
    if fanout != 1 << bits:
        raise UnixFSError(f"{cid}: HAMT fanout {fanout} is not a power of two")
    pad = len(f"{fanout - 1:X}")
    h = int.from_bytes(name_hash(name), "big")
    for depth in range(64 // bits):
        slot = f"{(h >> (64 - (depth + 1) * bits)) & (fanout - 1):0{pad}X}"
        found = next((link for link in node.links if (link.name or "").startswith(slot)), None)
        if found is None:
            return None
        if found.name != slot:
            return found.cid if found.name == slot + name else None
        child, cfs = _decode(found.cid, await getter.get(found.cid))
        if child is None or cfs.type != DataType.HAMT_SHARD:
            raise UnixFSError(f"{found.cid}: expected a HAMT shard")
        node = child
    raise UnixFSError(f"{cid}: HAMT deeper than its hash")
