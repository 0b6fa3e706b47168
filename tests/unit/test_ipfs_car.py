"""The CAR reader/writer against CAR files made by real kubo (`ipfs dag export`), and the embedded node's
``dag/import`` / ``dag/export`` against the same files."""

from __future__ import annotations

import json
import os
import struct
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from pincluster.ipfs.car import (
    CARV2_PRAGMA,
    CarBlockMismatch,
    CarError,
    CarReader,
    encode_header,
    encode_section,
    export_car,
)
from pincluster.ipfs.config import NodeConfig
from pincluster.ipfs.node import IpfsNode
from pincluster.types.cid import CID
from pincluster.types.multiaddr import Multiaddr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kubo import kubo_cli  # type: ignore[import-not-found]


@dataclass(frozen=True)
class KuboCar:
    root: CID
    car: bytes
    content: bytes


@pytest.fixture(scope="module")
def kubo_cars(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, KuboCar]]:
    """CARs exported by kubo, offline: a 700 kB random file (CIDv0 and CIDv1/raw leaves), 3 MiB of zeros
    (repeated leaves: each block once), a small file and a directory."""
    d = tmp_path_factory.mktemp("kubo-car")
    run = kubo_cli(d / "repo")
    rnd = os.urandom(700_000)
    (d / "rnd.bin").write_bytes(rnd)
    (d / "zero.bin").write_bytes(bytes(3 << 20))
    (d / "hello.txt").write_bytes(b"hello world\n")
    (d / "dir").mkdir()
    (d / "dir" / "a.txt").write_bytes(b"a" * 10)
    (d / "dir" / "b.bin").write_bytes(rnd[:300_000])
    out: dict[str, KuboCar] = {}
    for key, args, content in (
        ("v0", ["rnd.bin"], rnd),
        ("v1", ["--cid-version=1", "rnd.bin"], rnd),
        ("zero", ["zero.bin"], bytes(3 << 20)),
        ("hello", ["hello.txt"], b"hello world\n"),
        ("dir", ["-r", "dir"], b""),
    ):
        root = run("add", "-Q", "--offline", *[a if a.startswith("-") else str(d / a) for a in args]).decode().strip()
        car = run("dag", "export", "--offline", root)
        out[key] = KuboCar(CID.decode(root), car, content)
    yield out


async def chunked(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def read_all(data: bytes, size: int = 65536) -> tuple[CarReader, list[tuple[CID, bytes]]]:
    reader = await CarReader.open(chunked(data, size))
    return reader, [b async for b in reader.blocks()]


def sections(car: bytes) -> list[tuple[int, int]]:
    """(start, end) of each section after the header, by plain varint parsing (to aim corruptions)."""
    from pincluster.types.cid import decode_uvarint

    n, pos = decode_uvarint(car, 0)
    pos += n
    out = []
    while pos < len(car):
        n, p = decode_uvarint(car, pos)
        out.append((pos, p + n))
        pos = p + n
    return out


def carv2(v1: bytes, padding: int = 7, index: bytes = b"\x80\x80\x04some-index") -> bytes:
    data_offset = len(CARV2_PRAGMA) + 40 + padding
    header = bytes(16) + struct.pack("<QQQ", data_offset, len(v1), data_offset + len(v1))
    return CARV2_PRAGMA + header + bytes(padding) + v1 + index


async def test_reads_kubo_cars_in_any_chunking(kubo_cars: dict[str, KuboCar]) -> None:
    for key, kc in kubo_cars.items():
        for size in (1, 7, 1 << 20):
            if size == 1 and len(kc.car) > 100_000:
                continue
            reader, blocks = await read_all(kc.car, size)
            assert reader.header.version == 1 and reader.header.roots == (kc.root,), key
            assert blocks[0][0] == kc.root  # kubo exports depth-first from the root
            assert reader.blocks_read == len(blocks) and reader.bytes_read == sum(len(d) for _, d in blocks)
            assert len({c for c, _ in blocks}) == len(blocks)
    _, zero_blocks = await read_all(kubo_cars["zero"].car)
    assert len(zero_blocks) == 2  # 12 identical leaves are exported once, plus the root
    _, v1_blocks = await read_all(kubo_cars["v1"].car)
    assert {c.codec for c, _ in v1_blocks} == {0x70, 0x55} and v1_blocks[0][0].version == 1


class DictGetter:
    def __init__(self, store: dict[CID, bytes]) -> None:
        self.store = store

    async def get(self, cid: CID) -> bytes:
        return self.store[cid]


async def test_writer_is_byte_identical_to_kubo_dag_export(kubo_cars: dict[str, KuboCar]) -> None:
    for key, kc in kubo_cars.items():
        _, blocks = await read_all(kc.car)
        store = dict(blocks)

        out = b"".join([c async for c in export_car(DictGetter(store), kc.root, batch_bytes=1000)])
        assert out == kc.car, key
        assert encode_header([kc.root]) == kc.car[: len(encode_header([kc.root]))]


async def test_corrupt_block_is_rejected_naming_its_cid(kubo_cars: dict[str, KuboCar]) -> None:
    car = bytearray(kubo_cars["v0"].car)
    _, blocks = await read_all(bytes(car))
    _start, end = sections(bytes(car))[2]
    car[end - 5] ^= 0xFF
    with pytest.raises(CarBlockMismatch, match=str(blocks[2][0])):
        await read_all(bytes(car))
    hello = kubo_cars["hello"].root
    with pytest.raises(CarBlockMismatch, match=str(hello)):
        await read_all(encode_header([hello]) + encode_section(hello, b"hello world!\n"))
    # without verification the same bytes pass (the flag is what protects)
    reader = await CarReader.open(chunked(bytes(car), 4096), verify=False)
    assert len([b async for b in reader.blocks()]) == len(blocks)


async def test_truncated_files_are_rejected(kubo_cars: dict[str, KuboCar]) -> None:
    car = kubo_cars["hello"].car
    for cut in (1, 5, len(car) - 1, len(car) - 15):
        with pytest.raises(CarError, match=r"truncated|not DAG-CBOR"):
            await read_all(car[:cut])
    with pytest.raises(CarError, match="empty"):
        await read_all(b"")
    big = kubo_cars["v0"].car
    with pytest.raises(CarError, match="truncated block"):
        await read_all(big[: len(big) // 2])


async def test_two_roots_and_bad_headers(kubo_cars: dict[str, KuboCar]) -> None:
    a, b = kubo_cars["hello"], kubo_cars["v0"]
    two = encode_header([a.root, b.root]) + a.car[sections(a.car)[0][0]:] + b.car[sections(b.car)[0][0]:]
    reader, blocks = await read_all(two)
    assert reader.header.roots == (a.root, b.root) and len(blocks) == 1 + len(sections(b.car))
    bad_version = bytes.fromhex("0aa16776657273696f6e03")
    with pytest.raises(CarError, match="unsupported CAR version 3"):
        await read_all(bad_version)
    with pytest.raises(CarError, match="not DAG-CBOR"):
        await read_all(b"\x03\xff\xff\xff")
    with pytest.raises(CarError, match="roots"):
        await read_all(bytes.fromhex("0aa16776657273696f6e01"))
    cid = a.root
    with pytest.raises(CarError, match="empty section"):
        await read_all(encode_header([cid]) + b"\x00")
    with pytest.raises(CarError, match="over the"):
        reader = await CarReader.open(chunked(b.car, 4096), max_section=1000)
        _ = [x async for x in reader.blocks()]
    with pytest.raises(CarError, match="bad CID"):
        await read_all(encode_header([cid]) + b"\x05" + b"\x05\x07\x07\x07\x07")  # CID version 5
    with pytest.raises(CarError, match="bad CID"):
        await read_all(encode_header([cid]) + b"\x03\x12\x20\x00")  # a CIDv0 cut short


async def test_car_v2_payload_is_read_and_index_ignored(kubo_cars: dict[str, KuboCar]) -> None:
    kc = kubo_cars["v1"]
    reader, blocks = await read_all(carv2(kc.car), 1000)
    assert reader.header.version == 2 and reader.header.roots == (kc.root,)
    _, plain = await read_all(kc.car)
    assert blocks == plain
    with pytest.raises(CarError, match="truncated"):
        await read_all(carv2(kc.car)[:200])
    v2 = carv2(kc.car, index=b"")
    with pytest.raises(CarError, match="truncated payload"):  # cut exactly at a section boundary
        await read_all(v2[: len(v2) - (sections(kc.car)[-1][1] - sections(kc.car)[-1][0])])
    with pytest.raises(CarError, match="inside the header"):
        await read_all(CARV2_PRAGMA + bytes(16) + struct.pack("<QQQ", 10, 0, 0))


# --- the embedded node's dag/import and dag/export -------------------------------------------------------------
@pytest.fixture
async def node_url(tmp_path: Path) -> AsyncIterator[str]:
    cfg = NodeConfig.generate(api=Multiaddr("/ip4/127.0.0.1/tcp/0"), swarm=[Multiaddr("/ip4/127.0.0.1/tcp/0")])
    cfg.save(tmp_path)
    n = await IpfsNode.open(tmp_path)
    await n.start()
    n.fetch_timeout = 0.5
    assert n.api is not None
    yield n.api.url
    await n.stop()


def car_form(*cars: bytes) -> aiohttp.FormData:
    form = aiohttp.FormData()
    for i, c in enumerate(cars):
        form.add_field("file", c, filename=f"f{i}.car", content_type="application/octet-stream")
    return form


async def post(s: aiohttp.ClientSession, path: str, data: aiohttp.FormData | None = None,
               **params: str) -> tuple[int, bytes]:
    async with s.post(f"/api/v0/{path}", params=params, data=data) as r:
        return r.status, await r.read()


async def test_node_dag_import_export_roundtrip(kubo_cars: dict[str, KuboCar], node_url: str) -> None:
    v0, v1, hello = kubo_cars["v0"], kubo_cars["v1"], kubo_cars["hello"]
    async with aiohttp.ClientSession(base_url=node_url) as s:
        st, body = await post(s, "dag/import", car_form(v0.car, carv2(v1.car)), stats="true")
        assert st == 200, body
        lines = [json.loads(x) for x in body.splitlines()]
        n_blocks = len(sections(v0.car)) + len(sections(v1.car))
        n_bytes = sum(len(d) for _, d in (await read_all(v0.car))[1] + (await read_all(v1.car))[1])
        assert lines == [
            {"Root": {"Cid": {"/": str(v0.root)}, "PinErrorMsg": ""}},
            {"Root": {"Cid": {"/": str(v1.root)}, "PinErrorMsg": ""}},
            {"Stats": {"BlockCount": n_blocks, "BlockBytesCount": n_bytes}},
        ]
        st, body = await post(s, "pin/ls", type="recursive")
        assert st == 200 and str(v0.root) in body.decode() and str(v1.root) in body.decode()
        st, body = await post(s, "cat", arg=str(v1.root))
        assert st == 200 and body == v1.content
        async with s.post("/api/v0/dag/export", params={"arg": str(v0.root)}) as r:
            assert r.status == 200 and await r.read() == v0.car
            assert r.headers["Content-Type"] == "application/vnd.ipld.car" and r.headers["X-Stream-Output"] == "1"
        # pin-roots=false: nothing printed, nothing pinned
        st, body = await post(s, "dag/import", car_form(hello.car), **{"pin-roots": "false"})
        assert st == 200 and body == b""
        st, body = await post(s, "pin/ls", type="recursive")
        assert str(hello.root) not in body.decode()
        # a CAR whose root's blocks are missing: the import works, the pin fails with a message
        partial = v0.car[: sections(v0.car)[1][0]]
        st, body = await post(s, "dag/import", car_form(encode_header([kubo_cars["dir"].root]) + partial[
            sections(v0.car)[0][0]:]))
        line = json.loads(body)
        assert st == 200 and line["Root"]["Cid"]["/"] == str(kubo_cars["dir"].root)
        assert line["Root"]["PinErrorMsg"] == f"ipld: could not find {kubo_cars['dir'].root}"  # kubo's text


async def test_node_dag_import_rejects_corrupt_car(kubo_cars: dict[str, KuboCar], node_url: str) -> None:
    car = bytearray(kubo_cars["hello"].car)
    car[-3] ^= 1
    async with aiohttp.ClientSession(base_url=node_url) as s:
        st, body = await post(s, "dag/import", car_form(bytes(car)))
        msg = json.loads(body)["Message"]
        assert st == 500 and msg.startswith("import failed: ") and str(kubo_cars["hello"].root) in msg
        st, body = await post(s, "dag/import", car_form(bytes(car[:40])))
        assert st == 500 and "import failed: invalid CAR file: truncated" in json.loads(body)["Message"]
        st, body = await post(s, "block/stat", arg=str(kubo_cars["hello"].root))
        assert st != 200  # nothing stored
        st, body = await post(s, "dag/export", arg=str(kubo_cars["hello"].root))
        assert st == 500
