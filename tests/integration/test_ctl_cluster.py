"""A real 3-peer cluster driven only through ``ipfs-cluster-ctl`` subprocesses (issue 7).

Each command's output is checked against the text formats of spec §5.3 (``ctl_formats``: regular expressions
with peer IDs, CIDs and times as patterns and everything else literal) and, with ``--enc json``, parsed.
One cluster serves the module; the test that stops a peer runs last.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from tests.integration.cluster_harness import Peer, clean_env, running_cluster
from tests.integration.ctl_formats import (
    CID_RE,
    HUMAN_BYTES,
    PEER,
    GPIText,
    IDText,
    full,
    json_stream,
    parse_added,
    parse_alerts,
    parse_dot,
    parse_error,
    parse_gpis,
    parse_ids,
    parse_metrics,
    parse_pins,
    parse_quiet,
    parse_repo_gc,
)
from tests.vectors import VECTORS, content

from pincluster.localnet import CTL
from pincluster.types.cid import CID, RAW, sha256_multihash

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kubo import kubo_cli  # type: ignore[import-not-found,unused-ignore]

pytestmark = pytest.mark.timeout(300)

T = TypeVar("T")


# --- the cluster and the ctl ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Peer]]:
    root = tmp_path_factory.mktemp("ctl3")
    # a short pin_timeout turns unreachable content into pin_error quickly; no automatic recover in between
    with running_cluster(root, 3, service_changes={"ipfs_connector.ipfshttp.pin_timeout": "3s",
                                                 "cluster.pin_recover_interval": "10m"}) as peers:
        yield peers


@pytest.fixture(scope="module")
def names(cluster: list[Peer]) -> dict[str, str]:
    """peername -> peer ID."""
    return {f"peer{p.index}": p.identity for p in cluster}


def ctl(peer: Peer | str, *args: str, rc: int = 0, cwd: Path | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``ipfs-cluster-ctl --host <peer's REST API> args…``; checks the exit code."""
    host = peer.rest_multiaddr if isinstance(peer, Peer) else peer
    res = subprocess.run([CTL, "--host", host, *args], capture_output=True, text=True, timeout=timeout,
                         env=clean_env(), cwd=cwd)
    assert res.returncode == rc, (f"ipfs-cluster-ctl {' '.join(args)}: exit {res.returncode}, wanted {rc}\n"
                                  f"stdout: {res.stdout}\nstderr: {res.stderr}")
    return res


def out(peer: Peer | str, *args: str, **kw: Any) -> str:
    res = ctl(peer, *args, **kw)
    assert res.stderr == "", res.stderr
    return res.stdout


def poll(fn: Callable[[], T | None], what: str, timeout: float = 40, every: float = 0.5) -> T:
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def status_of(peer: Peer, cid: str, names: dict[str, str], *flags: str) -> GPIText:
    (gpi,) = parse_gpis(out(peer, "status", *flags, cid), names)
    assert gpi.cid == cid
    return gpi


def unique_raw(tmp: Path, name: str) -> tuple[Path, str]:
    """A fresh small file and its CIDv1 (raw leaf): what ``add --cid-version 1`` will print for it."""
    data = os.urandom(2000)
    path = tmp / name
    path.write_bytes(data)
    return path, str(CID.v1(RAW, sha256_multihash(data)))


def kubo_add(args: list[str], cwd: Path) -> str | None:
    """``ipfs add -n …`` by the real kubo binary, or None when kubo is not available."""
    try:
        ipfs = kubo_cli(cwd / ".kubo-repo")
    except pytest.skip.Exception:
        return None
    return ipfs("add", "-n", *args, cwd=cwd).decode()


# --- id, peers, version ------------------------------------------------------------------------------------------
def test_id_peers_ls_and_version(cluster: list[Peer], names: dict[str, str]) -> None:
    ids = set(names.values())
    (me,) = parse_ids(out(cluster[0], "id"))
    assert isinstance(me, IDText)
    assert (me.id, me.peername, me.sees) == (cluster[0].identity, "peer0", 2)
    assert me.addresses and all(a.endswith("/p2p/" + me.id) for a in me.addresses)
    assert me.ipfs_addresses and all(a.endswith("/p2p/" + me.ipfs_id) for a in me.ipfs_addresses)
    (js,) = json_stream(out(cluster[0], "--enc", "json", "id"))
    assert js["id"] == me.id and set(js["cluster_peers"]) == ids and js["version"] == "1.1.6"
    assert js["ipfs"]["id"] == me.ipfs_id and js["peername"] == "peer0"

    listed = parse_ids(out(cluster[1], "peers", "ls"))
    assert len(listed) == 3
    assert all(isinstance(x, IDText) and x.sees == 2 for x in listed)
    assert {x.id: x.peername for x in listed if isinstance(x, IDText)} == {v: k for k, v in names.items()}
    assert len({x.ipfs_id for x in listed if isinstance(x, IDText)}) == 3
    assert {x["id"] for x in json_stream(out(cluster[1], "--enc", "json", "peers", "ls"))} == ids

    assert out(cluster[2], "version") == "1.1.6\n"
    assert json_stream(out(cluster[2], "--enc", "json", "version")) == [{"version": "1.1.6"}]


# --- add ----------------------------------------------------------------------------------------------------------
def test_add_file_rf2_wait_pins_on_two_and_remote_on_third(cluster: list[Peer], names: dict[str, str],
                                                           tmp_path: Path) -> None:
    f = tmp_path / "two.bin"
    f.write_bytes(os.urandom(600_000))  # three chunks and a root
    ((cid, name),) = parse_added(out(cluster[0], "add", "--rmin", "2", "--rmax", "2", "--wait", "--wt", "60s",
                                     str(f)))
    assert name == "two.bin"
    gpi = status_of(cluster[1], cid, names)
    assert sorted(gpi.statuses().values()) == ["PINNED", "PINNED", "REMOTE"], gpi
    assert set(gpi.statuses()) == set(names)
    assert all(p.error == "" for p in gpi.peers)
    (pin,) = parse_pins(out(cluster[2], "pin", "ls", cid))
    assert (pin.cid, pin.type, pin.rmin, pin.rmax, pin.depth, pin.metadata, pin.expires) == (
        cid, "PIN", 2, 2, "Recursive", False, "∞")
    pinned = {names[p.who] for p in gpi.peers if p.status == "PINNED"}
    assert pin.allocations is not None and set(pin.allocations) == pinned
    (js,) = json_stream(out(cluster[2], "--enc", "json", "status", cid))
    assert js["cid"] == cid and sorted(v["status"] for v in js["peer_map"].values()) == ["pinned", "pinned", "remote"]
    assert {k: v["peername"] for k, v in js["peer_map"].items()} == {v: k for k, v in names.items()}


def write_tree(root: Path, entries: dict[str, str]) -> None:
    for rel, spec in entries.items():
        p = root / rel
        if rel.endswith("/"):
            p.mkdir(parents=True, exist_ok=True)
            continue
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content(spec))


def test_add_directory_every_line_and_order(cluster: list[Peer], tmp_path: Path) -> None:
    vec = VECTORS["directories"]["dir_tree"]
    write_tree(tmp_path / "dir_tree", vec["entries"])
    (tmp_path / "dir_tree" / ".hidden").write_bytes(b"not added without -H")
    text = out(cluster[1], "add", "-r", "dir_tree", cwd=tmp_path)
    lines = parse_added(text)
    by_name = dict((n, c) for c, n in lines)
    assert by_name == {"dir_tree" + ("/" + k if k else ""): v
                       for k, v in [("", vec["cid"]), *vec["children_cids"].items()]}
    names_in_order = [n for _, n in lines]
    assert names_in_order[-1] == "dir_tree"
    assert names_in_order.index("dir_tree/sub/c.bin") < names_in_order.index("dir_tree/sub")
    kubo = kubo_add(["-r", "dir_tree"], tmp_path)
    if kubo is not None:
        assert text == kubo, f"ctl:\n{text}\nkubo:\n{kubo}"

    # -q: the CIDs alone, same order; -Q: only the root; --no-stream: same lines at the end; json array
    assert parse_quiet(out(cluster[2], "add", "-q", "-r", "dir_tree", cwd=tmp_path)) == [c for c, _ in lines]
    assert out(cluster[2], "add", "--quieter", "-r", "dir_tree", cwd=tmp_path) == vec["cid"] + "\n"
    assert out(cluster[0], "add", "--no-stream", "-r", "dir_tree", cwd=tmp_path) == text
    (arr,) = json_stream(out(cluster[0], "--enc", "json", "add", "--no-stream", "-r", "dir_tree", cwd=tmp_path))
    assert [(x["cid"], x["name"]) for x in arr] == lines and all(isinstance(x["size"], int) for x in arr)
    (last,) = json_stream(out(cluster[0], "--enc", "json", "add", "--no-stream", "-Q", "-r", "dir_tree",
                              cwd=tmp_path))
    assert [(x["cid"], x["name"]) for x in last] == [(vec["cid"], "dir_tree")]
    # -H includes the hidden file, which changes the root
    hidden = parse_added(out(cluster[0], "add", "-r", "-H", "dir_tree", cwd=tmp_path))
    assert ("dir_tree/.hidden" in {n for _, n in hidden}) and hidden[-1][0] != vec["cid"]


def test_add_cid_version_raw_leaves_wrap(cluster: list[Peer], names: dict[str, str], tmp_path: Path) -> None:
    small, raw_cid = unique_raw(tmp_path, "small.txt")
    assert parse_added(out(cluster[0], "add", "--cid-version", "1", str(small))) == [(raw_cid, "small.txt")]
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(300_000))  # two chunks: raw leaves change the root
    ((v0, _),) = parse_added(out(cluster[1], "add", "big.bin", cwd=tmp_path))
    ((rl, _),) = parse_added(out(cluster[1], "add", "--raw-leaves", "big.bin", cwd=tmp_path))
    assert v0.startswith("Qm") and rl.startswith("Qm") and v0 != rl
    kubo_rl = kubo_add(["--raw-leaves", "-Q", "big.bin"], tmp_path)
    if kubo_rl is not None:
        assert kubo_rl == rl + "\n"
    wrapped = out(cluster[2], "add", "-w", "small.txt", cwd=tmp_path)
    lines = parse_added(wrapped)
    assert len(lines) == 2 and lines[0][1] == "small.txt" and lines[1][1] == ""
    assert wrapped.endswith(f"added {lines[1][0]} \n"), "the wrapper has an empty name after a space"
    kubo_w = kubo_add(["-w", "small.txt"], tmp_path)
    if kubo_w is not None:
        assert wrapped == kubo_w
    (js,) = json_stream(out(cluster[2], "--enc", "json", "add", "small.txt", cwd=tmp_path))
    assert js["name"] == "small.txt" and re.fullmatch(CID_RE, js["cid"]) and js["size"] > 2000

    # hash, layout and chunker reach the importer: kubo gives the same CID for the same flags
    ((odd, _),) = parse_added(out(cluster[0], "add", "--hash", "blake2b-256", "--layout", "trickle", "--chunker",
                                  "size-1000", "big.bin", cwd=tmp_path))
    assert odd.startswith("bafykbzace")  # CIDv1 (forced by the hash), blake2b-256 multihash
    kubo_odd = kubo_add(["--hash", "blake2b-256", "--trickle", "--chunker", "size-1000", "-Q", "big.bin"], tmp_path)
    if kubo_odd is not None:
        assert kubo_odd == odd + "\n"

    # a web URL is added as a file named after its last path segment
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/small.txt"
        assert parse_added(out(cluster[1], "add", "--cid-version", "1", url)) == [(raw_cid, "small.txt")]
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_add_every_vector_file_prints_its_cid(cluster: list[Peer], tmp_path: Path) -> None:
    files = VECTORS["files"]
    for name, vec in files.items():
        (tmp_path / name).write_bytes(content(vec["content"]))
    for i, (name, vec) in enumerate(files.items()):
        assert out(cluster[i % 3], "add", name, cwd=tmp_path) == f"added {vec['cid']} {name}\n", name
    # the CIDv1 raw-leaves CIDs (checked against kubo 0.42 too): one call, several paths (wrapped)
    v1 = dict((n, c) for c, n in parse_added(out(cluster[0], "add", "--cid-version", "1", *files, cwd=tmp_path)))
    for name, vec in files.items():
        assert v1[name] == vec["cidv1_rawleaves_js_ipfs_only"], name


# --- pin add / ls / update / rm ---------------------------------------------------------------------------------------
def test_pin_add_options_and_pin_ls(cluster: list[Peer], names: dict[str, str], tmp_path: Path) -> None:
    f = tmp_path / "p.bin"
    f.write_bytes(os.urandom(5000))
    cid = out(cluster[0], "add", "-Q", "--no-pin", str(f)).strip()
    before = datetime.now(UTC)
    text = out(cluster[1], "pin", "add", "--rmin", "2", "--rmax", "2", "--name", "named pin", "--expire-in", "1h",
               "--metadata", "k=v", "--wait", "--wait-timeout", "60s", cid)
    (gpi,) = parse_gpis(text, names)
    assert (gpi.cid, gpi.name) == (cid, "named pin")
    assert sorted(gpi.statuses().values()).count("PINNED") >= 2
    (pin,) = parse_pins(out(cluster[2], "pin", "ls", cid))
    assert (pin.name, pin.rmin, pin.rmax, pin.metadata, pin.depth) == ("named pin", 2, 2, True, "Recursive")
    assert pin.allocations is not None and len(pin.allocations) == 2
    exp = datetime.strptime(pin.expires, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    assert abs(exp - (before + timedelta(hours=1))) < timedelta(minutes=2), pin.expires
    added = datetime.strptime(pin.added, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    assert abs(added - before) < timedelta(minutes=2)
    (js,) = json_stream(out(cluster[2], "--enc", "json", "pin", "ls", cid))
    assert js["name"] == "named pin" and js["metadata"] == {"k": "v"} and js["replication_factor_min"] == 2

    # direct mode, -r 1, user allocations; --wait with --no-status waits first, then prints the pin line
    g = tmp_path / "d.bin"
    g.write_bytes(os.urandom(3000))
    cid2 = out(cluster[0], "add", "-Q", "--no-pin", str(g)).strip()
    (p2,) = parse_pins(out(cluster[0], "pin", "add", "--mode", "direct", "-r", "1", "--allocs", names["peer2"],
                           "--wait", "--wait-limit", "1", "--wt", "60s", "--no-status", cid2))
    assert (p2.cid, p2.type, p2.depth, p2.rmin, p2.rmax, p2.expires) == (cid2, "PIN-DIRECT", "Direct", 1, 1, "∞")
    assert p2.allocations == [names["peer2"]]
    assert status_of(cluster[2], cid2, names, "--local").statuses() == {"peer2": "PINNED"}
    res = ctl(cluster[0], "pin", "add", "--allocs", "peerX", cid2, rc=1)
    assert res.stderr == "error decoding allocations: some peer IDs could not be decoded\n"

    listed = parse_pins(out(cluster[1], "pin", "ls"))
    assert {cid, cid2} <= {p.cid for p in listed}
    assert {p.cid for p in parse_pins(out(cluster[1], "pin", "ls", "--filter", "pin"))} == {p.cid for p in listed}
    assert out(cluster[1], "pin", "ls", "--filter", "meta-pin") == ""
    assert {x["cid"] for x in json_stream(out(cluster[1], "--enc", "json", "pin", "ls"))} == {p.cid for p in listed}


def test_pin_wait_timeout_exits_62(cluster: list[Peer], tmp_path: Path) -> None:
    _, nobody = unique_raw(tmp_path, "never-provided")
    res = ctl(cluster[0], "pin", "add", "--wait", "--wait-timeout", "2s", nobody, rc=62)
    assert res.stderr == "error waiting for pin status: context deadline exceeded\n" and res.stdout == ""
    ctl(cluster[0], "pin", "rm", "--no-status", nobody)


def test_pin_update_then_rm_wait(cluster: list[Peer], names: dict[str, str], tmp_path: Path) -> None:
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_bytes(os.urandom(4000))
    b.write_bytes(os.urandom(4000))
    old = out(cluster[0], "add", "-Q", "--rmin", "2", "--rmax", "2", "--name", "v1", "--wait", str(a)).strip()
    new = out(cluster[0], "add", "-Q", "--no-pin", str(b)).strip()
    (gpi,) = parse_gpis(out(cluster[1], "pin", "update", "--wait", old, new), names)
    assert (gpi.cid, gpi.name) == (new, "v1")  # options, name included, come from the existing pin
    (p_old,) = parse_pins(out(cluster[1], "pin", "ls", old))
    (p_new,) = parse_pins(out(cluster[1], "pin", "ls", new))
    assert p_new.allocations == p_old.allocations and (p_new.rmin, p_new.rmax) == (2, 2)

    (gone,) = parse_gpis(out(cluster[2], "pin", "rm", "--wait", "--wt", "60s", new), names)
    assert gone.cid == new and set(gone.statuses().values()) == {"UNPINNED"} and len(gone.peers) == 3
    res = ctl(cluster[2], "pin", "ls", new, rc=2)
    assert parse_error(res.stdout) == (404, "pin is not part of the pinset")
    assert {p.cid for p in parse_pins(out(cluster[2], "pin", "ls"))} >= {old}


# --- status, recover, sync ------------------------------------------------------------------------------------
def test_status_all_filter_and_local(cluster: list[Peer], names: dict[str, str], tmp_path: Path) -> None:
    f1, f2 = tmp_path / "s1", tmp_path / "s2"
    f1.write_bytes(os.urandom(1000))
    f2.write_bytes(os.urandom(1000))
    c1 = out(cluster[0], "add", "-Q", "--wait", str(f1)).strip()
    c2 = out(cluster[0], "add", "-Q", "--rmin", "1", "--rmax", "1", "--wait", str(f2)).strip()

    everything = parse_gpis(out(cluster[1], "status"), names)
    by_cid = {g.cid: g for g in everything}
    assert {c1, c2} <= set(by_cid)
    assert all(len(g.peers) == 3 for g in everything)
    assert set(by_cid[c1].statuses().values()) == {"PINNED"}
    assert sorted(by_cid[c2].statuses().values()) == ["PINNED", "REMOTE", "REMOTE"]

    two = parse_gpis(out(cluster[1], "status", c1, c2), names)
    assert {g.cid for g in two} == {c1, c2}

    # --enc json of a listing (written again from the values as sent): the REST API's items, every field
    listed = {x["cid"]: x for x in json_stream(out(cluster[1], "--enc", "json", "status"))}
    status, api_items = cluster[1].api("GET", "/pins")

    def steady(g: dict[str, Any]) -> dict[str, Any]:  # the time a peer looked differs between two listings
        return {**g, "peer_map": {k: {f: v for f, v in e.items() if f != "timestamp"}
                                  for k, e in g["peer_map"].items()}}

    assert status == 200 and {c1, c2} <= set(listed)
    for g in api_items:
        if g["cid"] in (c1, c2):
            assert steady(listed[g["cid"]]) == steady(g)

    for g in parse_gpis(out(cluster[2], "status", "--filter", "pinned,error"), names):
        assert {p.status for p in g.peers} <= {"PINNED", "CLUSTER_ERROR", "PIN_ERROR", "UNPIN_ERROR"}, g
    only_pinned = {g.cid: g for g in parse_gpis(out(cluster[2], "status", "--filter", "pinned"), names)}
    assert len(only_pinned[c2].peers) == 1 and only_pinned[c2].peers[0].status == "PINNED"
    remote = {g.cid for g in parse_gpis(out(cluster[2], "status", "--filter", "remote"), names)}
    assert c2 in remote and c1 not in remote

    local = parse_gpis(out(cluster[2], "status", "--local"), names)
    assert local and all([p.who for p in g.peers] == ["peer2"] for g in local)
    assert [p.who for p in status_of(cluster[0], c1, names, "--local").peers] == ["peer0"]
    res = ctl(cluster[0], "status", "--filter", "bogus", rc=1)
    assert res.stderr == "error parsing filter flag: invalid filter name\n" and res.stdout == ""


def test_recover_one_all_and_local(cluster: list[Peer], names: dict[str, str], tmp_path: Path) -> None:
    f1, x1 = unique_raw(tmp_path, "x1.bin")
    f2, x2 = unique_raw(tmp_path, "x2.bin")
    for x in (x1, x2):  # nobody has the blocks: pin_error on every peer after pin_timeout (3 s)
        ctl(cluster[0], "pin", "add", "--no-status", x)
    def all_failed(x: str) -> bool:
        return set(status_of(cluster[1], x, names).statuses().values()) == {"PIN_ERROR"}

    for x in (x1, x2):
        poll(functools.partial(all_failed, x), f"{x} in pin_error everywhere")
    gpi = status_of(cluster[1], x1, names)
    assert all(p.error and p.attempts >= 1 for p in gpi.peers), gpi
    assert {x1, x2} <= {g.cid for g in parse_gpis(out(cluster[2], "status", "--filter", "error"), names)}

    # provide the blocks on peer0 only (not pinned there): the others fetch them over the private swarm
    for f, x in ((f1, x1), (f2, x2)):
        assert out(cluster[0], "add", "--local", "--no-pin", "--cid-version", "1", "-Q", str(f)) == x + "\n"

    (rec,) = parse_gpis(out(cluster[1], "recover", x1), names)
    assert rec.cid == x1 and len(rec.peers) == 3
    assert {p.status for p in rec.peers} <= {"PIN_QUEUED", "PINNING", "PINNED"}, rec
    poll(lambda: set(status_of(cluster[2], x1, names).statuses().values()) == {"PINNED"}, f"{x1} pinned")

    (loc,) = parse_gpis(out(cluster[1], "recover", "--local", x2), names)
    assert loc.cid == x2 and [p.who for p in loc.peers] == ["peer1"]
    assert loc.peers[0].status in {"PIN_QUEUED", "PINNING", "PINNED"}
    poll(lambda: status_of(cluster[1], x2, names).statuses()["peer1"] == "PINNED", "x2 pinned on peer1")
    assert status_of(cluster[1], x2, names).statuses()["peer0"] == "PIN_ERROR"

    requeued = parse_gpis(out(cluster[2], "recover"), names)
    assert x2 in {g.cid for g in requeued}, requeued
    for g in requeued:
        assert {p.status for p in g.peers} <= {"PIN_QUEUED", "PINNING", "PINNED", "UNPIN_QUEUED", "UNPINNING",
                                               "UNPINNED", "REMOTE"}, g
    poll(lambda: set(status_of(cluster[0], x2, names).statuses().values()) == {"PINNED"}, f"{x2} pinned")
    assert out(cluster[0], "recover", "--local") == ""  # nothing left in error


def test_sync_prints_statuses(cluster: list[Peer], names: dict[str, str], tmp_path: Path) -> None:
    f = tmp_path / "sync.txt"
    f.write_bytes(os.urandom(800))
    cid = out(cluster[0], "add", "-Q", "--wait", str(f)).strip()
    (one,) = parse_gpis(out(cluster[1], "sync", cid), names)
    assert one.cid == cid and set(one.statuses().values()) == {"PINNED"}
    assert cid in {g.cid for g in parse_gpis(out(cluster[1], "sync"), names)}


# --- health, ipfs gc -------------------------------------------------------------------------------------------------
def test_health_graph(cluster: list[Peer], names: dict[str, str], tmp_path: Path) -> None:
    text = out(cluster[0], "health", "graph")
    dot = parse_dot(text)
    assert sorted(v[0] for v in dot.cluster_nodes.values()) == sorted(names.values())
    me = [n for n, (pid, _) in dot.cluster_nodes.items() if pid == cluster[0].identity]
    assert me == [dot.self_node]
    assert len(dot.ipfs_nodes) == 3
    assert len(dot.cluster_edges) == 6 and all(a != b for a, b in dot.cluster_edges)
    assert sorted(a for a, _ in dot.to_ipfs_edges) == sorted(dot.cluster_nodes)
    assert {b for _, b in dot.to_ipfs_edges} == set(dot.ipfs_nodes)
    assert len(dot.ipfs_edges) == 6  # the three embedded nodes all see each other in the private swarm
    every = parse_dot(out(cluster[0], "health", "graph", "--all-ipfs-peers"))
    assert set(every.ipfs_nodes.values()) >= set(dot.ipfs_nodes.values())
    target = tmp_path / "g.dot"
    assert out(cluster[0], "health", "graph", "-f", str(target)) == ""
    assert target.read_text() == text


def test_health_metrics(cluster: list[Peer], names: dict[str, str]) -> None:
    metric_names = out(cluster[1], "health", "metrics").split("\n")
    assert metric_names[-1] == "" and {"freespace", "ping"} <= set(metric_names[:-1])
    assert all(re.fullmatch(r"[a-z]+(?::[a-z]+)?", n) for n in metric_names[:-1])
    assert json_stream(out(cluster[1], "--enc", "json", "health", "metrics")) == [metric_names[:-1]]
    free = parse_metrics(out(cluster[1], "health", "metrics", "freespace"), "freespace")
    assert sorted(p for p, _ in free) == sorted(names.values())
    (js,) = json_stream(out(cluster[1], "--enc", "json", "health", "metrics", "freespace"))
    assert {m["peer"] for m in js} == set(names.values()) and all(m["name"] == "freespace" for m in js)
    assert all(int(m["value"]) == m["weight"] > 0 for m in js)
    pings = parse_metrics(out(cluster[1], "health", "metrics", "ping"), "ping")
    assert sorted(p for p, _ in pings) == sorted(names.values())


RPC_PROTO, RAFT_PROTO = "/pincluster/rpc/3.0", "/pincluster/raft/2"


def test_health_bandwidth_counts_each_peers_rpc_and_raft_traffic(cluster: list[Peer]) -> None:
    def report(peer: Peer) -> dict[str, dict[str, Any]]:
        (js,) = json_stream(out(peer, "--enc", "json", "health", "bandwidth"))
        assert isinstance(js, dict)
        return js

    before = [report(p) for p in cluster]
    for js in before:  # three peers talk: each has moved bytes both ways on both
        assert list(js) == [RAFT_PROTO, RPC_PROTO]
        for st in js.values():
            assert list(st) == ["total_in", "total_out", "rate_in", "rate_out"]
            assert st["total_in"] > 0 and st["total_out"] > 0 and st["rate_in"] >= 0 and st["rate_out"] >= 0
    # the text: a line per protocol, sorted, in the spec's format
    lines = out(cluster[1], "health", "bandwidth").split("\n")
    assert lines[-1] == "" and len(lines) == 3
    for line, proto in zip(lines, (RAFT_PROTO, RPC_PROTO), strict=False):
        full(rf" *{proto}: In: +{HUMAN_BYTES}\. Out: +{HUMAN_BYTES}\. RateIn: \d+\.\d\dB/s\. "
             rf"RateOut: \d+\.\d\dB/s", line, "bandwidth line")
    # 200 pins through peer 0: Raft carries each (its CID at least twice) from the leader to both followers
    n = 200
    cids = [str(CID.v1(RAW, sha256_multihash(os.urandom(16)))) for _ in range(n)]
    _each_pin(cluster[0], cids, "POST")
    after = [report(p) for p in cluster]
    grown = sum(a[RAFT_PROTO]["total_out"] - b[RAFT_PROTO]["total_out"] for a, b in zip(after, before, strict=True))
    assert grown >= 2 * n * 2 * len(CID.decode(cids[0]).bytes), (before, after)
    # rates are per second, sampled each second: the leader's heartbeats alone keep its Raft rate_out above 0
    assert max(a[RAFT_PROTO]["rate_out"] for a in after) > 0
    _each_pin(cluster[0], cids, "DELETE")  # (the other tests list the pinset)


def _each_pin(peer: Peer, cids: list[str], method: str) -> None:
    for cid in cids:
        with urllib.request.urlopen(urllib.request.Request(f"{peer.rest}/pins/{cid}", method=method),
                                    timeout=30) as resp:
            assert resp.status == 200


def test_ipfs_gc(cluster: list[Peer], names: dict[str, str], tmp_path: Path) -> None:
    f, raw = unique_raw(tmp_path, "garbage.bin")  # an unpinned raw block on peer2 (gc lists blocks as CIDv1 raw)
    garbage = out(cluster[2], "add", "-Q", "--local", "--no-pin", "--cid-version", "1", str(f)).strip()
    assert garbage == raw
    blocks = parse_repo_gc(out(cluster[0], "ipfs", "gc"))
    assert [who for who, _ in blocks] == sorted(names, key=lambda n: names[n])  # sorted by peer ID
    gc = dict(blocks)
    assert garbage in gc["peer2"]
    (js,) = json_stream(out(cluster[0], "--enc", "json", "ipfs", "gc", "--local"))
    assert list(js["peer_map"]) == [cluster[0].identity]
    assert [who for who, _ in parse_repo_gc(out(cluster[1], "ipfs", "gc", "--local"))] == ["peer1"]


# --- errors -----------------------------------------------------------------------------------------------------------
def test_errors_and_exit_codes(cluster: list[Peer], tmp_path: Path) -> None:
    res = ctl(cluster[0], "status", "notacid", rc=1)  # parsed locally, as Go's ctl does
    assert res.stdout == "" and res.stderr.startswith("error parsing cid: ")
    _, unknown = unique_raw(tmp_path, "unknown")
    res = ctl(cluster[0], "pin", "ls", unknown, rc=2)  # answered by the API: code and message on stdout
    assert parse_error(res.stdout) == (404, "pin is not part of the pinset") and res.stderr == ""
    res = ctl(cluster[0], "--enc", "json", "pin", "rm", unknown, rc=2)
    assert json_stream(res.stdout) == [{"code": 404, "message": "pin is not part of the pinset"}]
    res = ctl(cluster[0], "pin", "add", "/ipns/name.invalid", rc=2)
    code, message = parse_error(res.stdout)
    assert code == 500 and message

    res = ctl("/ip4/127.0.0.1/tcp/1", "id", rc=1)  # nobody listens: a transport error, code 0
    code, message = parse_error(res.stdout)
    assert code == 0 and message
    res = ctl(cluster[0], "--enc", "yaml", "id", rc=1)
    assert res.stderr == "error : unsupported encoding\n"
    res = ctl(cluster[0], "peers", "add", rc=3)
    assert (res.stdout, res.stderr) == ("", "No help topic for 'add'\n")

    # stdout closed by its reader (`ctl … | head`): a quiet exit 141 as Go's SIGPIPE death, no traceback
    r, w = os.pipe()
    os.close(r)
    try:
        closed = subprocess.run([CTL, "--host", cluster[0].rest_multiaddr, "version"], stdout=w,
                                stderr=subprocess.PIPE, text=True, timeout=60, env=clean_env())
    finally:
        os.close(w)
    assert (closed.returncode, closed.stderr) == (141, "")


# --- last: a peer stops ------------------------------------------------------------------------------------------
def test_health_alerts_when_a_peer_stops(cluster: list[Peer], names: dict[str, str], tmp_path: Path) -> None:
    f = tmp_path / "everywhere.txt"
    f.write_bytes(os.urandom(700))
    cid = out(cluster[0], "add", "-Q", "--wait", "--wt", "60s", str(f)).strip()
    gone = cluster[2]
    gone.stop()

    def alerts() -> list[tuple[str, str]] | None:
        # Each metric of the stopped peer expires on its own clock (ping and freespace were sent at different
        # moments): wait for the ping alert, whichever comes first.
        found = parse_alerts(out(cluster[0], "health", "alerts"))
        return found if (gone.identity, "ping") in found else None

    poll(alerts, "a ping alert for the stopped peer", timeout=45)
    (js,) = json_stream(out(cluster[0], "--enc", "json", "health", "alerts"))
    assert gone.identity in {a["peer"] for a in js} and all("triggered_at" in a for a in js)
    listed = parse_ids(out(cluster[0], "peers", "ls"))
    errored = [x for x in listed if isinstance(x, tuple)]
    assert [e[0] for e in errored] == [gone.identity] and re.search(PEER, errored[0][1])
    st = status_of(cluster[1], cid, names)
    assert st.statuses() == {"peer0": "PINNED", "peer1": "PINNED", "peer2": "CLUSTER_ERROR"}
    assert [p.error for p in st.peers if p.who == "peer2"] != [""]
    dot = parse_dot(out(cluster[0], "health", "graph"))  # still a well-formed graph without the stopped peer
    assert {pid for pid, _ in dot.cluster_nodes.values()} <= set(names.values())
    assert dot.cluster_nodes[dot.self_node][0] == cluster[0].identity
