"""The node's streamed, typed ``pin/ls`` (what the pin tracker reads for every status listing) is written a
database page at a time: the lines must be exactly what the per-item path writes, across page boundaries."""

from __future__ import annotations

import json

from test_ipfs_node_api import Client, http, node  # noqa: F401 (fixtures)

from pincluster.ipfs.node import IpfsNode
from pincluster.types.cid import CID, RAW, sha256_multihash


async def test_typed_stream_pages_match_the_item_path(http: Client, node: IpfsNode) -> None:  # noqa: F811
    keys: dict[int, list[CID]] = {1: [], 2: []}
    for i in range(2300):  # more than two pages of 1000
        mh = sha256_multihash(b"pin %d" % i)
        cid = CID(mh) if i % 3 else CID.v1(RAW, mh)
        mode = 1 if i % 5 else 2
        node.pins._set_mode(cid.bytes, mode)
        keys[mode].append(cid)
    for mode, ptype in ((1, "recursive"), (2, "direct")):
        want = sorted(keys[mode], key=lambda c: c.bytes)
        status, body, _ = await http.post("pin/ls", {"stream": "true", "type": ptype})
        assert status == 200
        expected = "".join(json.dumps({"Cid": str(c), "Type": ptype}, separators=(",", ":")) + "\n" for c in want)
        assert body.decode() == expected
        status, body, _ = await http.post("pin/ls", {"stream": "true", "type": ptype, "quiet": "true"})
        assert body.decode() == expected  # kubo's JSON keeps the type: ``quiet`` is for its CLI


async def test_connector_reads_the_in_process_node_pin_store(node: IpfsNode) -> None:  # noqa: F811
    """``pin_pages`` from the embedded node's store (attached by the daemon) lists exactly what the same
    connector lists over the node's API; it attaches only to the node its address reaches."""
    from pincluster.ipfsconn.ipfshttp import IPFSHTTPConnector
    from pincluster.types.multiaddr import Multiaddr

    for i in range(2300):
        mh = sha256_multihash(b"pin %d" % i)
        node.pins._set_mode((CID(mh) if i % 3 else CID.v1(RAW, mh)).bytes, 1 if i % 5 else 2)
    assert node.api is not None and node.api.multiaddr is not None
    api = node.api.multiaddr

    async def listed(c: IPFSHTTPConnector) -> list[tuple[str, list[bytes]]]:
        out: list[tuple[str, list[bytes]]] = []
        async for st, keys in c.pin_pages(("recursive", "direct")):
            out.append((st.value, keys))
        return out

    async with IPFSHTTPConnector(api) as over_http, IPFSHTTPConnector(api) as direct:
        assert direct.read_pins_from(node.pins, api)
        via_api, via_store = await listed(over_http), await listed(direct)
        assert [(t, k) for t, page in via_api for k in page] == [(t, k) for t, page in via_store for k in page]
        assert sum(len(page) for _, page in via_store) == 2300
        assert {t for t, _ in via_store} == {"recursive", "direct"}
        _, port = api.tcp_host_port()
        other = Multiaddr(f"/ip4/127.0.0.1/tcp/{port + 1}")
        assert not direct.read_pins_from(node.pins, other)  # another node's API: back to HTTP
        wildcard = Multiaddr(f"/ip4/0.0.0.0/tcp/{port}")
        assert direct.read_pins_from(node.pins, wildcard)  # listening everywhere, dialed on loopback


async def test_pin_store_generation_changes_with_every_pin_change(node: IpfsNode) -> None:  # noqa: F811
    """The pin tracker keeps its index of the node's pins while this number stays the same: every add, rm and
    update must change it, and a read must not."""
    from pincluster.ipfsconn.ipfshttp import IPFSHTTPConnector

    assert node.api is not None and node.api.multiaddr is not None
    pins = node.pins
    a, b = (CID.v1(RAW, sha256_multihash(x)) for x in (b"gen a", b"gen b"))
    seen = [pins.generation]
    await pins.add(a, assume_complete=True)
    seen.append(pins.generation)
    _ = [p async for p in pins.key_pages("recursive")]
    seen.append(pins.generation)
    await pins.rm(a)
    seen.append(pins.generation)
    await pins.add(b, recursive=False, assume_complete=True)
    seen.append(pins.generation)
    assert seen[1] > seen[0] and seen[2] == seen[1] and seen[3] > seen[2] and seen[4] > seen[3]
    async with IPFSHTTPConnector(node.api.multiaddr) as c:
        assert c.pins_generation() is None  # over HTTP nobody can tell
        c.read_pins_from(pins, node.api.multiaddr)
        assert c.pins_generation() == pins.generation
