"""IPFS Cluster's own Go daemon (``ipfs-cluster-service`` 1.1.6) using pincluster's embedded IPFS node
(``pincluster-ipfs daemon``) as its IPFS daemon: a real kubo client, Go's ipfshttp connector, drives our kubo RPC
API through adding (CIDv0, and CIDv1 with raw leaves: Go's adder sends every block with ``block/put``), pinning,
status checks (``pin/ls``), unpinning, the free-space metric (``repo/stat``) and garbage collection
(``repo/gc``). The node must keep everything pinned and serve the files back byte for byte.
Skipped with ``PINCLUSTER_NO_GO_CLUSTER=1``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from pincluster.localnet import clean_env

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from embedded import EmbeddedNode
from kubo import go_cluster_binary

pytestmark = pytest.mark.timeout(180)


class GoPeer:
    def __init__(self, root: Path, node: EmbeddedNode) -> None:
        self.service, self.ctl_bin = go_cluster_binary("ipfs-cluster-service"), go_cluster_binary("ipfs-cluster-ctl")
        self.folder = root / "go"
        self.env = clean_env({"CLUSTER_SECRET": "5a" * 32, "CLUSTER_PEERNAME": "gopeer", "GOLOG_LOG_LEVEL": "error"})
        subprocess.run([str(self.service), "-c", str(self.folder), "init", "--consensus", "raft", "--randomports"],
                       env=self.env, check=True, capture_output=True, timeout=60)
        cfg = json.loads((self.folder / "service.json").read_text())
        cfg["ipfs_connector"]["ipfshttp"]["node_multiaddress"] = node.api_multiaddr
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
        peer = GoPeer(tmp_path, node)
        peer.wait("freespace:", "health", "metrics", "freespace")  # the connector read our repo/stat
        yield peer, node
    finally:
        if peer is not None:
            peer.stop()
        node.stop()


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
    cids = []
    for extra in ((), ("--cid-version", "1", "--raw-leaves")):
        code, out, err = peer.ctl("add", *extra, str(f))
        assert code == 0, err
        cids.append(out.split()[1])
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
    deadline = time.monotonic() + 30
    while cids[0] in json.loads(_node(node, "pin/ls?type=recursive"))["Keys"]:
        assert time.monotonic() < deadline, "Go's cluster did not unpin on the node"
        time.sleep(0.3)
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
