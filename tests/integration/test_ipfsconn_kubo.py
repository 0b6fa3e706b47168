"""End-to-end tests of the IPFS connector against real IPFS daemons (real processes, real sockets).

Every test runs against each backend: ``kubo`` (the pinned real kubo, built by ``tests/kubo.sh``) and
``embedded`` (pincluster's own node, ``pincluster-ipfs daemon``), because the cluster talks to both through
this one connector. Content is added through the node's own ``/api/v0/add`` and results are cross-checked
with plain RPC calls that do not go through the code under test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import pytest

from pincluster.errors import Timeout, Unavailable
from pincluster.ipfsconn.interface import IPFSError
from pincluster.ipfsconn.ipfshttp import IPFSHTTPConnector
from pincluster.types.cid import CID, RAW, sha256_multihash
from pincluster.types.multiaddr import Multiaddr
from pincluster.types.status import IPFSPinStatus

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from test_ipfsconn_fake import connector_scenario

from embedded import EmbeddedNode
from kubo import KuboDaemon, kubo_binary, kubo_disabled

pytestmark = [pytest.mark.timeout(180)]

BACKENDS = ["kubo", "embedded"]


class Node(Protocol):
    api_multiaddr: str
    api_url: str
    peer_id: str

    def stop(self) -> None: ...


def start_node(kind: str, root: Path) -> Node:
    if kind == "kubo":
        daemon: Node = KuboDaemon(root, binary=kubo_binary()).start()
        return daemon
    if os.environ.get("PINCLUSTER_NO_EMBEDDED", "") not in ("", "0"):
        pytest.skip("PINCLUSTER_NO_EMBEDDED=1")
    return EmbeddedNode(root).start()


@pytest.fixture(scope="module", params=BACKENDS)
def node(request: pytest.FixtureRequest) -> Iterator[Node]:
    kind: str = request.param
    if kind == "kubo" and kubo_disabled():
        pytest.skip("PINCLUSTER_NO_KUBO=1: tests against a real kubo daemon are disabled")
    root = Path(tempfile.mkdtemp(prefix=f"pincluster-ipfsconn-{kind}-"))
    n = start_node(kind, root)
    try:
        yield n
    finally:
        n.stop()
        shutil.rmtree(root, ignore_errors=True)


def rpc(n: Node, path: str, timeout: float = 20.0) -> list[Any]:
    """Plain RPC call, independent of the connector: all NDJSON values of the answer."""
    req = urllib.request.Request(f"{n.api_url}/api/v0/{path}", method="POST", data=b"")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = resp.read().decode()
    except urllib.error.HTTPError as exc:
        return [json.loads(exc.read().decode())]
    return [json.loads(line) for line in body.splitlines() if line.strip()]


async def add(n: Node, files: dict[str, bytes], **params: str) -> dict[str, str]:
    """``/api/v0/add`` (pin=false unless given); returns {name: cid}."""
    q = {"pin": "false", "cid-version": "0", "chunker": "size-262144", **params}
    form = aiohttp.FormData()
    for name, data in files.items():
        form.add_field("file", data, filename=name, content_type="application/octet-stream")
    async with aiohttp.ClientSession() as s, s.post(f"{n.api_url}/api/v0/add", params=q, data=form) as r:
        assert r.status == 200, await r.text()
        out = {}
        for line in (await r.text()).splitlines():
            if line.strip():
                obj = json.loads(line)
                out[obj["Name"]] = obj["Hash"]
        return out


def connector(n: Node, **kw: Any) -> IPFSHTTPConnector:
    kw.setdefault("ipfs_request_timeout", 30.0)
    kw.setdefault("pin_timeout", 30.0)
    return IPFSHTTPConnector(n.api_multiaddr, **kw)


# ---------------------------------------------------------------------------- tests


async def test_id_and_version(node: Node) -> None:
    async with connector(node) as c:
        ident = await c.id()
        ver = await c.version()
        ready = await c.wait_ready()
        headers = await c.extract_headers("/api/v0/version")
    assert str(ident.id) == node.peer_id
    assert ident.addresses
    assert ready.id == ident.id and c.ready.is_set()
    assert re.match(r"\d+\.\d+", ver.version)
    if isinstance(node, KuboDaemon):  # the embedded node does not send it (yet): reported to the lead
        exposed = {k.lower(): v for k, v in headers.items()}["access-control-expose-headers"]
        assert "X-Stream-Output" in exposed


async def test_shared_scenario(node: Node) -> None:
    """The scenario the in-memory fake is held to holds on the real node too."""
    async with connector(node) as c:
        await connector_scenario(c)


async def test_recursive_pin_lifecycle(node: Node) -> None:
    data = os.urandom(1024 * 1024 + 5)  # 5 leaves of 256 KiB + a root
    cid = CID.decode((await add(node, {"big.bin": data}))["big.bin"])
    progress: list[int] = []
    async with connector(node) as c:
        assert await c.pin_ls_cid(cid) is IPFSPinStatus.UNPINNED
        await c.pin(cid, -1, progress_cb=progress.append)
        assert await c.pin_ls_cid(cid) is IPFSPinStatus.RECURSIVE
        assert await c.pin_ls_cid(cid, 0) is IPFSPinStatus.UNPINNED  # not a direct pin
        listed = {k: v async for k, v in c.pin_ls()}
        assert listed[cid] is IPFSPinStatus.RECURSIVE
        await c.pin(cid, -1)  # already pinned: a no-op
        await c.unpin(cid)
        assert await c.pin_ls_cid(cid) is IPFSPinStatus.UNPINNED
        await c.unpin(cid)  # unpinning again is fine
        assert cid not in {k async for k, _ in c.pin_ls()}
    assert progress and progress == sorted(progress) and progress[-1] >= 1
    assert rpc(node, f"pin/ls?stream=true&arg={cid}&type=recursive")[0].get("Type") == "error"


async def test_direct_and_depth_limited_pins(node: Node) -> None:
    names = await add(node, {"a.txt": b"direct me\n", "b.txt": b"depth one\n" * 1000})
    a, b = CID.decode(names["a.txt"]), CID.decode(names["b.txt"])
    async with connector(node) as c:
        await c.pin(a, 0)
        await c.pin(b, 1)
        assert await c.pin_ls_cid(a, 0) is IPFSPinStatus.DIRECT
        assert await c.pin_ls_cid(b, 1) is IPFSPinStatus.RECURSIVE
        listed = {k: v async for k, v in c.pin_ls()}
        direct_only = {k async for k, _ in c.pin_ls(["direct"])}
        await c.unpin(a)
        await c.unpin(b)
    # Both types are listed (Go's pin/ls QUIRK would have missed the direct pin).
    assert listed[a] is IPFSPinStatus.DIRECT and listed[b] is IPFSPinStatus.RECURSIVE
    assert a in direct_only and b not in direct_only
    assert rpc(node, f"pin/ls?stream=true&arg={b}&type=recursive")[0].get("Type") == "error"


async def test_pin_update_keeps_old_pin(node: Node) -> None:
    names = await add(node, {"v1.txt": b"version one\n", "v2.txt": b"version two\n"})
    v1, v2 = CID.decode(names["v1.txt"]), CID.decode(names["v2.txt"])
    async with connector(node) as c:
        await c.pin(v1)
        await c.pin(v2, pin_update=v1)
        assert await c.pin_ls_cid(v2) is IPFSPinStatus.RECURSIVE
        assert await c.pin_ls_cid(v1) is IPFSPinStatus.RECURSIVE  # unpin=false
        await c.unpin(v1)
        await c.unpin(v2)


async def test_blocks_stream_put_get(node: Node) -> None:
    blocks = []
    for i in range(40):
        data = os.urandom(1000 + i)
        blocks.append((CID.v1(RAW, sha256_multihash(data)), data))

    async def source() -> Any:
        for b in blocks:
            yield b

    async with connector(node) as c:
        assert await c.block_stream(source()) == 40
        for cid, data in blocks[::7]:
            assert await c.block_get(cid) == data
        one = b"a single block"
        put = await c.block_put(one, codec="raw", mhtype="sha2-256")
        assert put == CID.v1(RAW, sha256_multihash(one))
        assert await c.block_get(put) == one
    stat = rpc(node, f"block/stat?arg={blocks[5][0]}")[0]
    assert stat["Size"] == len(blocks[5][1])


async def test_repo_config_gc(node: Node) -> None:
    async with connector(node) as c:
        junk = os.urandom(2000)
        junk_cid = await c.block_put(junk)
        stat = await c.repo_stat()
        assert stat.repo_size >= len(junk) and stat.storage_max > 0
        assert await c.free_space() == max(stat.storage_max - stat.repo_size, 0)
        assert await c.config_key("Identity/PeerID") == node.peer_id
        kept = CID.decode((await add(node, {"keep.txt": b"keep me\n"}))["keep.txt"])
        await c.pin(kept)
        removed = [k async for k in c.repo_gc()]
        keys = {k.key.multihash for k in removed if k.key is not None}
        assert junk_cid.multihash in keys
        assert kept.multihash not in keys
        assert not [k for k in removed if k.error]
        assert (await c.pin_ls_cid(kept)) is IPFSPinStatus.RECURSIVE
        await c.unpin(kept)


async def test_resolve(node: Node) -> None:
    names = await add(node, {"doc.txt": b"resolve me\n"}, **{"wrap-with-directory": "true"})
    root, file = CID.decode(names[""]), CID.decode(names["doc.txt"])
    async with connector(node) as c:
        assert await c.resolve(f"/ipfs/{root}/doc.txt") == file
        assert await c.resolve(str(root)) == root
        with pytest.raises(IPFSError) as ei:
            await c.resolve(f"/ipfs/{root}/nope.txt")
    assert "nope.txt" in ei.value.message


async def test_swarm_connect_and_peers(node: Node, tmp_path: Path) -> None:
    kind = "kubo" if isinstance(node, KuboDaemon) else "embedded"
    other = start_node(kind, tmp_path)
    try:
        async with connector(other) as o:
            other_addrs = (await o.id()).addresses or ()
        targets = [a if a.peer_id else a.with_p2p(PeerIDOf(other)) for a in other_addrs]
        async with connector(node) as c:
            bogus = Multiaddr(f"/ip4/127.0.0.1/tcp/1/p2p/{other.peer_id}")
            assert await c.connect_swarms([bogus, *targets]) >= 1
            peers = {str(p) for p in await c.swarm_peers()}
        assert other.peer_id in peers
    finally:
        other.stop()


def PeerIDOf(n: Node) -> Any:
    from pincluster.types.peer import PeerID

    return PeerID.decode(n.peer_id)


async def test_node_down_is_unavailable(node: Node, tmp_path: Path) -> None:
    kind = "kubo" if isinstance(node, KuboDaemon) else "embedded"
    other = start_node(kind, tmp_path)
    addr = other.api_multiaddr
    other.stop()
    async with IPFSHTTPConnector(addr) as c:
        with pytest.raises(Unavailable) as ei:
            await c.pin_ls_cid(CID.v1(RAW, sha256_multihash(b"x")))
    assert "connection refused" in str(ei.value) and addr in str(ei.value)


# Last for each backend: an abandoned pin may keep the node busy.
async def test_pin_times_out_without_progress(node: Node) -> None:
    missing = CID.v1(RAW, sha256_multihash(os.urandom(32)))  # nobody has it
    async with connector(node, pin_timeout=1.0) as c:
        t0 = time.monotonic()
        with pytest.raises(Timeout, match="pin_timeout"):
            await c.pin(missing)
        took = time.monotonic() - t0
        assert await c.pin_ls_cid(missing) is IPFSPinStatus.UNPINNED
    assert 0.9 <= took < 10


async def test_abandoned_pin_is_cancelled_by_the_node(node: Node) -> None:
    """When the connector gives up on a pin it closes the request; the node must stop that pin too.

    Otherwise the stuck pin keeps holding the node's pin/GC locks (kubo cancels the request context).
    """
    missing = CID.v1(RAW, sha256_multihash(os.urandom(32)))
    async with connector(node, pin_timeout=1.0, repogc_timeout=5.0) as c:
        with pytest.raises(Timeout):
            await c.pin(missing)
        t0 = time.monotonic()
        _ = [k async for k in c.repo_gc()]
        assert time.monotonic() - t0 < 5
