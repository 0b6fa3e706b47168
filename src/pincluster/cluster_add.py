"""Adding content through the cluster (spec §4.7): build the DAG exactly as ``ipfs add`` does (the embedded
node's UnixFS importer), send every block to each allocated peer's IPFS node, then cluster-pin the root.

Blocks stream: the importer hands over batches, and each batch goes to every destination before the next one
is read, so memory holds one batch whatever the size of the upload.

``format=car`` (spec §4.7 step 5) skips the importer: the single uploaded part is read as a CAR (v1, or the v1
payload of a v2), each block is checked against its CID, and the blocks take the same batched path.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from typing import TYPE_CHECKING

import msgspec

from pincluster.api.interface import AddParams
from pincluster.errors import InvalidInput, PinclusterError, Unavailable
from pincluster.ipfs.car import CarReader
from pincluster.ipfs.dagpb import decode_node
from pincluster.ipfs.unixfs.importer import ImportEntry, import_entries
from pincluster.ipfs.unixfs.pb import decode_data
from pincluster.types.cid import CID, DAG_PB
from pincluster.types.models import AddedOutput, Pin
from pincluster.types.peer import PeerID
from pincluster.types.status import PinMode

if TYPE_CHECKING:
    from pincluster.cluster import Cluster

log = logging.getLogger("pincluster.adder")


class ClusterBlockSink:
    """Sends each batch of blocks to every destination peer's IPFS node (local ones without RPC)."""

    def __init__(self, cluster: Cluster, destinations: Sequence[PeerID]) -> None:
        self.cluster = cluster
        self.destinations = list(destinations)
        self.blocks = 0
        self.bytes = 0

    async def put_many(self, blocks: Sequence[tuple[CID, bytes]]) -> None:
        if not blocks:
            return
        for peer in self.destinations:
            try:
                if peer == self.cluster.peer_id:
                    await self.cluster.ipfs.block_stream(_aiter(blocks))
                else:
                    async for _n in self.cluster.rpc.stream(
                        peer, "IPFSConnector.BlockStream", args=[(c.bytes, d) for c, d in blocks], result_type=int
                    ):
                        pass
            except PinclusterError as exc:
                raise Unavailable(f"adder: cannot send blocks to {peer}: {exc}") from exc
        self.blocks += len(blocks)
        self.bytes += sum(len(d) for _, d in blocks)


async def _aiter(blocks: Sequence[tuple[CID, bytes]]) -> AsyncIterator[tuple[CID, bytes]]:
    for b in blocks:
        yield b


async def add_content(
    cluster: Cluster, entries: AsyncIterable[ImportEntry], params: AddParams
) -> AsyncIterator[AddedOutput]:
    """Import ``entries``; yields AddedOutput events in ``ipfs add`` order; pins the root unless ``no_pin``."""
    if params.format not in ("unixfs", "car"):
        raise InvalidInput("format parameter is invalid")
    if params.format == "car" and params.import_options.wrap_with_directory:
        raise InvalidInput("cannot wrap a CAR file upload")
    if params.shard:
        raise InvalidInput("sharded adds are not supported by pincluster; add without shard=true")
    opts = params.pin_options
    cc = cluster.config.cluster
    rmin = opts.replication_factor_min or cc.replication_factor_min
    rmax = opts.replication_factor_max or cc.replication_factor_max
    if params.local:
        destinations: tuple[PeerID, ...] = (cluster.peer_id,)
    else:
        destinations = await cluster.allocator.block_allocate(
            CID(b"\x12\x20" + bytes(32)), rmin, rmax, priority=opts.user_allocations or ()
        )
    sink = None if params.import_options.only_hash else ClusterBlockSink(cluster, destinations)
    shown = tuple(destinations) if sink is not None else ()  # where the blocks went, as Go shows (rf -1 too)
    root: CID | None = None
    if params.format == "car":
        car_out = await _import_car(entries, sink)
        root = car_out.cid
        yield msgspec.structs.replace(car_out, allocations=shown)
    else:
        async for ev in import_entries(entries, sink, params.import_options):
            if ev.cid is None:
                yield AddedOutput(name=ev.name, bytes=ev.bytes)
                continue
            root = ev.cid
            yield AddedOutput(name=ev.name, cid=ev.cid, size=ev.size, allocations=shown)
    if root is None:
        raise InvalidInput("nothing was added: the request had no files")
    if sink is not None:
        log.info("added %s: %d blocks (%d bytes) sent to %d peers", root, sink.blocks, sink.bytes, len(destinations))
    if params.no_pin or params.import_options.only_hash:
        return
    pin_opts = msgspec.structs.replace(opts, mode=PinMode.RECURSIVE)  # adds are always recursive
    allocations = () if rmin == -1 else tuple(destinations)
    pin = Pin.with_options(root, pin_opts, allocations=allocations)
    await cluster._pin(pin)



_CAR_BATCH_BLOCKS = 64
_CAR_BATCH_BYTES = 4 << 20


async def _import_car(entries: AsyncIterable[ImportEntry], sink: ClusterBlockSink | None) -> AddedOutput:
    """Read the one CAR part and send its verified blocks to ``sink`` in batches (Go's carAdder).

    A batch never mixes hash functions, since one ``block/put`` request carries one ``mhtype``. The event has
    the root, the block bytes and, when the root block is a UnixFS node in the CAR, its file size.
    """
    it = aiter(entries)
    entry = await anext(it, None)
    if entry is None:
        raise InvalidInput("nothing was added: the request had no files")
    if entry.kind != "file" or entry.chunks is None:
        raise InvalidInput("expected CAR file is not of type file")
    car = await CarReader.open(entry.chunks)
    if len(car.header.roots) != 1:
        raise InvalidInput("only CAR files with a single root are supported")
    root = car.header.roots[0]
    size = 0
    batch: list[tuple[CID, bytes]] = []
    batch_bytes = 0
    async for cid, data in car.blocks():
        if cid == root:
            size = _unixfs_file_size(cid, data)
        if batch and (batch_bytes >= _CAR_BATCH_BYTES or len(batch) >= _CAR_BATCH_BLOCKS
                      or batch[0][0].hash_code != cid.hash_code):
            if sink is not None:
                await sink.put_many(batch)
            batch, batch_bytes = [], 0
        batch.append((cid, data))
        batch_bytes += len(data)
    if batch and sink is not None:
        await sink.put_many(batch)
    if await anext(it, None) is not None:
        raise InvalidInput("only a single CAR file can be added per request (the upload had more than one part)")
    return AddedOutput(name=entry.path, cid=root, bytes=car.bytes_read, size=size)


def _unixfs_file_size(cid: CID, data: bytes) -> int:
    """The UnixFS file size of a dag-pb root (0 for directories, raw blocks and other codecs, as in Go)."""
    if cid.codec != DAG_PB:
        return 0
    try:
        node = decode_node(data)
        return decode_data(node.data).filesize or 0 if node.data is not None else 0
    except InvalidInput:
        return 0
