"""File layouts (balanced and trickle) and the machinery that feeds them.

The two layouts mirror kubo's (boxo ``ipld/unixfs/importer/{balanced,trickle}``) step by step, because the
shape of the tree decides the CIDs. They pull leaves from a :class:`LeafSource` that chunks, encodes and hashes
leaves in a thread pool (hashlib releases the GIL, so two cores hash in parallel) a few batches ahead, and hand
every block to a :class:`BlockWriter` that stores them in large batches in the background. Only the open path
of the tree (at most 174 links per level) and a bounded window of batches are in memory, so memory stays flat
with file size.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from pincluster.errors import InvalidInput
from pincluster.ipfs.dagpb import PBLink, encode_node
from pincluster.ipfs.unixfs.pb import DataType, encode_file_leaf, encode_file_node
from pincluster.types.cid import CID, DAG_PB, RAW, SHA2_256, encode_uvarint, hash_digest, multihash_encode

#: kubo's DefaultLinksPerBlock: links per internal file node.
MAX_LINKS = 174
#: Trickle: sub-trees of each depth added per layer (boxo ``depthRepeat``).
TRICKLE_DEPTH_REPEAT = 4
#: Largest block kubo's importer makes (boxo BlockSizeLimit, 2 MiB).
BLOCK_SIZE_LIMIT = 2 * 1024 * 1024

_EXECUTOR: ThreadPoolExecutor | None = None


def hash_executor() -> Executor:
    """The shared thread pool for hashing and encoding (one worker per core, at least 2)."""
    global _EXECUTOR
    if _EXECUTOR is None:
        _EXECUTOR = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2), thread_name_prefix="ipfs-hash")
    return _EXECUTOR


class BlockSink(Protocol):
    """Where the importer stores blocks (a Blockstore satisfies it)."""

    async def put_many(self, blocks: Sequence[tuple[CID, bytes]]) -> None: ...


@dataclass(frozen=True, slots=True)
class DagNode:
    """What a parent needs to know of a finished child: its CID, cumulative size and file bytes."""

    cid: CID
    tsize: int
    filesize: int


@dataclass(frozen=True, slots=True)
class CidFormat:
    """How blocks are addressed: CID version, multihash function and whether leaves are raw."""

    version: int = 0
    hash_code: int = SHA2_256
    raw_leaves: bool = False

    def cid_for(self, codec: int, block: bytes) -> CID:
        """The CID of ``block`` under this format (raw blocks are always CIDv1, as in kubo)."""
        if codec == DAG_PB and self.version == 0:
            return CID(b"\x12\x20" + hashlib.sha256(block).digest())
        return CID.v1(codec, multihash_encode(self.hash_code, hash_digest(self.hash_code, block)))


class BlockWriter:
    """Buffers blocks and stores them through the sink in large batches, in the background.

    At most ``max_inflight`` batches are being stored at once; adding more waits (back-pressure). ``close``
    waits until every block is stored, so a caller may pin only after it returns.
    """

    def __init__(
        self, sink: BlockSink | None, batch_bytes: int = 8 << 20, max_inflight: int = 2
    ) -> None:
        self._sink = sink
        self._batch_bytes = batch_bytes
        self._max_inflight = max_inflight
        self._buf: list[tuple[CID, bytes]] = []
        self._buf_size = 0
        self._tasks: deque[asyncio.Task[None]] = deque()
        self.blocks_written = 0

    @property
    def storing(self) -> bool:
        """False for only-hash imports: leaves then need not be assembled into blocks at all."""
        return self._sink is not None

    async def add(self, cid: CID, block: bytes) -> None:
        if self._sink is None:
            return
        self._buf.append((cid, block))
        self._buf_size += len(block)
        if self._buf_size >= self._batch_bytes:
            await self._flush()

    async def _flush(self) -> None:
        if self._sink is None or not self._buf:
            return
        batch, self._buf, self._buf_size = self._buf, [], 0
        while len(self._tasks) >= self._max_inflight:
            await self._tasks.popleft()
        self.blocks_written += len(batch)
        self._tasks.append(asyncio.create_task(self._sink.put_many(batch)))

    async def close(self) -> None:
        """Store what is buffered and wait for every batch; re-raises a storage error."""
        await self._flush()
        while self._tasks:
            await self._tasks.popleft()

    def abort(self) -> None:
        """Cancel outstanding writes (used when the import fails)."""
        for t in self._tasks:
            t.cancel()
        self._tasks.clear()
        self._buf.clear()


def _leaf_frame(size: int, leaf_type: DataType) -> tuple[bytes, bytes]:
    """The bytes before and after a chunk in its dag-pb leaf: PBNode{Data: UnixFS{Type, Data, filesize}}."""
    if size == 0:
        return encode_node((), encode_file_leaf(b"", leaf_type)), b""
    head = bytes((0x08, int(leaf_type), 0x12)) + encode_uvarint(size)
    tail = b"\x18" + encode_uvarint(size)
    inner_len = len(head) + size + len(tail)
    return b"\x0a" + encode_uvarint(inner_len) + head, tail


def _encode_leaves(
    chunks: list[bytes], fmt: CidFormat, leaf_type: DataType, keep_blocks: bool
) -> list[tuple[bytes, bytes, int, int]]:
    """Encode and hash a batch of leaves (runs in the thread pool).

    Returns (cid bytes, block or b"" when not kept, block length, file bytes). The chunk is hashed in place
    between its small frame bytes, so only-hash adds never copy it, and the GIL is held only for the frames.
    """
    out: list[tuple[bytes, bytes, int, int]] = []
    if fmt.raw_leaves:
        for c in chunks:
            out.append((fmt.cid_for(RAW, c).bytes, c if keep_blocks else b"", len(c), len(c)))
        return out
    for c in chunks:
        head, tail = _leaf_frame(len(c), leaf_type)
        if fmt.version == 0:
            h = hashlib.sha256(head)
            h.update(c)
            h.update(tail)
            cid_b = b"\x12\x20" + h.digest()
            block = b"".join((head, c, tail)) if keep_blocks else b""
        else:
            block = b"".join((head, c, tail))
            cid_b = fmt.cid_for(DAG_PB, block).bytes
            if not keep_blocks:
                block = b""
        out.append((cid_b, block, len(head) + len(c) + len(tail), len(c)))
    return out


class LeafSource:
    """Leaves in file order, encoded and hashed ahead of use in batches on the thread pool.

    ``done()`` answers kubo's ``db.Done()`` (is there no more data?), ``next()`` its ``NewLeafDataNode``.
    """

    def __init__(
        self,
        chunks: AsyncIterator[bytes],
        fmt: CidFormat,
        writer: BlockWriter,
        leaf_type: DataType,
        *,
        batch: int = 16,
        inflight: int = 3,
        on_bytes: Callable[[int], None] | None = None,
    ) -> None:
        self._chunks = chunks
        self._fmt = fmt
        self._writer = writer
        self._leaf_type = leaf_type
        self._batch = batch
        self._inflight = inflight
        self._on_bytes = on_bytes
        self._exhausted = False
        self._pending: deque[asyncio.Future[list[tuple[bytes, bytes, int, int]]]] = deque()
        self._ready: deque[tuple[bytes, bytes, int, int]] = deque()
        self.bytes_read = 0

    async def _fill(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._exhausted and len(self._pending) < self._inflight:
            batch: list[bytes] = []
            while len(batch) < self._batch:
                try:
                    chunk = await anext(self._chunks)
                except StopAsyncIteration:
                    self._exhausted = True
                    break
                if len(chunk) > BLOCK_SIZE_LIMIT:
                    raise InvalidInput(f"chunk of {len(chunk)} bytes exceeds the block size limit")
                batch.append(chunk)
                self.bytes_read += len(chunk)
            if batch:
                self._pending.append(
                    loop.run_in_executor(
                        hash_executor(), _encode_leaves, batch, self._fmt, self._leaf_type, self._writer.storing
                    )
                )
                if self._on_bytes is not None:
                    self._on_bytes(self.bytes_read)

    async def done(self) -> bool:
        if self._ready:
            return False
        await self._fill()
        if self._pending:
            self._ready.extend(await self._pending.popleft())
            await self._fill()  # keep the pipeline full while the caller works on this batch
        return not self._ready

    async def next(self) -> DagNode:
        if await self.done():
            raise RuntimeError("LeafSource.next() called after the end of data")
        cid_b, block, block_len, size = self._ready.popleft()
        cid = CID(cid_b)
        await self._writer.add(cid, block)
        return DagNode(cid, block_len, size)

    def cancel(self) -> None:
        for f in self._pending:
            f.cancel()
        self._pending.clear()


class FileDagBuilder:
    """Builds internal file nodes (small: hashed inline, microseconds) and the empty-file leaf."""

    def __init__(self, fmt: CidFormat, writer: BlockWriter) -> None:
        self.fmt = fmt
        self.writer = writer

    async def file_node(self, children: list[DagNode]) -> DagNode:
        sizes = [c.filesize for c in children]
        block = encode_node([PBLink(c.cid, "", c.tsize) for c in children], encode_file_node(sizes))
        cid = self.fmt.cid_for(DAG_PB, block)
        await self.writer.add(cid, block)
        return DagNode(cid, len(block) + sum(c.tsize for c in children), sum(sizes))

    async def empty_leaf(self) -> DagNode:
        """kubo ``NewLeafNode(nil, TFile)``: a raw empty block with raw leaves, else an empty File node."""
        if self.fmt.raw_leaves:
            block = b""
            cid = self.fmt.cid_for(RAW, block)
        else:
            block = encode_node((), encode_file_leaf(b"", DataType.FILE))
            cid = self.fmt.cid_for(DAG_PB, block)
        await self.writer.add(cid, block)
        return DagNode(cid, len(block), 0)


async def balanced_layout(src: LeafSource, b: FileDagBuilder) -> DagNode:
    """kubo's balanced layout: grow the root one level at a time, filling each level depth-first."""
    if await src.done():
        return await b.empty_leaf()
    root = await src.next()
    depth = 1
    while not await src.done():
        root = await _balanced_fill(src, b, [root], depth)
        depth += 1
    return root


async def _balanced_fill(src: LeafSource, b: FileDagBuilder, children: list[DagNode], depth: int) -> DagNode:
    while len(children) < MAX_LINKS and not await src.done():
        if depth == 1:
            children.append(await src.next())
        else:
            children.append(await _balanced_fill(src, b, [], depth - 1))
    return await b.file_node(children)


async def trickle_layout(src: LeafSource, b: FileDagBuilder) -> DagNode:
    """kubo's trickle layout: MAX_LINKS leaves, then layers of 4 sub-trickles of growing depth."""
    return await _trickle_fill(src, b, -1)


async def _trickle_fill(src: LeafSource, b: FileDagBuilder, max_depth: int) -> DagNode:
    children: list[DagNode] = []
    while len(children) < MAX_LINKS and not await src.done():
        children.append(await src.next())
    depth = 1
    while max_depth == -1 or depth < max_depth:
        if await src.done():
            break
        repeat = 0
        while repeat < TRICKLE_DEPTH_REPEAT and not await src.done():
            children.append(await _trickle_fill(src, b, depth))
            repeat += 1
        depth += 1
    return await b.file_node(children)
