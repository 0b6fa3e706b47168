"""UnixFS importer/exporter: kubo CID vectors, options, layouts, cat/get/ls."""

from __future__ import annotations

import hashlib
import io
import itertools
import random
import tarfile
from collections.abc import AsyncIterator, Sequence

import pytest
from tests.vectors import VECTORS, content, gen

from pincluster.errors import InvalidInput, NotFound
from pincluster.ipfs.dagpb import PBLink, decode_node, encode_node
from pincluster.ipfs.unixfs.exporter import NotAFile, cat, get_tar, lookup, ls
from pincluster.ipfs.unixfs.importer import AddEvent, AddOptions, ImportEntry, import_bytes, import_entries
from pincluster.ipfs.unixfs.layout import MAX_LINKS
from pincluster.ipfs.unixfs.pb import DataType, UnixFSData, decode_data
from pincluster.types.cid import CID, RAW


class MemStore:
    """In-memory block sink/getter that checks hashes like the real store."""

    def __init__(self) -> None:
        self.blocks: dict[bytes, bytes] = {}
        self.puts = 0

    async def put_many(self, blocks: Sequence[tuple[CID, bytes]]) -> None:
        self.puts += 1
        for c, d in blocks:
            self.blocks[c.multihash] = d

    async def get(self, cid: CID) -> bytes:
        try:
            return self.blocks[cid.multihash]
        except KeyError:
            raise NotFound(f"ipld: could not find {cid}") from None


async def pieces(data: bytes, sizes: Sequence[int] = (65536,)) -> AsyncIterator[bytes]:
    pos = 0
    i = 0
    while pos < len(data):
        n = sizes[i % len(sizes)]
        yield data[pos : pos + n]
        pos += n
        i += 1


async def run(entries: list[ImportEntry], opts: AddOptions, sink: MemStore | None = None) -> list[AddEvent]:
    async def gen_entries() -> AsyncIterator[ImportEntry]:
        for e in entries:
            yield e

    return [ev async for ev in import_entries(gen_entries(), sink, opts)]


@pytest.mark.parametrize("name", list(VECTORS["files"]))
async def test_file_vectors_v0_and_v1(name: str) -> None:
    v = VECTORS["files"][name]
    data = content(v["content"])
    assert len(data) == v["size"] and hashlib.sha256(data).hexdigest() == v["sha256"]
    assert str(await import_bytes(data)) == v["cid"]
    assert str(await import_bytes(data, AddOptions(cid_version=1))) == v["cidv1_rawleaves_js_ipfs_only"]


async def test_input_piece_sizes_do_not_change_cid() -> None:
    data = gen(1048576)
    want = VECTORS["files"]["one_mib"]["cid"]
    for sizes in ((1,), (7, 100000), (262144,), (1 << 20,), (300000, 5)):
        small = data if sizes != (1,) else data[:3000]
        events = await run([ImportEntry("f", "file", pieces(small, sizes))], AddOptions())
        if sizes != (1,):
            assert str(events[-1].cid) == want
        else:
            assert events[-1].cid == await import_bytes(small)


async def test_directory_tree_vector_and_kubo_event_order() -> None:
    tree = VECTORS["directories"]["dir_tree"]
    entries = [ImportEntry("dir_tree", "dir")]
    for path, spec in sorted(tree["entries"].items()):
        if spec == "empty directory":
            entries.append(ImportEntry("dir_tree/" + path.rstrip("/"), "dir"))
        else:
            entries.append(ImportEntry("dir_tree/" + path, "file", pieces(content(spec))))
    store = MemStore()
    events = await run(entries, AddOptions(), store)
    got = {ev.name: str(ev.cid) for ev in events}
    assert got["dir_tree"] == tree["cid"]
    for child, cid in tree["children_cids"].items():
        assert got["dir_tree/" + child] == cid, child
    # kubo prints files as added, then directories post-order (sorted), root last
    assert [ev.name for ev in events] == [
        "dir_tree/a.txt", "dir_tree/b.bin", "dir_tree/empty.txt", "dir_tree/sub/c.bin", "dir_tree/sub/d.bin",
        "dir_tree/sub/emptydir", "dir_tree/sub", "dir_tree",
    ]
    # exporter: ls and get round-trip
    root = CID.decode(tree["cid"])
    names = [(lk.name, lk.type) async for lk in ls(store, root)]
    assert names == [("a.txt", 2), ("b.bin", 2), ("empty.txt", 2), ("sub", 1)]
    tar_bytes = b"".join([c async for c in get_tar(store, root, "out")])
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tf:
        members = {m.name: m for m in tf.getmembers()}
        assert members["out/sub/emptydir"].isdir()
        f = tf.extractfile("out/sub/d.bin")
        assert f is not None and f.read() == gen(262145)
        f = tf.extractfile("out/a.txt")
        assert f is not None and f.read() == b"hello world\n"


async def test_hidden_and_wrap_with_directory() -> None:
    def entries() -> list[ImportEntry]:
        return [ImportEntry("d", "dir"), ImportEntry("d/.secret", "file", pieces(b"x")),
                ImportEntry("d/a", "file", pieces(b"a"))]

    no_hidden = await run(entries(), AddOptions())
    with_hidden = await run(entries(), AddOptions(hidden=True))
    assert [e.name for e in no_hidden] == ["d/a", "d"]
    assert [e.name for e in with_hidden] == ["d/.secret", "d/a", "d"]
    assert no_hidden[-1].cid != with_hidden[-1].cid
    wrapped = await run([ImportEntry("hello.txt", "file", pieces(b"hello world\n"))],
                        AddOptions(wrap_with_directory=True))
    assert [e.name for e in wrapped] == ["hello.txt", ""]
    assert str(wrapped[0].cid) == "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
    store = MemStore()
    await run([ImportEntry("hello.txt", "file", pieces(b"hello world\n"))],
              AddOptions(wrap_with_directory=True), store)
    wrapper = wrapped[1].cid
    assert wrapper is not None
    node = decode_node(store.blocks[wrapper.multihash])
    assert [(lk.name, str(lk.cid), lk.tsize) for lk in node.links] == [
        ("hello.txt", "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o", 20)]
    assert wrapped[1].size == len(store.blocks[wrapper.multihash]) + 20


async def test_unnamed_file_is_named_by_its_cid() -> None:
    events = await run([ImportEntry("", "file", pieces(b"hello world\n"))], AddOptions())
    assert events[-1].name == "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"


async def test_only_hash_stores_nothing_and_progress_events() -> None:
    store = MemStore()
    data = gen(3 * 262144 * 16 + 5)
    evs = await run([ImportEntry("f", "file", pieces(data))], AddOptions(only_hash=True, progress=True), store)
    assert store.blocks == {}
    progress = [e for e in evs if e.cid is None]
    assert progress and progress[-1].bytes == len(data)
    assert all(a.bytes < b.bytes for a, b in itertools.pairwise(progress))
    assert evs[-1].cid is not None and evs[-1].size > len(data)
    stored = await run([ImportEntry("f", "file", pieces(data))], AddOptions(), store)
    assert stored[-1].cid == evs[-1].cid and store.blocks


async def test_cat_offsets_and_raw_leaves_and_hashes() -> None:
    rnd = random.Random(7)
    data = rnd.randbytes(2 * 1024 * 1024 + 12345)
    for opts in (AddOptions(), AddOptions(cid_version=1), AddOptions(chunker="size-1000", trickle=True),
                 AddOptions(cid_version=1, hash="blake2b-256"), AddOptions(cid_version=1, hash="blake3"),
                 AddOptions(raw_leaves=True), AddOptions(chunker="size-4096")):
        store = MemStore()
        root = await import_bytes(data, opts, store)
        if opts.hash == "blake2b-256":
            assert root.hash_code == 0xB220 and root.version == 1
        assert b"".join([c async for c in cat(store, root)]) == data
        for off, ln in ((0, 10), (262143, 2), (262144, 262144 * 3 + 1), (len(data) - 3, 100), (len(data), 5),
                        (5, None), (1_000_000, 0)):
            got = b"".join([c async for c in cat(store, root, off, ln)])
            assert got == data[off : None if ln is None else off + ln], (opts, off, ln)


async def test_cat_of_directory_and_missing_block() -> None:
    store = MemStore()
    events = await run([ImportEntry("d/x", "file", pieces(b"x"))], AddOptions(), store)
    with pytest.raises(NotAFile, match="directory"):
        _ = [c async for c in cat(store, events[-1].cid)]  # type: ignore[arg-type]
    with pytest.raises(NotFound):
        _ = [c async for c in cat(MemStore(), events[0].cid)]  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        _ = [c async for c in cat(store, events[0].cid, -1)]  # type: ignore[arg-type]


def _verify_trickle(store: MemStore, cid: CID, depth: int, raw: bool) -> int:
    """boxo's VerifyTrickleDagStructure: 174 direct leaves, then layers of 4 sub-trees of growing depth."""
    block = store.blocks[cid.multihash]
    if depth == 0:
        if raw:
            assert cid.codec == RAW
            return len(block)
        fs = decode_data(decode_node(block).data or b"")
        assert fs.type == DataType.RAW
        return len(fs.data or b"")
    node = decode_node(block)
    fs = decode_data(node.data or b"")
    assert fs.type == DataType.FILE and not fs.data
    total = 0
    for i, link in enumerate(node.links):
        if i < MAX_LINKS:
            sub = _verify_trickle(store, link.cid, 0, raw)
        else:
            rdepth = (i - MAX_LINKS) // 4 + 1
            assert depth < 0 or rdepth < depth
            sub = _verify_trickle(store, link.cid, rdepth, raw)
        assert fs.blocksizes[i] == sub
        total += sub
    return total


@pytest.mark.parametrize("raw", [False, True])
async def test_trickle_structure(raw: bool) -> None:
    data = random.Random(1).randbytes(1000 * (MAX_LINKS + 4 * 174 * 2 + 37))
    store = MemStore()
    root = await import_bytes(data, AddOptions(chunker="size-1000", trickle=True, raw_leaves=raw), store)
    assert _verify_trickle(store, root, -1, raw) == len(data)
    balanced = await import_bytes(data, AddOptions(chunker="size-1000", raw_leaves=raw))
    assert balanced != root


async def test_balanced_shape_three_levels() -> None:
    # 174*174 + 1 leaves needs depth 3; check shape and blocksizes against kubo's algorithm
    data = bytes(range(256)) * ((MAX_LINKS * MAX_LINKS + 1) * 16 // 256 + 1)
    data = data[: (MAX_LINKS * MAX_LINKS + 1) * 16]
    store = MemStore()
    root = await import_bytes(data, AddOptions(chunker="size-16", raw_leaves=True, cid_version=1), store)
    node = decode_node(store.blocks[root.multihash])
    assert len(node.links) == 2
    fs = decode_data(node.data or b"")
    assert fs.blocksizes == (MAX_LINKS * MAX_LINKS * 16, 16) and fs.filesize == len(data)
    second = decode_node(store.blocks[node.links[1].cid.multihash])
    assert len(second.links) == 1  # kubo wraps the lone last leaf in a depth-2 chain
    assert b"".join([c async for c in cat(store, root)]) == data


def test_add_options_from_kubo_args() -> None:
    o = AddOptions.from_kubo_args({"cid-version": "1", "raw-leaves": "False", "trickle": "TRUE",
                                   "chunker": "size-1024", "only-hash": "true", "wrap-with-directory": "1",
                                   "pin": "false", "progress": "true", "unknown": "x"})
    assert (o.cid_version, o.raw_leaves, o.trickle, o.chunker, o.only_hash, o.wrap_with_directory, o.pin,
            o.progress) == (1, False, True, "size-1024", True, True, False, True)
    assert not o.effective_raw_leaves
    assert AddOptions.from_kubo_args({"hash": "blake2b-256"}).cid_version == 1
    assert AddOptions.from_kubo_args({}).effective_raw_leaves is False
    for bad in ({"hash": "md5"}, {"chunker": "size-0"}, {"chunker": "size-2097000"}, {"chunker": "rabin-10"},
                {"chunker": "fastcdc"}, {"chunker": "rabin-100-50-200"}, {"chunker": "rabin-min:20-max:30-avg:40"},
                {"cid-version": "2"}, {"trickle": "maybe"}, {"inline": "true"}, {"hash": "blake3", "cid-version": "0"}):
        with pytest.raises(InvalidInput):
            AddOptions.from_kubo_args(bad)


def test_dagpb_round_trip_and_errors() -> None:
    c = CID.decode("QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o")
    raw = encode_node([PBLink(c, "a", 20), PBLink(c, None, None)], b"\x08\x01")
    assert raw.index(b"\x0a\x02\x08\x01") > raw.index(c.bytes)  # links before data
    node = decode_node(raw)
    assert node.links == (PBLink(c, "a", 20), PBLink(c, None, None)) and node.data == b"\x08\x01"
    for bad in (b"\x0a\x05ab", b"\x12\x03\x18\x01\x00", b"\x1a\x00", b"\x0a\x00\x12\x00", b"\xff"):
        with pytest.raises(InvalidInput):
            decode_node(bad)
    fs = UnixFSData(DataType.FILE, b"xy", 2, (1, 1), mtime=(5, 7))
    assert decode_data(fs.encode()) == fs


async def test_import_memory_is_flat() -> None:
    import tracemalloc

    size = 96 << 20

    async def lazy() -> AsyncIterator[bytes]:
        block = random.Random(3).randbytes(1 << 20)
        for i in range(size >> 20):
            yield bytes([i & 0xFF]) + block[1:]

    tracemalloc.start()
    try:
        events = await run([ImportEntry("big", "file", lazy())], AddOptions(only_hash=True))
        _cur, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert events[-1].cid is not None
    assert peak < 32 << 20, f"peak {peak >> 20} MiB for a {size >> 20} MiB file"


def _slow_buzhash_cut(buf: bytes) -> int:
    """A direct, byte-at-a-time port of boxo's buzhash loop, to check the vectorized search against."""
    from pincluster.ipfs.unixfs import buzhash as bz

    table = bz._TABLE
    i = bz.BUZ_MIN - 32
    state = 0
    for j in range(i, bz.BUZ_MIN):
        state = (((state << 1) | (state >> 31)) & 0xFFFFFFFF) ^ table[buf[j]]
    last = len(buf) - 33
    while i <= last:
        if state & bz.BUZ_MASK == 0:
            break
        state = (((state << 1) | (state >> 31)) & 0xFFFFFFFF) ^ table[buf[i]] ^ table[buf[i + 32]]
        i += 1
    return i + 32


def test_buzhash_cut_matches_reference_loop() -> None:
    from pincluster.ipfs.unixfs.buzhash import BUZ_MAX, BUZ_MIN, buzhash_cut

    rnd = random.Random(11)
    cuts = set()
    for size in (BUZ_MIN, BUZ_MIN + 1, BUZ_MIN + 33, 200_000, 300_000, BUZ_MAX, BUZ_MAX, BUZ_MAX):
        buf = rnd.randbytes(size)
        cut = buzhash_cut(buf)
        assert cut == _slow_buzhash_cut(buf), size
        cuts.add(cut == size)
    assert cuts == {True, False}  # both "boundary found" and "no boundary" cases were exercised
    assert buzhash_cut(bytes(BUZ_MAX)) == _slow_buzhash_cut(bytes(BUZ_MAX)) == BUZ_MIN  # zeros: every window is 0


async def test_buzhash_chunks_cover_input_and_respect_limits() -> None:
    from pincluster.ipfs.unixfs.buzhash import BUZ_MAX, BUZ_MIN, buzhash_chunks

    data = random.Random(12).randbytes(3_000_000)
    chunks = [c async for c in buzhash_chunks(pieces(data, (70_000, 1_000_000)))]
    assert b"".join(chunks) == data
    assert all(BUZ_MIN <= len(c) <= BUZ_MAX for c in chunks[:-1]) and 0 < len(chunks[-1]) <= BUZ_MAX
    assert [c async for c in buzhash_chunks(pieces(b""))] == []


def _many(n: int) -> list[ImportEntry]:
    # 200-byte names: 234 bytes per link with CIDv0, so 1120 links (262080) stay basic and 1121 shard
    out = [ImportEntry("d", "dir")]
    for i in range(n):
        out.append(ImportEntry(f"d/{i:04d}-{'n' * 195}", "file", pieces(b"%d" % (i % 5))))
    return out


async def test_hamt_threshold_and_export() -> None:
    store = MemStore()
    basic = await run(_many(1120), AddOptions(), store)
    sharded = await run(_many(1121), AddOptions(), store)
    basic_root, hamt_root = basic[-1].cid, sharded[-1].cid
    assert basic_root is not None and hamt_root is not None
    assert decode_data(decode_node(store.blocks[basic_root.multihash]).data or b"").type == DataType.DIRECTORY
    root_node = decode_node(store.blocks[hamt_root.multihash])
    fs = decode_data(root_node.data or b"")
    assert (fs.type, fs.fanout, fs.hash_type) == (DataType.HAMT_SHARD, 256, 0x22)
    assert all(len(lk.name or "") >= 2 for lk in root_node.links)
    listed = [lk async for lk in ls(store, hamt_root)]
    want = {e.path[2:] for e in _many(1121)[1:]}
    assert {lk.name for lk in listed} == want and len(listed) == 1121
    assert all(lk.type == 2 for lk in listed)
    by_name = {lk.name: lk.cid for lk in listed}
    for name in sorted(want)[::97]:  # found by the name's hash, level by level, as kubo finds it
        assert await lookup(store, hamt_root, name) == by_name[name]
    assert await lookup(store, hamt_root, "0007-" + "n" * 194) is None
    assert await lookup(store, basic_root, sorted(want)[3]) == by_name[sorted(want)[3]]
    tar_bytes = b"".join([c async for c in get_tar(store, hamt_root, "d")])
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tf:
        names = [m.name for m in tf.getmembers() if m.isfile()]
        assert len(names) == 1121
        member = tf.extractfile(f"d/0007-{'n' * 195}")
        assert member is not None and member.read() == b"2"


def _slow_rabin_chunks(data: bytes, mn: int, avg: int, mx: int) -> list[int]:
    """A direct port of whyrusleeping/chunker's loop (window reset with byte 1, min−16 bytes skipped)."""
    from pincluster.ipfs.unixfs.rabin import RABIN_POLY, _pol_mod

    deg = RABIN_POLY.bit_length() - 1
    shift = deg - 8
    out_t = [_pol_mod(b << (8 * 15), RABIN_POLY) for b in range(256)]
    mod_t = [_pol_mod(b << deg, RABIN_POLY) | (b << deg) for b in range(256)]
    mask = (1 << (avg.bit_length() - 1)) - 1
    sizes = []
    pos = 0
    while pos < len(data):
        window = [0] * 16
        window[0] = 1
        wpos = 1
        digest = 1  # slide(1) on a zero digest
        add = min(mn - 16, len(data) - pos)
        cut = None
        while pos + add < len(data):
            b = data[pos + add]
            digest ^= out_t[window[wpos]]
            window[wpos] = b
            wpos = (wpos + 1) % 16
            index = digest >> shift
            digest = ((digest << 8) | b) ^ mod_t[index]
            add += 1
            if add >= mn and ((digest & mask) == 0 or add >= mx):
                cut = add
                break
        sizes.append(cut if cut is not None else len(data) - pos)
        pos += sizes[-1]
    return sizes


async def test_rabin_chunks_match_reference_loop() -> None:
    from pincluster.ipfs.unixfs.rabin import rabin_chunks

    data = random.Random(13).randbytes(300_000) + bytes(50_000)
    want = _slow_rabin_chunks(data, 1000, 16384, 20000)
    got = [len(c) async for c in rabin_chunks(pieces(data, (77_777,)), 1000, 16384, 20000)]
    assert got == want and len(set(got)) > 3 and 20000 in got


async def test_lookup_follows_named_links_of_a_dag_pb_node_that_is_not_unixfs() -> None:
    store = MemStore()
    leaf = CID.v0(hashlib.sha256(b"leaf").digest())
    for data in (None, b"\xff\xffnot unixfs"):
        block = encode_node([PBLink(leaf, "child", 4)], data)
        root = CID.v0(hashlib.sha256(block).digest())
        await store.put_many([(root, block)])
        assert await lookup(store, root, "child") == leaf
        assert await lookup(store, root, "other") is None
