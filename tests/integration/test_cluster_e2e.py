"""A real 3-peer cluster: daemons with embedded IPFS nodes on 127.0.0.1, driven through the REST API.

One cluster serves the whole module (starting one takes a few seconds); tests that stop peers come last.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.integration.cluster_harness import Peer, init_peers, start_cluster, stop_all

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Peer]]:
    root = tmp_path_factory.mktemp("cluster3")
    peers = init_peers(root, 3)
    for p in peers:  # re-pinning on, so that a dead peer's pins move (the test at the end of the module)
        svc = p.service
        svc["cluster"]["disable_repinning"] = False
        (p.folder / "service.json").write_text(json.dumps(svc, indent=2))
    try:
        start_cluster(peers)
        yield peers
    finally:
        stop_all(peers)


def ipfs_api(peer: Peer, path: str, *, data: bytes | None = None, files: dict[str, bytes] | None = None) -> Any:
    """Call the peer's embedded IPFS node's kubo RPC API directly."""
    ma = peer.service["ipfs_connector"]["ipfshttp"]["node_multiaddress"].split("/")
    url = f"http://{ma[2]}:{ma[4]}/api/v0/{path}"
    headers = {}
    body = data
    if files is not None:
        boundary = "pinclusterboundary"
        parts = []
        for name, content in files.items():
            parts.append(
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
                f"Content-Type: application/octet-stream\r\n\r\n".encode() + content + b"\r\n"
            )
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
    req = urllib.request.Request(url, data=body or b"", method="POST", headers=headers)
    with urllib.request.urlopen(req, timeout=30) as resp:
        text = resp.read().decode()
    lines = [json.loads(x) for x in text.splitlines() if x.strip()]
    return lines[-1] if lines else None


def add_to_node(peer: Peer, content: bytes) -> str:
    """Add content to one node only (pin=false), so the cluster must move it to the others."""
    out = ipfs_api(peer, "add?pin=false", files={"f.bin": content})
    return str(out["Hash"])


def statuses(peer: Peer, cid: str, local: bool = False) -> dict[str, str]:
    status, body = peer.api("GET", f"/pins/{cid}?local={'true' if local else 'false'}")
    assert status == 200, body
    return {pid: info["status"] for pid, info in body["peer_map"].items()}


def wait_for(pred: Any, timeout: float = 30, interval: float = 0.3, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")


def node_has_pin(peer: Peer, cid: str) -> bool:
    try:
        out = ipfs_api(peer, f"pin/ls?arg={cid}")
    except urllib.error.HTTPError:
        return False
    return bool(out and cid in out.get("Keys", {}))


def test_every_peer_sees_the_cluster(cluster: list[Peer]) -> None:
    ids = {p.identity for p in cluster}
    for p in cluster:
        status, body = p.api("GET", "/id")
        assert status == 200
        assert set(body["cluster_peers"]) == ids
        assert body["version"] == "1.1.6"
        assert body["ipfs"]["error"] == "" and body["ipfs"]["id"]
    status, peers = cluster[1].api("GET", "/peers")
    assert status == 200 and {x["id"] for x in peers} == ids


def test_pin_with_replication_two(cluster: list[Peer]) -> None:
    content = os.urandom(600_000)  # three blocks and a root
    cid = add_to_node(cluster[0], content)
    status, pin = cluster[1].api("POST", f"/pins/{cid}?replication-min=2&replication-max=2&name=two")
    assert status == 200, pin
    assert pin["cid"] == cid and len(pin["allocations"]) == 2 and pin["name"] == "two"

    def settled() -> dict[str, str] | None:
        st = statuses(cluster[2], cid)
        return st if sorted(st.values()) == ["pinned", "pinned", "remote"] else None

    st = wait_for(settled, what="2 pinned + 1 remote")
    pinned = {pid for pid, s in st.items() if s == "pinned"}
    assert pinned == set(pin["allocations"])
    for p in cluster:
        assert node_has_pin(p, cid) == (p.identity in pinned)
    # the blocks really are on the allocated nodes: cat from them works
    for p in cluster:
        if p.identity in pinned:
            ma = p.service["ipfs_connector"]["ipfshttp"]["node_multiaddress"].split("/")
            req = urllib.request.Request(f"http://{ma[2]}:{ma[4]}/api/v0/cat?arg={cid}&offline=true", method="POST")
            with urllib.request.urlopen(req, timeout=30) as resp:
                assert resp.read() == content


def test_pin_everywhere_then_unpin(cluster: list[Peer]) -> None:
    cid = add_to_node(cluster[1], os.urandom(1000))
    status, pin = cluster[0].api("POST", f"/pins/{cid}?replication-min=-1&replication-max=-1")
    assert status == 200 and pin["allocations"] == []
    wait_for(lambda: set(statuses(cluster[0], cid).values()) == {"pinned"}, what="pinned everywhere")
    status, allocs = cluster[2].api("GET", "/allocations")
    assert status == 200 and cid in {p["cid"] for p in allocs}

    status, body = cluster[2].api("DELETE", f"/pins/{cid}")
    assert status == 200 and body["cid"] == cid
    wait_for(lambda: set(statuses(cluster[1], cid).values()) == {"unpinned"}, what="unpinned everywhere")
    wait_for(lambda: not any(node_has_pin(p, cid) for p in cluster), what="IPFS unpinned on every node")
    status, body = cluster[0].api("GET", f"/allocations/{cid}")
    assert status == 404 and body == {"code": 404, "message": "pin is not part of the pinset"}


def test_listing_filters_local_and_cids(cluster: list[Peer]) -> None:
    a = add_to_node(cluster[0], b"listing a")
    b = add_to_node(cluster[0], b"listing b")
    for cid in (a, b):
        assert cluster[0].api("POST", f"/pins/{cid}")[0] == 200
    for cid in (a, b):
        wait_for(lambda cid=cid: set(statuses(cluster[0], cid).values()) == {"pinned"}, what=f"{cid} pinned")
    status, items = cluster[1].api("GET", f"/pins?cids={a},{b}")
    assert status == 200 and {i["cid"] for i in items} == {a, b}
    status, items = cluster[1].api("GET", "/pins?filter=pinned")
    assert status == 200 and {a, b} <= {i["cid"] for i in items}
    assert all(len(i["peer_map"]) == 3 for i in items if i["cid"] in (a, b))
    status, items = cluster[1].api("GET", "/pins?local=true")
    assert status == 200 and all(list(i["peer_map"]) == [cluster[1].identity] for i in items)
    status, _ = cluster[1].api("GET", "/pins?filter=pin_queued")
    assert status in (200, 204)


@pytest.mark.parametrize(
    ("method", "path", "code"),
    [
        ("POST", "/pins/notacid", 400),
        ("GET", "/pins?filter=nonsense", 400),
        ("POST", "/pins/QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH?replication-min=3&replication-max=2", 400),
        ("POST", "/pins/QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH?replication-min=x", 400),
        ("DELETE", "/peers/12D3KooWRzvzPzA3whBoYPu5mQWjt8t4t6F5hM8HuAtTnDfDPkvK", 404),
        ("DELETE", "/pins/QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH", 404),
        ("GET", "/nowhere", 404),
    ],
)
def test_bad_input_gets_a_clear_error(cluster: list[Peer], method: str, path: str, code: int) -> None:
    status, body = cluster[0].api(method, path)
    assert status == code, body
    assert set(body) == {"code", "message"} and body["code"] == code and body["message"]


def test_missing_content_errors_then_recovers(cluster: list[Peer]) -> None:
    """Nobody has these blocks: pin_error after pin_timeout; once a node has them, recover pins them."""
    content = os.urandom(2000)
    only_hash = ipfs_api(cluster[0], "add?only-hash=true", files={"f": content})["Hash"]
    status, _ = cluster[0].api("POST", f"/pins/{only_hash}?replication-min=1&replication-max=1")
    assert status == 200

    def errored() -> bool:
        return "pin_error" in statuses(cluster[0], only_hash).values()

    wait_for(errored, timeout=40, what="pin_error")
    status, g = cluster[0].api("GET", f"/pins/{only_hash}")
    err = next(v for v in g["peer_map"].values() if v["status"] == "pin_error")
    assert err["error"] and err["attempt_count"] >= 1
    assert add_to_node(cluster[2], content) == only_hash  # now a node has the blocks
    status, g = cluster[1].api("POST", f"/pins/{only_hash}/recover")
    assert status == 200
    wait_for(lambda: "pinned" in statuses(cluster[0], only_hash).values(), timeout=40, what="pinned after recover")


def test_dead_peer_pins_move_and_alert(cluster: list[Peer]) -> None:
    cid = add_to_node(cluster[0], os.urandom(5000))
    victim = cluster[2]
    status, pin = cluster[0].api(
        "POST", f"/pins/{cid}?replication-min=2&replication-max=2&user-allocations={victim.identity}"
    )
    assert status == 200 and victim.identity in pin["allocations"], pin
    wait_for(lambda: sorted(statuses(cluster[0], cid).values()) == ["pinned", "pinned", "remote"], what="pinned x2")
    victim.kill()

    def moved() -> bool:
        _, p = cluster[0].api("GET", f"/allocations/{cid}")
        return victim.identity not in p["allocations"] and len(p["allocations"]) == 2

    wait_for(moved, timeout=60, what="re-allocation away from the dead peer")
    survivors = cluster[:2]
    wait_for(lambda: all(node_has_pin(p, cid) for p in survivors), timeout=60, what="pinned on the survivors")
    status, alerts = cluster[0].api("GET", "/health/alerts")
    assert status == 200 and any(a["peer"] == victim.identity and a["name"] == "ping" for a in alerts)


def test_logs_name_the_facility_and_place(cluster: list[Peer]) -> None:
    text = cluster[0].log()
    assert "INFO cluster: ** IPFS Cluster is READY **" in text
    assert Path(cluster[0].folder / "peerstore").exists()
