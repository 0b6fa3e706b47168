"""Adding content through the cluster (spec §4.7): build the DAG exactly as ``ipfs add`` does (the embedded
node's UnixFS importer), send every block to each allocated peer's IPFS node, then cluster-pin the root.

Blocks stream: the importer hands over batches, and each batch goes to every destination before the next one
is read, so memory holds one batch whatever the size of the upload.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from typing import TYPE_CHECKING

import msgspec

from pincluster.api.interface import AddParams
from pincluster.errors import InvalidInput, PinclusterError, Unavailable
from pincluster.ipfs.unixfs.importer import ImportEntry, import_entries
from pincluster.types.cid import CID
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
    if params.format != "unixfs":
        raise InvalidInput("format parameter is invalid: pincluster imports unixfs content only (CAR: not yet)")
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
    shown = tuple(destinations) if sink is not None and rmin != -1 else ()
    root: CID | None = None
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

