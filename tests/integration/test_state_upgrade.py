"""State format upgrade, end to end, on a data folder written by an earlier release (format version 1; the upgrade
runs both steps, 1 → 2 → 3).

``tests/data/state-v1/peer`` is a single-peer cluster folder made by the format-1 code (see its README): 201 pins
with varied options, a Raft snapshot and a journal after it. Each test copies it, moves every port to a free
one, and runs the *current* ``ipfs-cluster-service`` on it as a real process:

- the daemon refuses to start, naming both versions and the upgrade command, and changes nothing;
- ``state upgrade`` backs the Raft folder up and migrates it; the daemon then serves every pin unchanged;
- ``daemon --upgrade`` does both in one go;
- the documented procedure for several peers: upgrade one, start the others blank with ``--bootstrap``.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from pincluster.cli.service import free_port
from pincluster.localnet import SERVICE, Peer, clean_env, init_peers
from pincluster.state.store import EVERYWHERE, FORMAT_VERSION, SQLiteStore, read_format_version
from pincluster.types.codec import status_key
from pincluster.types.peer import PeerID

pytestmark = pytest.mark.timeout(300)

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "state-v1"
EXPORT = FIXTURE / "export.ndjson"
DATA_FILES = ("state.sqlite", "snapshot.sqlite", "journal", "journal.meta", "peers.json")
UPGRADE = "ipfs-cluster-service state upgrade"


def free_ports(n: int) -> list[int]:
    return [free_port() for _ in range(n)]  # distinct: free_port never hands out a port twice


def copy_fixture(dest: Path, index: int = 0) -> Peer:
    """The v1 peer folder at ``dest``, every TCP port in service.json and the embedded node's config moved to a
    free one (the same old port maps to the same new port in both files, so the connector finds the node)."""
    shutil.copytree(FIXTURE / "peer", dest)
    files = [dest / "service.json", dest / "ipfs" / "config"]
    texts = [f.read_text() for f in files]
    old = sorted({int(p) for t in texts for p in re.findall(r"/tcp/(\d+)", t)})
    mapping = dict(zip(old, free_ports(len(old)), strict=True))
    for f, t in zip(files, texts, strict=True):
        f.write_text(re.sub(r"/tcp/(\d+)", lambda m: f"/tcp/{mapping[int(m.group(1))]}", t))
    return Peer(index, dest)


def service(peer: Peer, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SERVICE, "-c", str(peer.folder), *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, env=clean_env(), timeout=timeout)


def digests(folder: Path) -> dict[str, str]:
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in DATA_FILES}


def v1_pins() -> dict[str, dict[str, Any]]:
    return {p["cid"]: p for p in map(json.loads, EXPORT.read_text().splitlines())}


def allocations(peer: Peer) -> dict[str, dict[str, Any]]:
    code, body = peer.api("GET", "/allocations?filter=all")
    assert code == 200, body
    items = [body] if isinstance(body, dict) else body
    return {p["cid"]: p for p in items}


def restart(peer: Peer, *args: str) -> None:
    peer.log_path.unlink(missing_ok=True)
    peer.start(*args)
    peer.wait_ready(120)


def assert_serves_v1_pins(peer: Peer) -> None:
    want = v1_pins()
    got = allocations(peer)
    assert set(got) == set(want)
    for cid, pin in want.items():
        assert got[cid] == pin, cid


def assert_index_matches(peer: Peer) -> None:
    """The migrated allocations index lists, for each peer, exactly the pins whose allocations name it, and
    under EVERYWHERE the pins replicated on every peer; every pin has its status key (format 3)."""
    by_peer: dict[str, set[str]] = {}
    spread: set[str] = set()
    for cid, pin in v1_pins().items():
        for p in pin["allocations"]:
            by_peer.setdefault(p, set()).add(cid)
        if pin["replication_factor_min"] == pin["replication_factor_max"] == -1:
            spread.add(cid)
    assert by_peer and spread  # the fixture has allocated pins and pins replicated everywhere
    store = SQLiteStore(peer.folder / "raft" / "state.sqlite")
    try:
        for p, cids in by_peer.items():
            pid = PeerID.decode(p).bytes
            assert store.count_allocated(pid) == len(cids)
            assert {pin for pin in _cids(store.allocated_page(pid, None, 10_000))} == cids
        assert store.count_allocated(EVERYWHERE) == len(spread)
        assert set(_cids(store.allocated_page(EVERYWHERE, None, 10_000))) == spread
        rows = store.listing_page(None, 10_000)
        assert len(rows) == len(v1_pins())
        assert all(skey == status_key(v) and skey is not None for _k, v, skey in rows)
    finally:
        store.close()


def _cids(rows: list[tuple[bytes, bytes]]) -> list[str]:
    from pincluster.types.cid import CID

    return [str(CID.from_bytes(k)) for k, _v in rows]


def test_v1_folder_is_refused_then_upgraded_and_served(tmp_path: Path) -> None:
    peer = copy_fixture(tmp_path / "peer0")
    raft = peer.folder / "raft"
    before = digests(raft)
    try:
        refused = service(peer, "daemon")
        assert refused.returncode != 0
        for text in ("format version 1", f"format version {FORMAT_VERSION}", UPGRADE):
            assert text in refused.stderr, refused.stderr
        assert "listening" not in refused.stderr  # refused before any port was bound
        assert digests(raft) == before  # the refused start changed nothing, and added nothing
        assert sorted(p.name for p in raft.iterdir()) == sorted(DATA_FILES)
        assert not list(tmp_path.glob("peer0/raft.bak.*"))

        up = service(peer, "state", "upgrade")
        assert up.returncode == 0, up.stderr
        assert f"from format version 1 to {FORMAT_VERSION}" in up.stdout
        (backup,) = peer.folder.glob("raft.bak.*")
        assert str(backup) in up.stdout
        assert digests(backup) == before  # the backup is the untouched v1 data
        assert read_format_version(backup / "state.sqlite") == 1
        for name in ("state.sqlite", "snapshot.sqlite"):
            assert read_format_version(raft / name) == FORMAT_VERSION
        again = service(peer, "state", "upgrade")
        assert again.returncode == 0 and "nothing to upgrade" in again.stdout

        restart(peer)
        assert_serves_v1_pins(peer)
        peer.stop()
        exported = service(peer, "state", "export")
        assert exported.returncode == 0, exported.stderr
        assert exported.stdout == EXPORT.read_text()
        assert_index_matches(peer)
    finally:
        peer.stop()


def test_daemon_upgrade_flag(tmp_path: Path) -> None:
    peer = copy_fixture(tmp_path / "peer0")
    try:
        restart(peer, "--upgrade")
        assert len(list(peer.folder.glob("raft.bak.*"))) == 1
        assert_serves_v1_pins(peer)
        peer.stop()
        restart(peer, "--upgrade")  # a second --upgrade on current state: nothing to do, no new backup
        assert len(list(peer.folder.glob("raft.bak.*"))) == 1
        assert_serves_v1_pins(peer)
    finally:
        peer.stop()


def test_three_peer_procedure_upgrade_one_others_blank(tmp_path: Path) -> None:
    """The README procedure: upgrade one peer, start it, start the others with blank state and --bootstrap."""
    first = copy_fixture(tmp_path / "peer0")
    secret = json.loads((first.folder / "service.json").read_text())["cluster"]["secret"]
    others = init_peers(tmp_path / "new", 2, secret=secret, fast=True)
    try:
        up = service(first, "state", "upgrade")
        assert up.returncode == 0, up.stderr
        restart(first)
        for p in others:  # one after the other, as the procedure says
            p.start("--bootstrap", first.cluster_addr)
            p.wait_ready(120)
        want = {p["cid"] for p in v1_pins().values()}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if all(set(allocations(p)) == want for p in others):
                break
            time.sleep(0.5)
        for p in others:
            assert set(allocations(p)) == want
            code, ident = p.api("GET", "/id")
            assert code == 200 and len(ident["cluster_peers"]) == 3
    finally:
        for p in reversed([first, *others]):
            p.stop()
