"""A real 3-peer cluster on 127.0.0.1, driven through the REST API, with two IPFS backends.

Every test runs twice: ``embedded`` (each daemon runs pincluster's own IPFS node, whose ``swarm.key`` init
derives from the cluster secret) and ``kubo`` (three real kubo 0.42 daemons, one per peer, forming a private
network keyed the same way; the peers are initialised with ``--ipfs external`` and pointed at them). The kubo
half is skipped with ``PINCLUSTER_NO_KUBO=1``. One cluster per backend serves the whole module (starting one
takes a few seconds); tests that stop peers or IPFS daemons come last.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h11
import pytest
from tests.integration.cluster_harness import Peer, ctl, init_peers, start_cluster, stop_all, wait_for
from tests.kubo import KuboDaemon, kubo_binary
from tests.kubo import start_all as start_kubos
from tests.kubo import stop_all as stop_kubos

from pincluster.pintracker.heads import HEAD_CACHE_FILE

pytestmark = pytest.mark.timeout(300)

NODE_MA = "ipfs_connector.ipfshttp.node_multiaddress"
BACKENDS = ["embedded", pytest.param("kubo", marks=pytest.mark.kubo)]


class Cluster(list[Peer]):
    """The peers, in order, plus the backend they run on and (for ``kubo``) each peer's kubo daemon."""

    def __init__(self, peers: list[Peer], backend: str, kubos: list[KuboDaemon]) -> None:
        super().__init__(peers)
        self.backend = backend
        self.kubos = kubos


@pytest.fixture(scope="module", params=BACKENDS)
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    backend: str = request.param
    root = tmp_path_factory.mktemp(f"cluster3-{backend}")
    secret = secrets.token_hex(32)
    # re-pinning on, so that a dead peer's pins move (the test at the end of the module)
    changes: dict[str, Any] = {"cluster.disable_repinning": False}
    peers: list[Peer] = []
    kubos: list[KuboDaemon] = []
    try:
        if backend == "kubo":
            binary = kubo_binary()  # skips the kubo half when PINCLUSTER_NO_KUBO=1
            kubos = start_kubos([KuboDaemon.for_cluster(root / f"kubo{i}", secret, binary=binary) for i in range(3)])
            peers = init_peers(
                root, 3, secret=secret, ipfs="external",
                service_changes=lambda i: {**changes, NODE_MA: kubos[i].api_multiaddr},
            )
        else:
            peers = init_peers(root, 3, secret=secret, service_changes=changes)
        start_cluster(peers)
        yield Cluster(peers, backend, kubos)
    finally:
        stop_all(peers)
        stop_kubos(kubos)


def only(cluster: Cluster, backend: str, reason: str) -> None:
    if cluster.backend != backend:
        pytest.skip(f"{backend} only: {reason}")


def ipfs_api(peer: Peer, path: str, *, data: bytes | None = None, files: dict[str, bytes] | None = None) -> Any:
    """Call the peer's IPFS node (embedded or kubo) through its kubo RPC API directly."""
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


def node_has_pin(peer: Peer, cid: str) -> bool:
    try:
        out = ipfs_api(peer, f"pin/ls?arg={cid}")
    except urllib.error.HTTPError:
        return False
    return bool(out and cid in out.get("Keys", {}))


def stream(peer: Peer, path: str) -> tuple[int, list[Any], list[str]]:
    """GET an NDJSON stream and read its HTTP trailer too (urllib drops trailers; h11 keeps them)."""
    host, port = peer.rest.removeprefix("http://").rsplit(":", 1)
    conn = h11.Connection(h11.CLIENT)
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        req = h11.Request(method="GET", target=path, headers=[("Host", f"{host}:{port}"), ("Connection", "close")])
        sock.sendall(conn.send(req) + conn.send(h11.EndOfMessage()))
        status, body, trailer = 0, b"", None
        while trailer is None:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(sock.recv(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                trailer = [v.decode() for k, v in event.headers if k == b"x-stream-error"]
    items = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
    return status, items, trailer


def ipfs_peers(peer: Peer) -> set[str]:
    """The IDs of the nodes this peer's IPFS node is connected to."""
    out = ipfs_api(peer, "swarm/peers")
    return {str(x["Peer"]) for x in (out or {}).get("Peers") or []}


def test_every_peer_sees_the_cluster(cluster: Cluster) -> None:
    ids = {p.identity for p in cluster}
    for p in cluster:
        status, body = p.api("GET", "/id")
        assert status == 200
        assert set(body["cluster_peers"]) == ids
        assert body["version"] == "1.1.6"
        assert body["ipfs"]["error"] == "" and body["ipfs"]["id"]
    status, peers = cluster[1].api("GET", "/peers")
    assert status == 200 and {x["id"] for x in peers} == ids


def test_ipfs_nodes_form_one_private_swarm(cluster: Cluster) -> None:
    """The cluster connects the nodes (no bootstrap list, no mDNS): each peer advertises the addresses its node
    announces, and every node ends up connected to the other two through them."""
    node_ids = {}
    for p in cluster:
        ident = ipfs_api(p, "id")
        node_ids[p.identity] = str(ident["ID"])
        status, body = p.api("GET", "/id")
        assert status == 200 and body["ipfs"]["id"] == ident["ID"]
        announced = {a.removesuffix(f"/p2p/{ident['ID']}") for a in ident["Addresses"]}
        assert {a.removesuffix(f"/p2p/{ident['ID']}") for a in body["ipfs"]["addresses"]} == announced
    for p in cluster:
        others = {node_ids[q.identity] for q in cluster if q is not p}
        wait_for(lambda p=p, others=others: others <= ipfs_peers(p), timeout=30, what=f"peer{p.index}'s node connected")
    if cluster.backend == "kubo":  # cross-check with kubo itself: private network on, the key the cluster's
        for k in cluster.kubos:
            log = k.log()
            assert "Swarm is limited to private network of peers with the swarm key" in log, log[-2000:]


def test_private_network_refuses_an_outsider(cluster: Cluster, tmp_path: Path) -> None:
    """A kubo keyed by another secret cannot join the cluster's kubo network, even given the exact address."""
    only(cluster, "kubo", "the embedded node's private swarm is tested in test_ipfs_node_network.py")
    outsider = KuboDaemon.for_cluster(tmp_path / "outsider", secrets.token_bytes(32), binary=cluster.kubos[0].binary)
    target = cluster.kubos[0].swarm_addresses()[0]
    with outsider:
        with pytest.raises(RuntimeError, match=r"failure|failed|error"):
            outsider.ipfs("swarm", "connect", target, timeout=30)
        assert outsider.peer_id not in cluster.kubos[0].swarm_peers()


def test_pin_with_replication_two(cluster: Cluster) -> None:
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


def test_pin_everywhere_then_unpin(cluster: Cluster) -> None:
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


def test_pin_update_keeps_allocations_and_takes_new_metadata(cluster: Cluster) -> None:
    """``pin-update``: the new CID goes where the old one is, with its factors; a name and metadata given with
    the update replace the old ones (Go takes only the name), and the old pin stays."""
    old = add_to_node(cluster[0], os.urandom(1000))
    new = add_to_node(cluster[0], os.urandom(1000))
    status, pin = cluster[0].api("POST", f"/pins/{old}?replication-min=2&replication-max=2&name=v1&meta-rev=1")
    assert status == 200, pin
    status, upd = cluster[1].api("POST", f"/pins/{new}?pin-update={old}&name=v2&meta-rev=2")
    assert status == 200, upd
    assert upd["cid"] == new and upd["name"] == "v2" and upd["metadata"] == {"rev": "2"}
    assert sorted(upd["allocations"]) == sorted(pin["allocations"]) and upd["replication_factor_min"] == 2
    status, kept = cluster[0].api("GET", f"/allocations/{old}")
    assert status == 200 and kept["metadata"] == {"rev": "1"}
    for cid in (old, new):
        cluster[0].api("DELETE", f"/pins/{cid}")


def test_add_through_the_cluster(cluster: Cluster, tmp_path: Path) -> None:
    """``ipfs-cluster-ctl add``: the peer imports the file, streams its blocks to its node (``block/put``), pins it
    on 2 peers; the CID is the one the IPFS node itself computes, and the other allocated node fetched it."""
    content = os.urandom(700_000)
    path = tmp_path / "added.bin"
    path.write_bytes(content)
    out = ctl(cluster[1], "add", "--rmin", "2", "--rmax", "2", "--wait", "--wait-timeout", "60s", str(path))
    cid = out.stdout.split()[1]
    assert cid == ipfs_api(cluster[2], "add?only-hash=true", files={"added.bin": content})["Hash"]
    _, pin = cluster[0].api("GET", f"/allocations/{cid}")
    assert len(pin["allocations"]) == 2
    for p in cluster:
        wait_for(lambda p=p: node_has_pin(p, cid) == (p.identity in pin["allocations"]), what=f"peer{p.index} pin")


def test_listing_filters_local_and_cids(cluster: Cluster) -> None:
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
    # streams end with the X-Stream-Error trailer, empty when nothing failed
    status, items, trailer = stream(cluster[2], f"/pins?cids={a},{b}&local=true")
    assert status == 200 and {i["cid"] for i in items} == {a, b} and trailer == [""]
    status, items, trailer = stream(cluster[0], "/allocations")
    assert status == 200 and {a, b} <= {i["cid"] for i in items} and trailer == [""]


def test_merged_listing_shows_a_changed_pin(cluster: Cluster) -> None:
    """The merged listing keeps its line heads between listings (``pintracker.heads``): a pin changed since the
    last listing shows its new fields."""
    cid = add_to_node(cluster[0], os.urandom(300))
    assert cluster[0].api("POST", f"/pins/{cid}?name=before")[0] == 200
    wait_for(lambda: set(statuses(cluster[0], cid).values()) == {"pinned"}, what="pinned")

    def listed() -> dict[str, Any]:
        status, items, trailer = stream(cluster[0], "/pins")
        assert status == 200 and trailer == [""]
        return next(i for i in items if i["cid"] == cid)

    assert listed()["name"] == "before" and listed()["name"] == "before"  # the second from the cache
    assert (cluster[0].folder / HEAD_CACHE_FILE).exists()
    assert cluster[1].api("POST", f"/pins/{cid}?name=after&meta-rev=2")[0] == 200
    wait_for(lambda: cluster[0].api("GET", f"/allocations/{cid}")[1]["name"] == "after", what="the change applied")
    item = listed()
    assert item["name"] == "after" and item["metadata"] == {"rev": "2"}
    assert cluster[0].api("DELETE", f"/pins/{cid}")[0] == 200


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
def test_bad_input_gets_a_clear_error(cluster: Cluster, method: str, path: str, code: int) -> None:
    status, body = cluster[0].api(method, path)
    assert status == code, body
    assert set(body) == {"code", "message"} and body["code"] == code and body["message"]


def test_missing_content_errors_then_recovers(cluster: Cluster) -> None:
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
    assert "pin_timeout" in err["error"] and err["attempt_count"] >= 1  # stuck, not failed for another reason
    assert add_to_node(cluster[2], content) == only_hash  # now a node has the blocks
    status, g = cluster[1].api("POST", f"/pins/{only_hash}/recover")
    assert status == 200
    wait_for(lambda: "pinned" in statuses(cluster[0], only_hash).values(), timeout=40, what="pinned after recover")


def test_dead_peer_pins_move_and_alert(cluster: Cluster) -> None:
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

    def alerted() -> bool:  # every peer's checker raises its own alert; the one that re-pinned may be faster
        status, alerts = cluster[0].api("GET", "/health/alerts")
        assert status == 200
        return any(a["peer"] == victim.identity and a["name"] == "ping" for a in alerts)

    wait_for(alerted, timeout=15, what="a ping alert for the dead peer")


def test_logs_name_the_facility_and_place(cluster: Cluster) -> None:
    text = cluster[0].log()
    assert "INFO cluster: ** IPFS Cluster is READY **" in text
    assert Path(cluster[0].folder / "peerstore").exists()


def test_ipfs_daemon_down_gives_clear_errors(cluster: Cluster) -> None:
    """A peer whose kubo stopped says so: its own listing fails with a 500 naming IPFS (the first item already
    failed, so no 200 + trailer), its /id carries the IPFS error, and the others report it as cluster_error."""
    only(cluster, "kubo", "the embedded node lives in the daemon's process and cannot stop on its own")
    up = [p for p in cluster if p.running_pid() is not None]
    assert len(up) >= 2
    cid = add_to_node(up[0], b"before the IPFS daemon stops")
    assert up[0].api("POST", f"/pins/{cid}?replication-min=-1&replication-max=-1")[0] == 200
    wait_for(lambda: all(node_has_pin(p, cid) for p in up), what="pinned on the running peers")
    victim = up[1]
    cluster.kubos[victim.index].stop()
    status, items, _ = stream(victim, "/pins?local=true")
    assert status == 500 and "IPFS" in items[0]["message"], items
    _, ident = victim.api("GET", "/id")
    assert ident["ipfs"]["error"], ident
    assert "> IPFS ERROR: " in ctl(victim, "id").stdout

    def victim_errored() -> dict[str, Any] | None:
        _, g = up[0].api("GET", f"/pins/{cid}")
        info = g["peer_map"][victim.identity]
        return info if info["status"] == "cluster_error" and info["error"] else None

    wait_for(victim_errored, what="cluster_error for the peer whose IPFS is down")

    # Every IPFS daemon down: the merged listing still lists the pinset (not an empty 204, which would claim
    # there are no pins), every peer's entry saying why it has no status.
    for p in up:
        cluster.kubos[p.index].stop()
    status, items, _ = stream(up[0], "/pins")
    assert status == 200 and cid in [item["cid"] for item in items], items
    ids = {p.identity for p in up}
    for item in items:  # a peer not allocated the pin is still "remote" (that needs no IPFS); others say why not
        running = [e for peer, e in item["peer_map"].items() if peer in ids]
        assert running and all(e["status"] == "remote" or "IPFS" in e["error"] for e in running), item
        if item["cid"] == cid:  # pinned everywhere
            assert {e["status"] for e in running} == {"cluster_error"} and len(running) == len(up), item
    # A filtered listing merges what each peer answers: nobody could, and it says so.
    status, items, _ = stream(up[0], "/pins?filter=pinned")
    assert status == 500 and "no peer could list its statuses" in items[0]["message"], items
