"""HAMT-sharded UnixFS directories, as kubo (boxo ``ipld/unixfs/hamt``) builds them.

kubo switches a directory to a HAMT once the sum of ``len(name) + len(cid)`` over its links exceeds 256 KiB
(boxo's default "links" size estimation). The shard is a 256-way trie keyed by the murmur3-x64-64 hash of
the entry name: byte ``d`` of the big-endian hash picks the slot at depth ``d``. A slot with one entry links
to it directly, named ``"%02X" % slot + name``. A slot with more entries links to a child shard, named
``"%02X" % slot``. For a given set of entries the structure is canonical, so it is built in one pass after
all entries are known.
"""

from __future__ import annotations

import mmh3  # type: ignore[import-not-found,unused-ignore]

from pincluster.errors import InvalidInput
from pincluster.ipfs.dagpb import PBLink, encode_node
from pincluster.ipfs.unixfs.layout import BlockWriter, CidFormat, DagNode
from pincluster.ipfs.unixfs.pb import DataType, UnixFSData
from pincluster.types.cid import DAG_PB

#: kubo's Import.UnixFSHAMTDirectorySizeThreshold default; sharding starts above it (strictly greater).
HAMT_THRESHOLD = 256 * 1024
HAMT_FANOUT = 256
MURMUR3_X64_64 = 0x22


def estimated_size(entries: list[tuple[str, DagNode]]) -> int:
    """boxo's "links" estimate of a basic directory's size: name bytes plus CID bytes per link."""
    return sum(len(name.encode("utf-8")) + len(node.cid.bytes) for name, node in entries)


def name_hash(name: str) -> bytes:
    """The 8-byte big-endian murmur3 x64 (first half of the 128-bit hash, seed 0) of the name's UTF-8."""
    h1, _h2 = mmh3.hash64(name.encode("utf-8"), seed=0, x64arch=True, signed=False)
    return int(h1).to_bytes(8, "big")


async def build_hamt(entries: list[tuple[str, DagNode]], fmt: CidFormat, writer: BlockWriter) -> DagNode:
    """Build the sharded directory for ``entries`` and return its root."""
    items = [(name, node, name_hash(name)) for name, node in entries]
    return await _shard(items, 0, fmt, writer)


async def _shard(
    items: list[tuple[str, DagNode, bytes]], depth: int, fmt: CidFormat, writer: BlockWriter
) -> DagNode:
    if depth >= 8:
        raise InvalidInput("sharded directory too deep (hash collision on every level)")
    slots: dict[int, list[tuple[str, DagNode, bytes]]] = {}
    for item in items:
        slots.setdefault(item[2][depth], []).append(item)
    links: list[PBLink] = []
    bitmap = 0
    total = 0
    for idx in sorted(slots):
        group = slots[idx]
        bitmap |= 1 << idx
        if len(group) == 1:
            name, node, _h = group[0]
            links.append(PBLink(node.cid, f"{idx:02X}{name}", node.tsize))
            total += node.tsize
        else:
            child = await _shard(group, depth + 1, fmt, writer)
            links.append(PBLink(child.cid, f"{idx:02X}", child.tsize))
            total += child.tsize
    data = UnixFSData(
        DataType.HAMT_SHARD,
        data=bitmap.to_bytes((bitmap.bit_length() + 7) // 8, "big"),
        hash_type=MURMUR3_X64_64,
        fanout=HAMT_FANOUT,
    ).encode()
    block = encode_node(links, data)
    cid = fmt.cid_for(DAG_PB, block)
    await writer.add(cid, block)
    return DagNode(cid, len(block) + total, 0)


def shard_entries(links: tuple[PBLink, ...], fanout: int) -> list[tuple[str | None, PBLink]]:
    """Split a shard node's links into ``(entry name, link)`` for values and ``(None, link)`` for child shards."""
    pad = len(f"{fanout - 1:X}")
    out: list[tuple[str | None, PBLink]] = []
    for link in links:
        name = link.name or ""
        if len(name) < pad:
            raise InvalidInput(f"invalid HAMT link name {name!r}")
        out.append((None, link) if len(name) == pad else (name[pad:], link))
    return out
