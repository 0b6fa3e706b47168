"""The kubo RPC API of one in-process node (real storage in tmp_path, HTTP on 127.0.0.1:0)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from pincluster.ipfs.config import NodeConfig
from pincluster.ipfs.node import IpfsNode
from pincluster.types.cid import CID
from pincluster.types.multiaddr import Multiaddr

HELLO_CID = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"  # kubo: `echo "hello world" | ipfs add`


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[IpfsNode]:
    cfg = NodeConfig.generate(api=Multiaddr("/ip4/127.0.0.1/tcp/0"), swarm=[Multiaddr("/ip4/127.0.0.1/tcp/0")])
    cfg.save(tmp_path)
    n = await IpfsNode.open(tmp_path)
    await n.start()
    n.fetch_timeout = 0.5
    yield n
    await n.stop()


@pytest.fixture
async def http(node: IpfsNode) -> AsyncIterator[Client]:
    assert node.api is not None
    async with aiohttp.ClientSession(base_url=node.api.url) as s:
        yield Client(s)


class Client:
    def __init__(self, s: aiohttp.ClientSession) -> None:
        self.s = s

    async def post(self, path: str, params: Any = None, data: Any = None) -> tuple[int, bytes, Any]:
        async with self.s.post(f"/api/v0/{path}", params=params, data=data) as r:
            return r.status, await r.read(), r.headers

    async def ok(self, path: str, params: Any = None, data: Any = None) -> Any:
        status, body, _ = await self.post(path, params, data)
        assert status == 200, body
        return json.loads(body)

    async def lines(self, path: str, params: Any = None, data: Any = None) -> list[Any]:
        status, body, _ = await self.post(path, params, data)
        assert status == 200, body
        return [json.loads(x) for x in body.splitlines() if x.strip()]


def files(*entries: tuple[str, bytes | None]) -> aiohttp.MultipartWriter:
    """go-ipfs-files multipart: (path, None) is a directory."""
    w = aiohttp.MultipartWriter("form-data")
    for path, data in entries:
        if data is None:
            part = w.append(b"", {"Content-Type": "application/x-directory"})
        else:
            part = w.append(data, {"Content-Type": "application/octet-stream"})
        part.headers["Content-Disposition"] = f'form-data; name="file"; filename="{path.replace("/", "%2F")}"'
    return w


async def test_version_id_and_conventions(http: Client, node: IpfsNode) -> None:
    v = await http.ok("version")
    assert v["Version"] == "0.32.0" and set(v) == {"Version", "Commit", "Repo", "System", "Golang"}
    ident = await http.ok("id")
    assert ident["ID"] == str(node.peer_id)
    assert "pincluster" in ident["AgentVersion"]
    assert all(a.endswith(f"/p2p/{node.peer_id}") and a.startswith("/ip4/127.0.0.1/tcp/") for a in ident["Addresses"])
    async with http.s.get("/api/v0/version") as r:
        assert r.status == 405
    status, body, _ = await http.post("no/such/command")
    assert status == 404 and body == b"404 page not found\n"
    status, body, _ = await http.post("cat")
    assert status == 400 and json.loads(body) == {"Message": 'argument "ipfs-path" is required', "Code": 1,
                                                  "Type": "error"}
    status, body, _ = await http.post("pin/ls", {"stream": "maybe"})
    assert status == 400 and "boolean" in json.loads(body)["Message"]


async def test_add_cat_and_pin_default(http: Client) -> None:
    out = await http.lines("add", data=files(("hello.txt", b"hello world\n")))
    assert out == [{"Name": "hello.txt", "Hash": HELLO_CID, "Size": "20"}]
    status, body, headers = await http.post("cat", {"arg": HELLO_CID})
    assert status == 200 and body == b"hello world\n" and headers["X-Stream-Output"] == "1"
    status, body, _ = await http.post("cat", {"arg": f"/ipfs/{HELLO_CID}", "offset": "6", "length": "5"})
    assert body == b"world"
    pins = await http.lines("pin/ls", {"stream": "True", "arg": HELLO_CID})
    assert pins == [{"Cid": HELLO_CID, "Type": "recursive"}]


async def test_add_directory_progress_and_flags(http: Client) -> None:
    big = os.urandom(300_000)
    body = files(("d", None), ("d/a.txt", b"a"), ("d/sub", None), ("d/sub/big.bin", big))
    out = await http.lines("add", {"progress": "1", "pin": "false", "cid-version": "1"}, body)
    progress = [o for o in out if "Hash" not in o]
    final = [o for o in out if "Hash" in o]
    assert progress and all("Bytes" in o for o in progress)
    assert [o["Name"] for o in final][-1] == "d"
    assert all(o["Hash"].startswith("bafy") or o["Hash"].startswith("bafk") for o in final)
    assert await http.lines("pin/ls", {"stream": "true"}) == []  # pin=false
    root = final[-1]["Hash"]
    status, data, _ = await http.post("cat", {"arg": f"/ipfs/{root}/sub/big.bin"})
    assert status == 200 and data == big
    res = await http.ok("resolve", {"arg": f"/ipfs/{root}/a.txt"})
    assert res["Path"].startswith("/ipfs/bafk")
    # --only-hash stores nothing
    before = (await http.ok("repo/stat"))["NumObjects"]
    only = await http.lines("add", {"only-hash": "true"}, files(("x", os.urandom(1000))))
    assert len(only) == 1 and (await http.ok("repo/stat"))["NumObjects"] == before
    # get: a tar with the tree
    status, tar_bytes, headers = await http.post("get", {"arg": root})
    assert status == 200 and headers["Content-Type"] == "application/x-tar"
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tf:
        names = tf.getnames()
        member = tf.extractfile(f"{root}/sub/big.bin")
        assert member is not None and member.read() == big
    assert f"{root}/a.txt" in names


async def test_block_commands(http: Client) -> None:
    w = files(("b1", b"block one"), ("b2", b"block two"))
    put = await http.lines("block/put", {"pin": "true"}, w)
    assert [p["Size"] for p in put] == [9, 9]
    k1 = put[0]["Key"]
    assert k1.startswith("bafkrei")  # raw codec, CIDv1, as kubo's default
    v0 = await http.lines("block/put", {"format": "v0"}, files(("n", b"\x0a\x02\x08\x01")))
    assert v0[0]["Key"].startswith("Qm")
    status, body, _ = await http.post("block/get", {"arg": k1})
    assert body == b"block one"
    assert await http.ok("block/stat", {"arg": k1}) == {"Key": k1, "Size": 9}
    rm = await http.lines("block/rm", {"arg": k1})
    assert rm == [{"Hash": k1, "Error": "pinned: recursive"}]
    await http.ok("pin/rm", {"arg": k1})
    assert await http.lines("block/rm", {"arg": k1}) == [{"Hash": k1}]
    big = os.urandom((1 << 20) + 1)
    status, body, _ = await http.post("block/put", data=files(("big", big)))
    assert status == 400
    assert "allow-big-block" in json.loads(body)["Message"]
    ok = await http.lines("block/put", {"allow-big-block": "true"}, files(("big", big)))
    assert ok[0]["Size"] == len(big)


async def test_pin_lifecycle_refs_and_gc(http: Client) -> None:
    a = (await http.lines("add", {"pin": "false"}, files(("a", os.urandom(600_000)))))[-1]["Hash"]
    b = (await http.lines("add", {"pin": "false"}, files(("b", b"bbb"))))[-1]["Hash"]
    res = await http.lines("pin/add", {"arg": a, "progress": "true"})
    assert res[-1] == {"Pins": [a]}
    refs = await http.lines("refs", {"arg": a, "recursive": "true"})
    assert len(refs) == 3 and all(r["Err"] == "" for r in refs)
    keyed = await http.ok("pin/ls")
    assert keyed["Keys"][a] == {"Type": "recursive", "Name": ""}  # kubo 0.42's PinLsType
    assert sum(1 for v in keyed["Keys"].values() if v["Type"] == "indirect") == 3
    only_rec = await http.lines("pin/ls", {"stream": "true", "type": "recursive"})
    assert only_rec == [{"Cid": a, "Type": "recursive"}]
    status, body, _ = await http.post("pin/ls", {"arg": b, "stream": "true"})
    assert status == 500 and json.loads(body)["Message"].endswith("is not pinned")
    assert await http.lines("pin/verify", {"verbose": "true"}) == [{"Cid": a, "Ok": True}]
    upd = await http.ok("pin/update", [("arg", a), ("arg", b)])
    assert upd == {"Pins": [a, b]}
    assert await http.lines("pin/ls", {"stream": "true", "type": "recursive"}) == [{"Cid": b, "Type": "recursive"}]
    status, body, _ = await http.post("pin/rm", {"arg": a})
    assert status == 500 and "not pinned" in json.loads(body)["Message"]
    # GC removes a's 4 blocks, keeps pinned b.
    gc = await http.lines("repo/gc")
    assert len(gc) == 4 and all("/" in g["Key"] for g in gc)
    status, body, _ = await http.post("cat", {"arg": b})
    assert body == b"bbb"
    local = await http.lines("refs/local")
    assert len(local) == 1


async def test_dag_get_config_and_swarm(http: Client, node: IpfsNode) -> None:
    await http.lines("add", data=files(("hello.txt", b"hello world\n")))
    status, body, _ = await http.post("dag/get", {"arg": HELLO_CID})
    assert json.loads(body) == {"Data": {"/": {"bytes": "CAISDGhlbGxvIHdvcmxkChgM"}}, "Links": []}
    cfg = await http.ok("config/show")
    assert "PrivKey" not in cfg["Identity"] and cfg["Identity"]["PeerID"] == str(node.peer_id)
    assert (await http.ok("config", {"arg": "Datastore.StorageMax"}))["Value"] == "10GB"
    status, body, _ = await http.post("config", {"arg": "Identity.PrivKey"})
    assert status == 500
    assert await http.ok("swarm/peers") == {"Peers": []}
    local = await http.ok("swarm/addrs/local", {"id": "true"})
    assert local["Strings"][0].endswith(str(node.peer_id))
    assert (await http.ok("repo/version")) == {"Version": "16"}
    status, body, _ = await http.post("swarm/connect", {"arg": "/ip4/127.0.0.1/tcp/1/p2p/" + str(node.peer_id)})
    assert status == 500 and json.loads(body)["Message"].startswith(f"connect {node.peer_id} failure")
    stat = await http.ok("repo/stat", {"size-only": "true"})
    assert set(stat) == {"RepoSize", "StorageMax"}


async def test_error_after_first_byte_goes_to_the_trailer(http: Client, node: IpfsNode) -> None:
    data = os.urandom(600_000)  # 3 leaves
    root = (await http.lines("add", {"pin": "false", "raw-leaves": "true"}, files(("f", data))))[-1]["Hash"]
    refs = await http.lines("refs", {"arg": root})
    await node.blockstore.delete(CID.decode(refs[-1]["Ref"]))  # the last leaf is gone; no peer has it
    assert node.api is not None and node.api.multiaddr is not None
    host, port = node.api.multiaddr.tcp_host_port()
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"POST /api/v0/cat?arg={root} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode())
    await writer.drain()
    raw = await asyncio.wait_for(_read_until_trailer(reader), 10)
    writer.close()
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert b"200 OK" in head and b"Trailer: X-Stream-Error" in head
    assert b"\r\n0\r\nX-Stream-Error: could not fetch block" in rest


async def _read_until_trailer(reader: asyncio.StreamReader) -> bytes:
    buf = b""
    while not buf.endswith(b"\r\n\r\n") or b"\r\n0\r\n" not in buf:
        chunk = await reader.read(65536)
        if not chunk:
            break
        buf += chunk
    return buf


async def test_boolean_spellings_refs_unique_raw_dag_and_typed_ls(http: Client) -> None:
    out = await http.lines("add", {"pin": "FALSE", "raw-leaves": "True", "cid-version": "1"},
                           files(("f", bytes(600_000))))
    root = out[-1]["Hash"]
    assert await http.lines("pin/ls", {"stream": "1"}) == []
    leaves = await http.lines("refs", {"arg": root, "r": "t"})
    assert len(leaves) == 3 and len({x["Ref"] for x in leaves}) == 2  # two leaves are the same bytes
    unique = await http.lines("refs", {"arg": root, "recursive": "true", "unique": "true"})
    assert len(unique) == 2
    edges = await http.lines("refs", {"arg": root, "edges": "true"})
    assert edges[0]["Ref"] == f"{root} -> {leaves[0]['Ref']}"
    raw_leaf = leaves[0]["Ref"]
    status, body, _ = await http.post("dag/get", {"arg": raw_leaf, "output-codec": "raw"})
    assert status == 200 and body == bytes(262144)
    status, body, _ = await http.post("dag/get", {"arg": raw_leaf})
    assert json.loads(body)["/"]["bytes"]
    # The cluster connector's status query: a typed pin/ls of one CID.
    await http.ok("pin/add", {"arg": root})
    assert await http.lines("pin/ls", {"arg": root, "type": "recursive", "stream": "true"}) == [
        {"Cid": root, "Type": "recursive"}]
    status, body, _ = await http.post("pin/ls", {"arg": root, "type": "direct", "stream": "true"})
    assert status == 500 and json.loads(body)["Message"].endswith("not pinned")
    status, body, _ = await http.post("pin/ls", {"type": "weird"})
    assert status == 400 and "must be one of" in json.loads(body)["Message"]


async def test_start_failure_cleans_up_and_stop_is_idempotent(tmp_path: Path) -> None:
    import socket

    from pincluster.errors import Unavailable

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        cfg = NodeConfig.generate(api=Multiaddr(f"/ip4/127.0.0.1/tcp/{port}"),
                                  swarm=[Multiaddr("/ip4/127.0.0.1/tcp/0")])
        cfg.save(tmp_path)
        n = await IpfsNode.open(tmp_path)
        with pytest.raises(Unavailable, match=f"cannot listen on Addresses.API /ip4/127.0.0.1/tcp/{port}"):
            await n.start()
        assert n.host is None and n.exchange is None and not (tmp_path / "api").exists()
        await n.stop()
        await n.stop()
    finally:
        busy.close()
