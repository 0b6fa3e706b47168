"""A composite cluster: a top cluster of 2 peers whose IPFS "node" is the IPFS proxy of a 3-peer sub-cluster.

Each top peer's ``ipfs_connector.ipfshttp.node_multiaddress`` points at a different sub-cluster peer's proxy.
The top cluster does not know it talks to a cluster: its pins become sub-cluster pins (``pin/add`` is
hijacked), its adds send blocks through the proxy's reverse-proxied ``block/put``, its pin checks read the
sub-cluster's pinset (``pin/ls``), and its freespace comes from the proxy's summed ``repo/stat``.
"""

from __future__ import annotations

import json
import os
import secrets
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from tests.integration.cluster_harness import Peer, init_peers, start_cluster, stop_all, wait_for

pytestmark = pytest.mark.timeout(360)  # the setup counts too: five daemons on a loaded machine

NODE_MA = "ipfs_connector.ipfshttp.node_multiaddress"


def proxy_multiaddr(peer: Peer) -> str:
    ma = peer.service["api"]["ipfsproxy"]["listen_multiaddress"]
    return ma[0] if isinstance(ma, list) else ma  # type: ignore[no-any-return]


def rest_add(peer: Peer, name: str, data: bytes, query: str) -> list[dict[str, Any]]:
    boundary = secrets.token_hex(12)
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(f"{peer.rest}/add?{query}", data=body, method="POST",
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return [json.loads(line) for line in resp.read().splitlines() if line.strip()]


def node_call(peer: Peer, path: str) -> tuple[int, bytes]:
    """The sub-cluster peer's own IPFS node (not its proxy)."""
    req = urllib.request.Request(f"{peer.ipfs_api}/{path}", method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def statuses(peer: Peer, cid: str) -> list[str]:
    status, g = peer.api("GET", f"/pins/{cid}")
    assert status == 200, g
    return [v["status"] for v in g["peer_map"].values()]


def sub_allocations(sub: list[Peer]) -> set[str]:
    _, pins = sub[0].api("GET", "/allocations")
    return {p["cid"] for p in pins or []}


@pytest.fixture(scope="module")
def clusters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[Peer], list[Peer]]]:
    root = tmp_path_factory.mktemp("composite")
    sub: list[Peer] = []
    top: list[Peer] = []
    try:
        sub = init_peers(root / "sub", 3, service_changes={"cluster.replication_factor_min": 2,
                                                           "cluster.replication_factor_max": 2})
        # the proxies' ports are in service.json already: set up and start both clusters at once (the top
        # peers wait for their "IPFS", the sub-cluster's proxies, as they would wait for kubo)
        with ThreadPoolExecutor(2) as pool:
            sub_started = pool.submit(start_cluster, sub, 150)
            top = init_peers(root / "top", 2, ipfs="external",
                             service_changes=lambda i: {NODE_MA: proxy_multiaddr(sub[i])})
            top_started = pool.submit(start_cluster, top, 150)
            sub_started.result()
            top_started.result()
        yield top, sub
    finally:
        stop_all(top)
        stop_all(sub)


def test_top_add_pins_through_into_the_sub_cluster(clusters: tuple[list[Peer], list[Peer]]) -> None:
    top, sub = clusters
    data = b"composite cluster content " + os.urandom(400_000)
    out = rest_add(top[0], "payload.bin", data, "replication-min=-1&replication-max=-1")
    cid = out[-1]["cid"]
    # the top cluster: pinned on both of its peers (each one's "IPFS" is a sub-cluster proxy)
    wait_for(lambda: statuses(top[0], cid) == ["pinned", "pinned"], "top status pinned")
    # the sub-cluster: in its shared pinset, pinned by its allocated peers' nodes, with the blocks there
    assert cid in sub_allocations(sub)
    wait_for(lambda: sorted(statuses(sub[0], cid)) == ["pinned", "pinned", "remote"], "sub status pinned")
    holders = [p for p in sub if node_call(p, f"pin/ls?arg={cid}&type=recursive")[0] == 200]
    assert len(holders) == 2
    status, body = node_call(holders[0], f"cat?arg={cid}")
    assert status == 200 and body == data

    # unpinning on top removes it below; both top peers unpin, and neither reports an error
    status, _ = top[1].api("DELETE", f"/pins/{cid}")
    assert status == 200
    wait_for(lambda: cid not in sub_allocations(sub), "sub-cluster unpin")
    wait_for(lambda: statuses(top[0], cid) == ["unpinned", "unpinned"], "top status unpinned")
    wait_for(lambda: all(node_call(p, f"pin/ls?arg={cid}")[0] != 200 for p in sub), "sub nodes unpinned")


def test_top_pin_of_existing_content(clusters: tuple[list[Peer], list[Peer]]) -> None:
    top, sub = clusters
    # content already in the sub-cluster's IPFS (added there without a cluster pin)
    out = rest_add(sub[2], "existing.bin", b"already below " + os.urandom(64), "no-pin=true")
    cid = out[-1]["cid"]
    assert cid not in sub_allocations(sub)
    status, pin = top[1].api("POST", f"/pins/{cid}?replication-min=1&replication-max=1&name=from-top")
    assert status == 200, pin
    wait_for(lambda: "pinned" in statuses(top[0], cid), "top status pinned")
    assert cid in sub_allocations(sub)
    wait_for(lambda: statuses(sub[0], cid).count("pinned") == 2, "sub-cluster pinned (its own rf 2)")
    # the top cluster's health views work over proxies too
    status, metrics = top[0].api("GET", "/monitor/metrics/freespace")
    assert status == 200 and len(metrics) == 2 and all(int(m["value"]) > 0 for m in metrics)
    status, _ = top[0].api("DELETE", f"/pins/{cid}")
    assert status == 200
    wait_for(lambda: cid not in sub_allocations(sub), "sub-cluster unpin")


def test_top_direct_pin_and_ipfs_status_listing(clusters: tuple[list[Peer], list[Peer]]) -> None:
    """The top cluster lists its node's pins by type (``pin/ls?type=recursive`` then ``direct``): the proxy
    must answer each type with the pins of that mode only, or direct pins would look unexpectedly unpinned."""
    top, sub = clusters
    out = rest_add(sub[0], "direct.bin", b"direct " + os.urandom(32), "no-pin=true")
    cid = out[-1]["cid"]
    status, _ = top[0].api("POST", f"/pins/{cid}?mode=direct&replication-min=-1&replication-max=-1")
    assert status == 200
    wait_for(lambda: statuses(top[0], cid) == ["pinned", "pinned"], "top direct pin pinned")
    status, pins = sub[0].api("GET", f"/allocations/{cid}")
    assert status == 200 and pins["mode"] == "direct"
    status, all_status = top[0].api("GET", "/pins")
    mine = [g for g in all_status if g["cid"] == cid]
    assert mine and all(v["status"] == "pinned" for v in mine[0]["peer_map"].values())
    top[0].api("DELETE", f"/pins/{cid}")
    wait_for(lambda: cid not in sub_allocations(sub), "sub-cluster unpin")
