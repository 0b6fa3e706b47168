"""Blockstore, DAG walk, pins and GC on a real flatfs directory (tmp_path)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from pincluster.errors import InvalidInput, NotFound
from pincluster.ipfs.blockstore import BlockCorrupted, FlatFSBlockstore
from pincluster.ipfs.dag import walk
from pincluster.ipfs.gc import gc
from pincluster.ipfs.pins import PinStore
from pincluster.ipfs.unixfs.importer import AddOptions, ImportEntry, import_bytes, import_entries
from pincluster.types.cid import CID, RAW, sha256_multihash


def raw_block(data: bytes) -> tuple[CID, bytes]:
    return CID.v1(RAW, sha256_multihash(data)), data


async def test_blockstore_put_get_layout_and_stat(tmp_path: Path) -> None:
    bs = FlatFSBlockstore(tmp_path)
    c, d = raw_block(b"hello")
    assert not await bs.has(c)
    await bs.put(c, d)
    await bs.put_many([(c, d), raw_block(b"x"), raw_block(b"x")])
    assert await bs.get(c) == d and await bs.size(c) == 5 and await bs.has(c)
    assert await bs.has(CID(c.multihash))  # keyed by multihash: CIDv0 form of the same hash
    # kubo flatfs layout: blocks/<next-to-last 2 chars>/<BASE32 multihash>.data
    key = base64.b32encode(b"\x12\x20" + hashlib.sha256(b"hello").digest()).decode().rstrip("=")
    assert key.startswith("CIQ")  # as kubo's blocks/ folder names look
    assert (tmp_path / "blocks" / key[-3:-1] / f"{key}.data").read_bytes() == b"hello"
    assert (tmp_path / "blocks" / "SHARDING").read_text().strip() == "/repo/flatfs/shard/v1/next-to-last/2"
    assert await bs.stat() == (2, 6)
    keys = {k async for k in bs.keys()}  # noqa: SIM118
    assert keys == {c, raw_block(b"x")[0]}
    await bs.delete(c)
    with pytest.raises(NotFound):
        await bs.get(c)
    with pytest.raises(NotFound):
        await bs.delete(c)
    with pytest.raises(NotFound):
        await bs.size(c)


async def test_blockstore_detects_corruption_and_cleans_temp(tmp_path: Path) -> None:
    bs = FlatFSBlockstore(tmp_path)
    c, d = raw_block(b"precious")
    await bs.put(c, d)
    path = next((tmp_path / "blocks").glob("*/*.data"))
    path.write_bytes(b"tampered")
    with pytest.raises(BlockCorrupted, match=str(c)):
        await bs.get(c)
    (tmp_path / ".temp" / "partial").write_bytes(b"half a block")
    FlatFSBlockstore(tmp_path)
    assert not list((tmp_path / ".temp").iterdir())
    with pytest.raises(InvalidInput):
        await bs.put_many([(c, b"wrong")], verify=True)


async def test_identity_cid_needs_no_storage(tmp_path: Path) -> None:
    bs = FlatFSBlockstore(tmp_path)
    ident = CID.v1(RAW, b"\x00\x03abc")
    assert await bs.has(ident) and await bs.get(ident) == b"abc"


async def _add(bs: FlatFSBlockstore, data: bytes, name: str = "f", opts: AddOptions | None = None) -> CID:
    return await import_bytes(data, opts or AddOptions(chunker="size-1000"), bs, name)


async def test_walk_depth_and_unique(tmp_path: Path) -> None:
    bs = FlatFSBlockstore(tmp_path)
    data = os.urandom(1000) * 5 + os.urandom(300)  # repeated chunks dedupe
    root = await _add(bs, data)
    all_blocks = [c async for c, _ in walk(bs, root)]
    assert all_blocks[0] == root and len(all_blocks) == 3  # root, the repeated leaf, the tail leaf
    assert len([c async for c, _ in walk(bs, root, unique=False)]) == 7
    assert [c async for c, _ in walk(bs, root, max_depth=0)] == [root]


async def test_pins_kubo_semantics(tmp_path: Path) -> None:
    bs = FlatFSBlockstore(tmp_path / "repo")
    pins = PinStore(tmp_path / "pins.sqlite", bs)
    a = await _add(bs, os.urandom(3500), "a")
    b = await _add(bs, b"small", "b")
    leaf = [c async for c, _ in walk(bs, a)][1]
    await pins.add(a)
    await pins.add(a)  # idempotent
    await pins.add(b, recursive=False)
    with pytest.raises(InvalidInput, match="already pinned recursively"):
        await pins.add(a, recursive=False)
    assert await pins.is_pinned(a) == "recursive"
    assert await pins.is_pinned(b) == "direct"
    assert await pins.is_pinned(leaf) == f"indirect through {a}"
    listed = [(c, t) async for c, t in pins.ls()]
    assert listed[:2] == [(a, "recursive"), (b, "direct")]
    assert {t for _, t in listed[2:]} == {"indirect"} and len(listed) == 2 + 4
    assert [c async for c, _ in pins.ls("direct")] == [b]
    assert [t async for _, t in pins.ls("all", [leaf])] == [f"indirect through {a}"]
    with pytest.raises(NotFound, match="is not pinned"):
        _ = [x async for x in pins.ls("recursive", [b])]
    with pytest.raises(InvalidInput, match="invalid type"):
        _ = [x async for x in pins.ls("bogus")]
    with pytest.raises(InvalidInput, match="pinned recursively"):
        await pins.rm(a, recursive=False)
    with pytest.raises(NotFound, match="not pinned or pinned indirectly"):
        await pins.rm(leaf)
    await pins.rm(b)  # a direct pin goes with recursive=True too
    # update: a -> c, unpinning a
    c = await _add(bs, os.urandom(2000), "c")
    with pytest.raises(InvalidInput, match="not recursively pinned"):
        await pins.update(c, a)
    await pins.update(a, c)
    assert await pins.is_pinned(a) is None and await pins.is_pinned(c) == "recursive"
    results = [r async for r in pins.verify()]
    assert [(r.cid, r.ok) for r in results] == [(c, True)]
    await pins.close()
    # durable across reopen
    pins2 = PinStore(tmp_path / "pins.sqlite", bs)
    assert [x async for x in pins2.ls("recursive")] == [(c, "recursive")]
    await pins2.close()


async def test_pin_add_fetches_through_getter_and_refuses_missing(tmp_path: Path) -> None:
    src = FlatFSBlockstore(tmp_path / "src")
    dst = FlatFSBlockstore(tmp_path / "dst")
    pins = PinStore(tmp_path / "pins.sqlite", dst)
    root = await _add(src, os.urandom(5000))
    with pytest.raises(NotFound):
        await pins.add(root)  # not local and no getter
    assert await pins.is_pinned(root) is None
    seen: list[int] = []
    await pins.add(root, getter=src, progress=seen.append)
    assert seen[-1] == 6 and await dst.stat() == await src.stat()
    await pins.close()


async def test_verify_reports_bad_nodes(tmp_path: Path) -> None:
    bs = FlatFSBlockstore(tmp_path / "repo")
    pins = PinStore(tmp_path / "pins.sqlite", bs)
    root = await _add(bs, os.urandom(3000))
    await pins.add(root)
    leaf = [c async for c, _ in walk(bs, root)][2]
    await bs.delete(leaf)
    (r,) = [r async for r in pins.verify()]
    assert not r.ok and r.bad_nodes[0][0] == leaf and "not found" in r.bad_nodes[0][1]
    await pins.close()


async def test_gc_removes_unpinned_keeps_pinned(tmp_path: Path) -> None:
    bs = FlatFSBlockstore(tmp_path / "repo")
    pins = PinStore(tmp_path / "pins.sqlite", bs)
    kept = await _add(bs, os.urandom(4000), "kept")
    direct = await _add(bs, os.urandom(3000), "direct")
    gone = await _add(bs, os.urandom(2500), "gone")
    await pins.add(kept)
    await pins.add(direct, recursive=False)
    before = {k.multihash async for k in bs.keys()}  # noqa: SIM118
    removed = [(c, e) async for c, e in gc(bs, pins)]
    assert all(e == "" for _, e in removed)
    removed_mh = {c.multihash for c, _ in removed if c is not None}
    kept_mh = {c.multihash async for c, _ in walk(bs, kept)} | {direct.multihash}
    assert removed_mh == before - kept_mh and gone.multihash in removed_mh
    assert {k.multihash async for k in bs.keys()}  # noqa: SIM118 == kept_mh
    assert all(r.ok for r in [r async for r in pins.verify()])
    # a missing pinned block aborts GC before anything is removed
    extra = await _add(bs, b"garbage", "g")
    await bs.delete([c async for c, _ in walk(bs, kept)][1])
    out = [(c, e) async for c, e in gc(bs, pins)]
    assert all(c is None for c, _ in out) and "aborted" in out[-1][1]
    assert await bs.has(extra)
    await pins.close()


async def test_gc_waits_for_add_in_progress(tmp_path: Path) -> None:
    bs = FlatFSBlockstore(tmp_path / "repo")
    pins = PinStore(tmp_path / "pins.sqlite", bs)
    release = asyncio.Event()
    stored = asyncio.Event()

    async def slow_chunks() -> AsyncIterator[bytes]:
        yield os.urandom(300_000)
        stored.set()
        await release.wait()
        yield os.urandom(1000)

    async def entries() -> AsyncIterator[ImportEntry]:
        yield ImportEntry("f", "file", slow_chunks())

    async def add_and_pin() -> CID:
        async with pins.gc_lock.shared():
            last = None
            async for ev in import_entries(entries(), bs, AddOptions(chunker="size-1000")):
                last = ev.cid
            assert last is not None
            await pins.add(last, assume_complete=False)
            return last

    add_task = asyncio.create_task(add_and_pin())
    await stored.wait()
    gc_task = asyncio.create_task(_collect(gc(bs, pins)))
    await asyncio.sleep(0.05)
    assert not gc_task.done()  # blocked by the add's shared lock
    release.set()
    root = await add_task
    removed = await gc_task
    assert removed == [] and await pins.is_pinned(root) == "recursive"
    await pins.close()


async def _collect(it: AsyncIterator[tuple[CID | None, str]]) -> list[tuple[CID | None, str]]:
    return [x async for x in it]


class _Counting:
    def __init__(self, inner: FlatFSBlockstore) -> None:
        self.inner = inner
        self.calls = 0

    async def put_many(self, blocks: Sequence[tuple[CID, bytes]]) -> None:
        self.calls += 1
        await self.inner.put_many(blocks)


async def test_import_batches_writes(tmp_path: Path) -> None:
    sink = _Counting(FlatFSBlockstore(tmp_path))
    await import_bytes(os.urandom(20 << 20), AddOptions(), sink)
    assert 2 <= sink.calls <= 5  # 8 MiB batches, not one write per block


class _LyingGetter:
    """A 'network' getter that returns wrong bytes for one block."""

    def __init__(self, inner: FlatFSBlockstore, bad: CID) -> None:
        self.inner = inner
        self.bad = bad

    async def get(self, cid: CID) -> bytes:
        data = await self.inner.get(cid)
        return data + b"!" if cid == self.bad else data


async def test_pin_add_rejects_corrupt_blocks_from_getter(tmp_path: Path) -> None:
    src = FlatFSBlockstore(tmp_path / "src")
    dst = FlatFSBlockstore(tmp_path / "dst")
    pins = PinStore(tmp_path / "pins.sqlite", dst)
    root = await _add(src, os.urandom(5000))
    leaf = [c async for c, _ in walk(src, root)][3]
    with pytest.raises(BlockCorrupted):
        await pins.add(root, getter=_LyingGetter(src, leaf))
    assert await pins.is_pinned(root) is None and not await dst.has(leaf)
    await pins.close()


def test_links_name_what_could_not_be_done_for_an_unsupported_codec() -> None:
    """One codec dispatch serves walks, exports, verify and refs; each error says which, and names the codec."""
    from pincluster.ipfs.dag import links, named_links
    from pincluster.ipfs.dagpb import PBLink, encode_node
    from pincluster.types.cid import DAG_CBOR, DAG_PB

    leaf = CID.v1(RAW, sha256_multihash(b"leaf"))
    node = encode_node([PBLink(leaf, "a", 4), PBLink(leaf, None, 4)], b"\x08\x01")
    parent = CID.v1(DAG_PB, sha256_multihash(node))
    assert links(parent, node) == [leaf, leaf]
    assert named_links(parent, node) == [(leaf, "a"), (leaf, "")]
    assert links(leaf, b"leaf") == [] and named_links(leaf, b"leaf") == []
    cbor = CID.v1(DAG_CBOR, sha256_multihash(b"\xa0"))
    for doing, call in (("walk", lambda: links(cbor, b"\xa0")), ("export", lambda: links(cbor, b"\xa0", "export")),
                        ("list links of", lambda: named_links(cbor, b"\xa0"))):
        with pytest.raises(InvalidInput) as info:
            call()
        assert str(info.value) == f"cannot {doing} {cbor}: codec dag-cbor is not supported (only dag-pb and raw)"
