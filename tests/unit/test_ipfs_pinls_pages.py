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
        assert body.decode() == "".join(json.dumps({"Cid": str(c)}, separators=(",", ":")) + "\n" for c in want)
