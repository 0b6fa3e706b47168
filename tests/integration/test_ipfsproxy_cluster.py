"""The IPFS proxy of a real 3-peer cluster (embedded IPFS nodes), used over real sockets by plain HTTP and
by clients written by others: the real kubo CLI (``ipfs --api <proxy>``) and ``aioipfs``.

One cluster serves the module. Pins made through peer0's proxy must show up cluster-wide (``/allocations``
and ``/pins`` on the REST API); everything the proxy does not hijack (``cat``, ``version``) must come back
from the node unchanged.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.integration.cluster_harness import Peer, init_peers, start_cluster, stop_all
from tests.vectors import VECTORS, gen

pytestmark = pytest.mark.timeout(300)

SERVER = "ipfs-cluster/ipfsproxy/1.1.6"


def proxy_addr(peer: Peer) -> str:
    ma = peer.service["api"]["ipfsproxy"]["listen_multiaddress"]
    return str(ma[0] if isinstance(ma, list) else ma)


def proxy_url(peer: Peer) -> str:
    parts = proxy_addr(peer).split("/")
    return f"http://{parts[2]}:{parts[4]}"


def multipart(files: dict[str, bytes]) -> tuple[bytes, str]:
    boundary = secrets.token_hex(12)
    body = bytearray()
    for name, data in files.items():
        body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
                 f"filename=\"{urllib.parse.quote_plus(name)}\"\r\n"
                 "Content-Type: application/octet-stream\r\n\r\n").encode()
        body += data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return bytes(body), f"multipart/form-data; boundary={boundary}"


def call(peer: Peer, path: str, *, files: dict[str, bytes] | None = None,
         method: str = "POST", headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    headers = dict(headers or {})
    data: bytes | None = None
    if files is not None:
        data, headers["Content-Type"] = multipart(files)
    req = urllib.request.Request(proxy_url(peer) + "/api/v0/" + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def ndjson(body: bytes) -> list[Any]:
    return [json.loads(line) for line in body.splitlines() if line.strip()]


def wait_pinned(peer: Peer, cid: str, timeout: float = 40) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        status, last = peer.api("GET", f"/pins/{cid}")
        if status == 200 and last["peer_map"] and all(
                v["status"] in ("pinned", "remote") for v in last["peer_map"].values()):
            return last  # type: ignore[no-any-return]
        time.sleep(0.3)
    raise AssertionError(f"{cid} not pinned cluster-wide: {last}")


def eventually(check: Any, timeout: float = 10) -> None:
    """Raft followers apply a commit a moment after the leader answered: wait for another peer to see it."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the cluster did not converge"
        time.sleep(0.1)


def allocations(peer: Peer) -> set[str]:
    status, pins = peer.api("GET", "/allocations")
    assert status in (200, 204)
    return {p["cid"] for p in pins or []}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Peer]]:
    root = tmp_path_factory.mktemp("proxy3")
    peers: list[Peer] = []
    try:
        peers = init_peers(root, 3, service_changes={"cluster.replication_factor_min": 2,
                                                     "cluster.replication_factor_max": 2})
        for p in peers:  # init points the proxy at the embedded node, like the connector
            assert p.service["api"]["ipfsproxy"]["node_multiaddress"] == \
                p.service["ipfs_connector"]["ipfshttp"]["node_multiaddress"]
        start_cluster(peers, timeout=150)
        yield peers
    finally:
        stop_all(peers)


def test_add_through_proxy_gives_kubo_cids_and_cluster_pins(cluster: list[Peer]) -> None:
    p0 = cluster[0]
    data = gen(VECTORS["files"]["one_mib"]["size"])
    status, headers, body = call(p0, "add?progress=false", files={"one_mib.bin": data})
    assert status == 200, body
    out = ndjson(body)
    assert out[-1] == {"Name": "one_mib.bin", "Hash": VECTORS["files"]["one_mib"]["cid"],
                       "Size": out[-1]["Size"]}
    assert int(out[-1]["Size"]) > len(data)
    assert headers["Server"] == SERVER and headers["Content-Type"] == "application/json"
    cid = out[-1]["Hash"]
    g = wait_pinned(p0, cid)
    assert sum(1 for v in g["peer_map"].values() if v["status"] == "pinned") == 2  # rf 2 of 3
    # cat is reverse-proxied, streamed, and answers the node's own bytes
    status, headers, body = call(p0, f"cat?arg={cid}")
    assert status == 200 and body == data
    assert headers.get("Server") != SERVER
    status, _, body = call(p0, "version")
    assert status == 200 and "Version" in json.loads(body)


def test_pin_ls_update_rm_through_proxy(cluster: list[Peer]) -> None:
    p0, p1 = cluster[0], cluster[1]
    a, b = b"proxy content A " + os.urandom(16), b"proxy content B " + os.urandom(16)
    status, _, body = call(p0, "add?pin=false", files={"a": a})
    assert status == 200, body
    cid_a = ndjson(body)[-1]["Hash"]
    status, _, body = call(p0, "add?pin=false", files={"b": b})
    cid_b = ndjson(body)[-1]["Hash"]
    assert cid_a not in allocations(p0) and cid_b not in allocations(p0)

    status, headers, body = call(p0, f"pin/add?arg={cid_a}")
    assert status == 200 and json.loads(body) == {"Pins": [cid_a]}
    assert headers["Server"] == SERVER
    eventually(lambda: cid_a in allocations(p1))  # in the shared pinset, seen from another peer
    wait_pinned(p1, cid_a)

    status, headers, body = call(p0, "pin/ls?stream=true")
    assert status == 200 and headers.get("Trailer") == "X-Stream-Error"
    assert {"Cid": cid_a, "Type": "recursive"} in ndjson(body)
    status, _, body = call(p0, "pin/ls")
    assert json.loads(body)["Keys"][cid_a] == {"Type": "recursive"}
    status, _, body = call(p0, f"pin/ls?arg={cid_a}&stream=true")
    assert ndjson(body) == [{"Cid": cid_a, "Type": "recursive"}]
    status, _, body = call(p0, f"pin/ls?arg={cid_b}")
    assert status == 500 and json.loads(body) == {
        "Message": f"Error: path '{cid_b}' is not pinned", "Code": 0, "Type": "error"}

    status, _, body = call(p0, f"pin/update?arg={cid_a}&arg=/ipfs/{cid_b}")
    assert status == 200 and json.loads(body) == {"Pins": [cid_a, cid_b]}
    eventually(lambda: cid_b in allocations(p1) and cid_a not in allocations(p1))
    wait_pinned(p0, cid_b)

    status, _, body = call(p0, f"pin/rm?arg={cid_b}")
    assert status == 200 and json.loads(body) == {"Pins": [cid_b]}
    eventually(lambda: cid_b not in allocations(p1))
    status, _, body = call(p0, f"pin/rm?arg={cid_b}")
    assert status == 500 and json.loads(body)["Message"] == "not pinned or pinned indirectly"


def test_repo_stat_and_gc_are_cluster_wide(cluster: list[Peer]) -> None:
    p0 = cluster[0]
    status, headers, body = call(p0, "repo/stat?size-only=true")
    assert status == 200 and headers["Server"] == SERVER
    total = json.loads(body)
    sizes = []
    for p in cluster:
        req = urllib.request.Request(p.ipfs_api + "/repo/stat?size-only=true", method="POST")
        with urllib.request.urlopen(req, timeout=30) as resp:
            sizes.append(json.loads(resp.read()))
    assert total["StorageMax"] == sum(s["StorageMax"] for s in sizes)
    assert total["RepoSize"] >= max(s["RepoSize"] for s in sizes) > 0
    status, headers, body = call(p0, "repo/gc")
    assert status == 200 and headers.get("Trailer") == "X-Stream-Error"
    assert all("Key" in obj and "/" in obj["Key"] for obj in ndjson(body))


def kubo_cli(binary: Path, peer: Peer, ipfs_path: Path, *args: str, stdin: bytes | None = None) -> str:
    res = subprocess.run([str(binary), "--api", proxy_addr(peer), *args], input=stdin, capture_output=True,
                         timeout=60, env={**os.environ, "IPFS_PATH": str(ipfs_path)})
    assert res.returncode == 0, (args, res.stdout, res.stderr)
    return res.stdout.decode()


def test_kubo_cli_through_proxy(cluster: list[Peer], tmp_path: Path) -> None:
    from tests.kubo import kubo_binary

    binary = kubo_binary()
    p0, p2 = cluster[0], cluster[2]
    home = tmp_path / "ipfs-home"
    home.mkdir()
    f = tmp_path / "hello.txt"
    f.write_bytes(b"hello world\n")
    cid = kubo_cli(binary, p0, home, "add", "-Q", str(f)).strip()
    assert cid == VECTORS["files"]["hello_world_nl"]["cid"]
    eventually(lambda: cid in allocations(p2))
    assert kubo_cli(binary, p0, home, "cat", cid).encode() == b"hello world\n"
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "a.txt").write_bytes(b"hello world\n")
    root = kubo_cli(binary, p0, home, "add", "-r", "-Q", str(folder)).strip()
    sub = kubo_cli(binary, p0, home, "ls", root).split()  # the embedded node's ls, through the proxy
    assert sub[1:] == ["-", "sub/"] and sub[0].startswith("Qm")
    assert kubo_cli(binary, p0, home, "ls", f"{root}/sub") == f"{cid} 12 a.txt\n"

    other = tmp_path / "other.bin"
    other.write_bytes(os.urandom(3000))
    cid2 = kubo_cli(binary, p0, home, "add", "-Q", "--pin=false", str(other)).strip()
    assert cid2 not in allocations(p2)
    assert cid2 in kubo_cli(binary, p0, home, "pin", "add", cid2)
    eventually(lambda: cid2 in allocations(p2))
    listed = kubo_cli(binary, p0, home, "pin", "ls", "--type=recursive")
    assert f"{cid2} recursive" in listed and f"{cid} recursive" in listed
    assert kubo_cli(binary, p0, home, "pin", "ls", "--stream", cid2).split()[:2] == [cid2, "recursive"]
    third = tmp_path / "third.bin"
    third.write_bytes(os.urandom(2000))
    cid3 = kubo_cli(binary, p0, home, "add", "-Q", "--pin=false", str(third)).strip()
    kubo_cli(binary, p0, home, "pin", "update", cid2, cid3)
    eventually(lambda: cid3 in allocations(p2) and cid2 not in allocations(p2))
    kubo_cli(binary, p0, home, "pin", "rm", cid3)
    eventually(lambda: cid3 not in allocations(p2))
    stat = kubo_cli(binary, p0, home, "repo", "stat", "--size-only")
    assert "RepoSize" in stat and "StorageMax" in stat
    kubo_cli(binary, p0, home, "repo", "gc", "--quiet")


async def test_aioipfs_through_proxy(cluster: list[Peer]) -> None:
    aioipfs = pytest.importorskip("aioipfs")
    parts = proxy_addr(cluster[0]).split("/")
    client = aioipfs.AsyncIPFS(host=parts[2], port=int(parts[4]))
    try:
        data = b"aioipfs through the cluster proxy " + os.urandom(8)
        added = [x async for x in client.add_bytes(data)] if hasattr(client.add_bytes, "__aiter__") else \
            [await client.add_bytes(data)]
        cid = added[-1]["Hash"]
        eventually(lambda: cid in allocations(cluster[1]))
        assert await client.cat(cid) == data
        pinned = await client.pin.ls(path=cid)
        assert cid in pinned["Keys"]
        await client.pin.rm(cid)
        eventually(lambda: cid not in allocations(cluster[1]))
    finally:
        await client.close()


def test_block_put_with_pin_is_cluster_pinned(cluster: list[Peer]) -> None:
    p0, p1 = cluster[0], cluster[1]
    block = b"a raw block for the cluster " + os.urandom(16)
    status, headers, body = call(p0, "block/put?cid-codec=raw&pin=true", files={"blk": block})
    assert status == 200 and headers["Server"] == SERVER, body
    key = ndjson(body)[0]["Key"]
    eventually(lambda: key in allocations(p1))
    wait_pinned(p1, key)
    status, _, body = call(p0, "block/put?cid-codec=raw", files={"blk": block + b"!"})  # no pin: node only
    assert status == 200 and ndjson(body)[0]["Key"] not in allocations(p0)


def test_cross_site_requests_are_refused_as_the_node_refuses_them(cluster: list[Peer]) -> None:
    """A web page must not make the cluster pin or unpin through the proxy: an origin the embedded node does
    not allow gets kubo's 403 before anything runs (Go's proxy runs it), the node's own origin is served, and
    GET (which an ``<img>`` can send) is the node's 405, not a cluster pin."""
    p0, p1 = cluster[0], cluster[1]
    status, _, body = call(p0, "add?pin=false", files={"c": b"cross-site " + os.urandom(16)})
    cid = ndjson(body)[-1]["Hash"]
    node_port = p0.service["ipfs_connector"]["ipfshttp"]["node_multiaddress"].split("/")[4]
    for headers in ({"Origin": "http://evil.example"}, {"Referer": "http://evil.example/page"},
                    {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64)"}):
        status, got, body = call(p0, f"pin/add?arg={cid}", headers=headers)
        assert (status, body) == (403, b"403 - Forbidden\n"), headers
        assert got.get("Server") != SERVER
    status, _, body = call(p0, f"pin/add?arg={cid}", method="GET")
    assert (status, body) == (405, b"405 - Method Not Allowed\n")
    time.sleep(1)
    assert cid not in allocations(p1)
    origin = f"http://127.0.0.1:{node_port}"  # the embedded node allows its own origin
    status, got, body = call(p0, f"pin/add?arg={cid}", headers={"Origin": origin})
    assert status == 200 and json.loads(body) == {"Pins": [cid]}
    assert got["Access-Control-Allow-Origin"] == origin and got["Server"] == SERVER
    eventually(lambda: cid in allocations(p1))
    status, _, _ = call(p0, f"pin/rm?arg={cid}", headers={"Origin": "http://evil.example"})
    assert status == 403
    time.sleep(1)
    assert cid in allocations(p1)
    status, _, _ = call(p0, f"pin/rm?arg={cid}")
    assert status == 200
    eventually(lambda: cid not in allocations(p1))


def test_slow_headers_are_cut_off_after_read_header_timeout(cluster: list[Peer]) -> None:
    """``read_header_timeout`` (5 s, as Go) on the daemon's REST API and IPFS proxy: a client that sends a
    header line every second, never finishing, is disconnected after ~5 s, not after the idle timeout."""
    import socket
    import threading

    p0 = cluster[0]
    results: dict[str, float] = {}

    def drip(name: str, url: str) -> None:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=30) as s:
            t0 = time.monotonic()
            s.sendall(b"GET /id HTTP/1.1\r\nHost: x\r\n")
            try:
                for _ in range(25):
                    time.sleep(1)
                    s.sendall(b"X-Slow: 1\r\n")
                    s.settimeout(0.01)
                    try:
                        if s.recv(1) == b"":
                            break
                    except TimeoutError:
                        pass
                    s.settimeout(30)
            except OSError:  # reset while sending: closed
                pass
            results[name] = time.monotonic() - t0

    threads = [threading.Thread(target=drip, args=(n, u)) for n, u in (("rest", p0.rest), ("proxy", proxy_url(p0)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert set(results) == {"rest", "proxy"} and all(4.5 < v < 9 for v in results.values()), results
