"""``ls``, ``dag stat``, ``bootstrap`` and HAMT paths: the embedded node answers as a real kubo daemon does.

kubo adds the content (files of one and several chunks, a sub-directory, a symlink, a Unicode name, CIDv1 with
raw leaves, a file with its mode and mtime kept, a directory big enough that kubo shards it); each root goes to
the embedded node as kubo's own ``dag export``, through its ``dag/import``. Then the same ``ls`` and ``cat``
requests go to both, and the answers must be the same bytes (a HAMT's ``stream`` listing in any order: both walk
the shards, kubo concurrently).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from embedded import EmbeddedNode
from kubo import KuboDaemon, kubo_binary, kubo_disabled

pytestmark = [pytest.mark.kubo, pytest.mark.timeout(240)]


class _UtcKubo(KuboDaemon):
    """kubo shows an entry's mtime in its own time zone; ours in UTC."""

    @property
    def env(self) -> dict[str, str]:
        return {**super().env, "TZ": "UTC"}


def post(url: str, path: str, params: list[tuple[str, str]], body: bytes = b"",
         headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(f"{url}/api/v0/{path}?{urllib.parse.urlencode(params)}", data=body,
                                 method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class Pair:
    """A kubo daemon holding the content, and the embedded node given the same blocks."""

    def __init__(self, kubo: KuboDaemon, ours: EmbeddedNode, roots: dict[str, str], hamt_names: list[str]) -> None:
        self.kubo, self.ours, self.roots, self.hamt_names = kubo, ours, roots, hamt_names

    def both(self, path: str, params: list[tuple[str, str]]) -> tuple[tuple[int, bytes], tuple[int, bytes]]:
        return post(self.kubo.api_url, path, params), post(self.ours.api_url, path, params)


def _tree(root: Path) -> dict[str, Path]:
    rnd = random.Random(7)
    tree = root / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_bytes(b"hello\n")
    (tree / "B.txt").write_bytes(b"upper case sorts first\n")
    (tree / "\u00e9t\u00e9.txt").write_bytes(b"utf-8 name\n")
    (tree / "big.bin").write_bytes(rnd.randbytes(600_000))  # three chunks
    (tree / "sub" / "x.txt").write_bytes(b"x\n")
    (tree / "link").symlink_to("a.txt")
    kept = root / "kept"
    kept.mkdir()
    f = kept / "script.sh"
    f.write_bytes(b"#!/bin/sh\necho kept\n")
    f.chmod(0o4755)
    os.utime(f, ns=(1_700_000_000_123_456_789, 1_700_000_000_123_456_789))
    hamt = root / "hamt"
    hamt.mkdir()
    for i in range(1300):  # 1300 names of ~200 bytes: past kubo's 256 KiB, so the directory is sharded
        (hamt / f"{i:04d}-{'n' * 195}").write_bytes(b"%d" % i)
    return {"tree": tree, "kept": kept, "hamt": hamt}


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    if kubo_disabled():
        pytest.skip("PINCLUSTER_NO_KUBO=1: tests against a real kubo daemon are disabled")
    root = Path(tempfile.mkdtemp(prefix="pincluster-ls-"))
    kubo = _UtcKubo(root / "kubo", binary=kubo_binary(), offline=True)
    ours = EmbeddedNode(root / "ours")
    try:
        kubo.start()
        ours.start()
        paths = _tree(root)
        roots = {
            "tree": kubo.ipfs("add", "-r", "-Q", str(paths["tree"])).strip(),
            "tree1": kubo.ipfs("add", "-r", "-Q", "--cid-version=1", str(paths["tree"])).strip(),
            "kept": kubo.ipfs("add", "-r", "-Q", "--preserve-mode", "--preserve-mtime", str(paths["kept"])).strip(),
            "hamt": kubo.ipfs("add", "-r", "-Q", str(paths["hamt"])).strip(),
        }
        for cid in roots.values():
            status, car = post(kubo.api_url, "dag/export", [("arg", cid)])
            assert status == 200, car
            boundary = uuid.uuid4().hex
            head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.car\"\r\n"
                    "Content-Type: application/octet-stream\r\n\r\n")
            body = head.encode() + car + f"\r\n--{boundary}--\r\n".encode()
            status, out = post(ours.api_url, "dag/import", [], body,
                               {"Content-Type": f"multipart/form-data; boundary={boundary}"})
            assert status == 200, out
        yield Pair(kubo, ours, roots, sorted(p.name for p in paths["hamt"].iterdir()))
    finally:
        ours.stop()
        kubo.stop()
        shutil.rmtree(root, ignore_errors=True)


def _same(pair: Pair, path: str, params: list[tuple[str, str]]) -> Any:
    (ks, kb), (os_, ob) = pair.both(path, params)
    at = next((i for i in range(min(len(kb), len(ob))) if kb[i] != ob[i]), min(len(kb), len(ob)))
    lo, hi = max(0, at - 200), at + 300
    assert (os_, ob) == (ks, kb), f"{path} {params}:\nkubo {ks} {kb[lo:hi]!r}\nours {os_} {ob[lo:hi]!r}"
    return [json.loads(line) for line in kb.splitlines() if line.strip()]


def test_ls_of_a_directory_reads_the_same(pair: Pair) -> None:
    root = pair.roots["tree"]
    out = _same(pair, "ls", [("arg", root)])
    links = out[0]["Objects"][0]["Links"]
    assert [lk["Name"] for lk in links] == ["B.txt", "a.txt", "big.bin", "link", "sub", "\u00e9t\u00e9.txt"]
    assert {lk["Name"]: lk["Type"] for lk in links}["link"] == 4  # the test covers a symlink, as meant
    assert len(_same(pair, "ls", [("arg", root), ("stream", "true")])) == 6
    _same(pair, "ls", [("arg", root), ("resolve-type", "false"), ("size", "false")])
    _same(pair, "ls", [("arg", root), ("resolve-type", "false")])
    _same(pair, "ls", [("arg", f"{root}/sub"), ("arg", f"/ipfs/{root}/sub/"), ("arg", f"{root}/a.txt")])
    _same(pair, "ls", [("arg", f"{root}/big.bin")])  # a file: its chunks
    _same(pair, "ls", [("arg", root), ("arg", f"{root}/big.bin"), ("stream", "true")])


def test_ls_of_raw_leaves_and_of_kept_modes_and_times_reads_the_same(pair: Pair) -> None:
    root1 = pair.roots["tree1"]
    out = _same(pair, "ls", [("arg", root1)])
    raw = next(lk for lk in out[0]["Objects"][0]["Links"] if lk["Name"] == "a.txt")
    assert raw["Hash"].startswith("bafkrei") and raw["Size"] == 6
    leaf = raw["Hash"]
    _same(pair, "ls", [("arg", leaf)])  # a raw block: no links
    _same(pair, "ls", [("arg", root1), ("resolve-type", "false"), ("size", "false")])
    out = _same(pair, "ls", [("arg", pair.roots["kept"])])
    kept = out[0]["Objects"][0]["Links"][0]
    assert kept["Mode"] != 0 and kept["ModTime"] != "0001-01-01T00:00:00Z", kept  # the test covers them


def test_sharded_directory_lists_and_resolves_the_same(pair: Pair) -> None:
    hamt = pair.roots["hamt"]
    out = _same(pair, "ls", [("arg", hamt)])
    assert [lk["Name"] for lk in out[0]["Objects"][0]["Links"]] == pair.hamt_names
    (ks, kb), (os_, ob) = pair.both("ls", [("arg", hamt), ("stream", "true")])
    assert ks == os_ == 200
    assert sorted(kb.splitlines()) == sorted(ob.splitlines()) and len(ob.splitlines()) == 1300
    for name in (pair.hamt_names[0], pair.hamt_names[777], pair.hamt_names[-1]):
        _same(pair, "ls", [("arg", f"/ipfs/{hamt}/{name}")])
        _same(pair, "cat", [("arg", f"/ipfs/{hamt}/{name}")])
        _same(pair, "resolve", [("arg", f"/ipfs/{hamt}/{name}")])
    (ks, kb), (os_, ob) = pair.both("cat", [("arg", f"/ipfs/{hamt}/{pair.hamt_names[5]}")])
    assert ks == os_ == 200 and kb == ob == b"5"


def test_ls_errors_read_the_same(pair: Pair) -> None:
    root = pair.roots["tree"]
    _same(pair, "ls", [("arg", f"{root}/nope")])
    _same(pair, "ls", [("arg", f"/ipfs/{pair.roots['hamt']}/nope")])
    (ks, _kb), (os_, _ob) = pair.both("ls", [])
    assert ks == os_ == 400


def test_the_ls_command_prints_what_kubos_prints(pair: Pair) -> None:
    """``pincluster-ipfs ls`` against ours and kubo's ``ipfs ls`` against kubo: the same text, for every form
    of the output (headers, stream, sizes off, long listing with a kept mode and time, several paths)."""
    tree, kept = pair.roots["tree"], pair.roots["kept"]
    cases = [[tree], ["-v", tree], ["-s", tree], ["--size=false", tree], ["--resolve-type=false", "--size=false", tree],
             ["-l", tree], ["-l", "-v", kept], ["-l", "--size=false", kept], [tree, f"{tree}/sub", f"{tree}/big.bin"],
             ["-s", "-v", tree, f"{tree}/sub"], ["-v", pair.roots["tree1"]], [pair.roots["hamt"]]]
    for argv in cases:
        theirs = pair.kubo.ipfs("ls", *argv)
        ours = subprocess.run([sys.executable, "-m", "pincluster.ipfs.cli", "--api", pair.ours.api_url, "ls", *argv],
                              capture_output=True, text=True, timeout=60, env={**os.environ, "TZ": "UTC"})
        assert ours.returncode == 0, ours.stderr
        assert ours.stdout == theirs, f"ls {argv}:\nkubo:\n{theirs[:1500]}\nours:\n{ours.stdout[:1500]}"
    assert "-rwsr-xr-x" in pair.kubo.ipfs("ls", "-l", kept)  # the long listing shows a kept mode


def test_dag_stat_reads_the_same(pair: Pair) -> None:
    """``dag stat``: the progress after every block (depth-first, as kubo walks), the final summary with the
    size two roots share and their ratio (a float32 as Go writes it)."""
    tree, hamt = pair.roots["tree"], pair.roots["hamt"]
    lines = _same(pair, "dag/stat", [("arg", tree)])
    assert len(lines) > 5 and lines[-1]["UniqueBlocks"] == len(lines) - 1
    _same(pair, "dag/stat", [("arg", tree), ("progress", "false")])
    final = _same(pair, "dag/stat", [("arg", tree), ("arg", f"{tree}/big.bin"), ("arg", pair.roots["tree1"]),
                                     ("progress", "false")])[-1]
    assert final["SharedSize"] > 0 and final["Ratio"] != 1  # the test covers them
    _same(pair, "dag/stat", [("arg", hamt), ("progress", "false")])
    (ks, kb), (os_, ob) = pair.both("stats/repo", [])
    assert ks == os_ == 200 and json.loads(ob).keys() == json.loads(kb).keys()


def test_bootstrap_list_add_rm_read_the_same(pair: Pair) -> None:
    """``bootstrap``: the list, adding (each address must name its peer), removing one, every address of a peer
    (``/p2p/<id>`` alone) or all; kubo's errors. Ours keeps the list in its config (dialled from then on)."""
    a = "/ip4/1.2.3.4/tcp/4001/p2p/12D3KooWAssXyrXo29dgqS9qvpu4PXGSyNeaGy5jybKGS7hBZV92"
    b = "/ip4/5.6.7.8/tcp/4001/p2p/12D3KooWBjLPDU18C4oAybjTTDCZDozGwvjQZc43i3xtG1NGX9hm"
    b2 = "/ip4/5.6.7.9/tcp/4002/p2p/12D3KooWBjLPDU18C4oAybjTTDCZDozGwvjQZc43i3xtG1NGX9hm"
    for path, params in (("bootstrap", []), ("bootstrap/add", [("arg", a), ("arg", b), ("arg", a)]),
                         ("bootstrap/list", []), ("bootstrap/add", [("arg", a)]), ("bootstrap/add", [("arg", b2)]),
                         ("bootstrap/add", []), ("bootstrap/add", [("arg", "notamultiaddr")]),
                         ("bootstrap/add", [("arg", "/ip4/1.2.3.4/tcp/4001")]),
                         ("bootstrap/rm", [("arg", "/ip4/1.2.3.4/tcp/4001")]),
                         ("bootstrap/rm", [("arg", "notamultiaddr")]),
                         ("bootstrap/rm", [("arg", "/ip4/9.9.9.9/tcp/1/p2p/" + a.rpartition("/")[2])]),
                         ("bootstrap/rm", [("arg", a)]), ("bootstrap/list", []),
                         ("bootstrap/rm", [("arg", "/p2p/" + b.rpartition("/")[2])]),
                         ("bootstrap/list", []), ("bootstrap/add", [("arg", a), ("arg", b)])):
        _same(pair, path, params)
    # removing several peers: kubo lists them in its map's order
    (ks, kb), (os_, ob) = pair.both("bootstrap/rm", [("all", "true")])
    assert ks == os_ == 200 and sorted(json.loads(kb)["Peers"]) == sorted(json.loads(ob)["Peers"]) == sorted([a, b])
    for path, params in (("bootstrap/rm", []), ("bootstrap/add", [("arg", b)]), ("bootstrap/rm/all", []),
                         ("bootstrap/add", [("arg", b)])):
        _same(pair, path, params)  # (not the list right after removing all: kubo shows null there, ours [])
    config = json.loads((pair.ours.repo / "config").read_text())
    assert config["Bootstrap"] == [b]  # kept for the next start
    for argv in (["list"], ["add", a, b2], ["list"], ["rm", b2], ["rm", "--all"], ["list"]):  # the CLIs alike
        theirs = pair.kubo.ipfs("bootstrap", *argv)
        ours = subprocess.run([sys.executable, "-m", "pincluster.ipfs.cli", "--api", pair.ours.api_url, "bootstrap",
                               *argv], capture_output=True, text=True, timeout=60)
        assert (ours.returncode, ours.stdout) == (0, theirs), (argv, theirs, ours.stdout, ours.stderr)
    (ks, kb), (os_, ob) = pair.both("bootstrap/add/default", [])
    assert ks == os_ == 500 and b"cannot add default bootstrap peers" in kb and b"add specific peer" in ob


def test_refs_pin_ls_and_cat_read_the_same(pair: Pair) -> None:
    """``refs`` in kubo's order (each link's edge, then the refs below it), with its unique, edges, format and
    depth options; ``pin/ls`` of a recursive and of an indirect pin, listed whole or streamed, quiet or not;
    ``cat`` of a part of a file and of a symlink (its target)."""
    tree, tree1 = pair.roots["tree"], pair.roots["tree1"]
    for params in ([("arg", tree)], [("arg", tree), ("recursive", "true")],
                   [("arg", tree), ("recursive", "true"), ("unique", "true")], [("arg", tree), ("edges", "true")],
                   [("arg", tree), ("format", "<src> <dst> <linkname>"), ("recursive", "true")],
                   [("arg", tree1), ("max-depth", "2"), ("unique", "true")],
                   [("arg", tree1), ("max-depth", "2"), ("recursive", "true"), ("unique", "true")],
                   [("arg", tree), ("arg", tree1), ("recursive", "true"), ("unique", "true")],
                   [("arg", pair.roots["hamt"])]):
        _same(pair, "refs", params)
    for params in ([("arg", tree), ("type", "recursive")], [("arg", f"{tree}/sub"), ("type", "indirect")],
                   [("arg", f"{tree}/sub")], [("arg", f"{tree}/sub"), ("stream", "true")],
                   [("arg", tree), ("quiet", "true")], [("arg", tree), ("stream", "true"), ("quiet", "true")]):
        _same(pair, "pin/ls", params)
    for params in ([("arg", f"{tree}/big.bin"), ("offset", "262140"), ("length", "20")], [("arg", f"{tree}/link")]):
        theirs, ours = pair.both("cat", params)
        assert ours == theirs and theirs[0] == 200, (params, theirs[:2], ours[:2])
    assert pair.both("cat", [("arg", f"{tree}/link")])[1] == (200, b"a.txt")  # a symlink's target
