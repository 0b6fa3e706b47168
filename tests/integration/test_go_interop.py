"""IPFS Cluster's own Go daemon (``ipfs-cluster-service`` 1.1.6) and pincluster stacked both ways.

Go's cluster with pincluster underneath, as its IPFS daemon:

1. pincluster's embedded IPFS node (``pincluster-ipfs daemon``): a real kubo client, Go's ipfshttp connector,
   drives our kubo RPC API through adding (CIDv0, and CIDv1 with raw leaves: Go's adder sends every block with
   ``block/put``), pinning, status checks (``pin/ls``), unpinning, the free-space metric (``repo/stat``) and
   garbage collection (``repo/gc``). The node must keep everything pinned and serve the files back byte for
   byte.
2. a pincluster cluster's IPFS proxy (a composite cluster with Go's on top): Go's adds and pins become pins of
   our cluster, its free space is our cluster's, its unpin leaves our pinset.

And the other way round:

3. a pincluster peer whose IPFS daemon is Go's IPFS proxy (kubo beneath it): our connector and adder against
   Go's proxy, whose ``pin/ls`` answers from Go's pinset.

Skipped with ``PINCLUSTER_NO_GO_CLUSTER=1`` or ``PINCLUSTER_NO_KUBO=1`` (the third).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.integration.cluster_harness import ctl, init_peers, isolate_go_peer, start_cluster, stop_all, wait_for

from pincluster.localnet import clean_env

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from embedded import EmbeddedNode
from kubo import go_cluster_binary

pytestmark = pytest.mark.timeout(180)


class GoPeer:
    """A one-peer Go cluster whose IPFS daemon is at ``node_multiaddress``."""

    def __init__(self, root: Path, node_multiaddress: str, name: str = "gopeer") -> None:
        self.service, self.ctl_bin = go_cluster_binary("ipfs-cluster-service"), go_cluster_binary("ipfs-cluster-ctl")
        self.folder = root / "go"
        # a secret of its own: other tests' Go peers may run at the same time (see isolate_go_peer)
        self.env = clean_env({"CLUSTER_SECRET": secrets.token_hex(32), "CLUSTER_PEERNAME": name,
                              "GOLOG_LOG_LEVEL": "info"})
        subprocess.run([str(self.service), "-c", str(self.folder), "init", "--consensus", "raft", "--randomports"],
                       env=self.env, check=True, capture_output=True, timeout=60)
        cfg = isolate_go_peer(self.folder / "service.json")
        cfg["ipfs_connector"]["ipfshttp"]["node_multiaddress"] = node_multiaddress
        cfg["api"]["ipfsproxy"]["node_multiaddress"] = node_multiaddress
        self.proxy = cfg["api"]["ipfsproxy"]["listen_multiaddress"]
        (self.folder / "service.json").write_text(json.dumps(cfg, indent=2))
        self.rest = cfg["api"]["restapi"]["http_listen_multiaddress"]
        self.log = root / "go.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen([str(self.service), "-c", str(self.folder), "daemon"], stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env)

    def ctl(self, *args: str) -> tuple[int, str, str]:
        r = subprocess.run([str(self.ctl_bin), "--host", self.rest, *args], capture_output=True, text=True, timeout=120)
        return r.returncode, r.stdout, r.stderr

    def wait(self, check: str, *args: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        out = ""
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            code, out, _ = self.ctl(*args)
            if code == 0 and check in out:
                return out
            time.sleep(0.5)
        raise AssertionError(f"{args}: {check!r} not in {out!r}\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def go_on_ours(tmp_path: Path) -> Iterator[tuple[GoPeer, EmbeddedNode]]:
    node = EmbeddedNode(tmp_path / "node").start()
    peer = None
    try:
        peer = GoPeer(tmp_path, node.api_multiaddr)
        peer.wait("freespace:", "health", "metrics", "freespace")  # the connector read our repo/stat
        yield peer, node
    finally:
        if peer is not None:
            peer.stop()
        node.stop()


#: How aiohttp reports an answer cut short (see ``test_ours_on_top_of_gos_cluster_through_its_proxy``).
_TRUNCATED = "Not enough data to satisfy transfer length header"
#: What our ctl prints when Go's proxy spoilt a streamed ``block/put`` answer (see ``our_ctl`` below).
_PROXY_CUT = (_TRUNCATED, "kubo stored ")


def add_twice(add: Callable[..., tuple[int, str, str]], path: Path) -> list[str]:
    """``add`` the file at ``path`` as CIDv0, then as CIDv1 with raw leaves, through some ctl (``add(*args)``
    gives its exit code, stdout and stderr); the two CIDs."""
    cids = []
    for extra in ((), ("--cid-version", "1", "--raw-leaves")):
        code, out, err = add("add", *extra, str(path))
        assert code == 0, (out, err)
        cids.append(out.split()[1])
    return cids


def _node(node: EmbeddedNode, path: str) -> bytes:
    req = urllib.request.Request(f"{node.api_url}/api/v0/{path}", method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.read()  # type: ignore[no-any-return]


def test_gos_cluster_adds_pins_and_collects_on_the_embedded_node(go_on_ours: tuple[GoPeer, EmbeddedNode],
                                                                tmp_path: Path) -> None:
    peer, node = go_on_ours
    data = os.urandom(700_000)  # three chunks
    f = tmp_path / "f.bin"
    f.write_bytes(data)
    cids = add_twice(peer.ctl, f)
    assert cids[0].startswith("Qm") and cids[1].startswith("bafy")
    for cid in cids:
        peer.wait("PINNED", "status", cid)
        assert _node(node, f"cat?arg={cid}") == data
    keys = json.loads(_node(node, "pin/ls?type=recursive"))["Keys"]
    assert set(cids) <= set(keys)
    # GC through Go's cluster (repo/gc) keeps what is pinned
    code, out, err = peer.ctl("ipfs", "gc")
    assert code == 0 and "gopeer" in out, err
    verified = [json.loads(line) for line in _node(node, "pin/verify?verbose=true").splitlines()]
    for cid in cids:
        assert {"Cid": cid, "Ok": True} in verified
        assert _node(node, f"cat?arg={cid}") == data
    # unpin one through the cluster: gone from the node's pins; the other stays
    code, _, err = peer.ctl("pin", "rm", "--no-status", cids[0])
    assert code == 0, err
    wait_for(lambda: cids[0] not in json.loads(_node(node, "pin/ls?type=recursive"))["Keys"],
             "Go's cluster unpinning on the node", 30)
    assert cids[1] in json.loads(_node(node, "pin/ls?type=recursive"))["Keys"]
    # content the node holds unpinned, pinned through the cluster (pin/add with progress, then pin/ls)
    body = (b'--b\r\nContent-Disposition: form-data; name="file"; filename="g"\r\n'
            b"Content-Type: application/octet-stream\r\n\r\n" + os.urandom(300_000) + b"\r\n--b--\r\n")
    req = urllib.request.Request(f"{node.api_url}/api/v0/add?pin=false", data=body, method="POST",
                                 headers={"Content-Type": "multipart/form-data; boundary=b"})
    with urllib.request.urlopen(req, timeout=30) as r:
        held = json.loads(r.read().splitlines()[-1])["Hash"]
    assert held not in json.loads(_node(node, "pin/ls?type=recursive"))["Keys"]
    code, _, err = peer.ctl("pin", "add", held)
    assert code == 0, err
    peer.wait("PINNED", "status", held)
    assert held in json.loads(_node(node, "pin/ls?type=recursive"))["Keys"]


def test_gos_cluster_on_top_of_ours_through_the_proxy(tmp_path: Path) -> None:
    """A composite cluster with Go's on top: its IPFS daemon is our peer's proxy."""
    lower = init_peers(tmp_path / "lower", 2)
    peer = None
    try:
        start_cluster(lower)
        proxy = lower[0].service["api"]["ipfsproxy"]["listen_multiaddress"]
        peer = GoPeer(tmp_path, proxy[0] if isinstance(proxy, list) else proxy)
        peer.wait("freespace:", "health", "metrics", "freespace")  # the proxy's repo/stat: our cluster's
        data = os.urandom(700_000)
        f = tmp_path / "f.bin"
        f.write_bytes(data)
        cids = add_twice(peer.ctl, f)
        for cid in cids:
            peer.wait("PINNED", "status", cid)
            status, pins = lower[1].api("GET", "/allocations")  # in our shared pinset, seen from another peer
            assert status == 200 and cid in {p["cid"] for p in pins}, pins
        for p in lower:  # each lower peer pins it (replication -1) and serves it
            wait_for(lambda p=p: p.api("GET", f"/pins/{cids[1]}?local=true"), f"{cids[1]} pinned", 60,
                     done=lambda r: r[0] == 200 and all(v["status"] == "pinned" for v in r[1]["peer_map"].values()))
        code, _, err = peer.ctl("pin", "rm", "--no-status", cids[1])
        assert code == 0, err
        wait_for(lambda: cids[1] not in {p["cid"] for p in lower[1].api("GET", "/allocations")[1] or []},
                 "Go's unpin reaching our pinset", 30)
        assert cids[0] in {p["cid"] for p in lower[1].api("GET", "/allocations")[1] or []}
    finally:
        if peer is not None:
            peer.stop()
        stop_all(lower)


def test_ours_on_top_of_gos_cluster_through_its_proxy(tmp_path: Path) -> None:
    """A pincluster peer whose IPFS daemon is Go's proxy (kubo beneath): our adds, pins, statuses, recover, GC
    and unpins go through Go's hijacked endpoints, and become pins of Go's cluster."""
    from kubo import KuboDaemon, kubo_binary

    kubo = KuboDaemon(tmp_path / "kubo", binary=kubo_binary()).start()
    lower = upper = None
    try:
        lower = GoPeer(tmp_path, kubo.api_multiaddr, "lower")
        wait_for(lambda: "IPFS Cluster is READY" in lower.log.read_text() or lower.proc.poll() is not None,
                 "Go's peer ready", 60)
        assert lower.proc.poll() is None, lower.log.read_text()[-3000:]
        upper = init_peers(tmp_path / "upper", 1, ipfs="external",
                           service_changes={"ipfs_connector.ipfshttp.node_multiaddress": lower.proxy})
        start_cluster(upper)
        ours = upper[0]
        data = os.urandom(700_000)
        f = tmp_path / "f.bin"
        f.write_bytes(data)
        def our_ctl(*args: str) -> tuple[int, str, str]:
            res = ctl(ours, *args, check=False)
            if args[0] == "add" and any(symptom in res.stdout for symptom in _PROXY_CUT):
                # Go's proxy is an HTTP/1.1 reverse proxy without full duplex: when kubo starts answering a
                # streamed block/put before the upload ends, the proxy can cut the answer (seen once in ~5
                # parallel suite runs, under load), or the answer then stops matching the blocks sent (seen
                # once, in CI: our connector refuses the add). Go's own adder streams blocks the same way.
                # Once more:
                res = ctl(ours, *args, check=False)
            return res.returncode, res.stdout, res.stderr

        cids = add_twice(our_ctl, f)
        for cid in cids:
            lower.wait("PINNED", "status", cid)  # a pin of Go's cluster
            wait_for(lambda cid=cid: ctl(ours, "status", cid).stdout, f"{cid} pinned here", 30,
                     done=lambda out: "PINNED" in out)
        req = urllib.request.Request(f"{kubo.api_url}/api/v0/cat?arg={cids[1]}", method="POST")
        with urllib.request.urlopen(req, timeout=30) as r:
            assert r.read() == data  # our adder's blocks are in kubo, under Go's proxy
        assert ctl(ours, "recover").returncode == 0 and ctl(ours, "ipfs", "gc").returncode == 0
        assert "PINNED" in ctl(ours, "status", cids[0]).stdout
        res = ctl(ours, "pin", "rm", "--no-status", cids[1], check=False)
        assert res.returncode == 0, res.stderr
        wait_for(lambda: cids[1] not in lower.ctl("pin", "ls")[1], "our unpin reaching Go's pinset", 30)
        assert cids[0] in lower.ctl("pin", "ls")[1]
    finally:
        if upper is not None:
            stop_all(upper)
        if lower is not None:
            lower.stop()
        kubo.stop()
