"""``ipfs-cluster-service state …`` against a real daemon's folder: pin, stop, export, cleanup, import, start.

One peer with its embedded IPFS node on 127.0.0.1 (``pincluster.localnet``). The imported pins must be in the
state the restarted daemon loads, and the daemon must pin them on IPFS when it starts.
"""

from __future__ import annotations

import functools
import json
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from tests.integration.cluster_harness import wait_for as _wait_for

from pincluster.localnet import SERVICE, Peer, clean_env, init_peers
from pincluster.state.store import FORMAT_VERSION

wait_for = functools.partial(_wait_for, timeout=60)

pytestmark = pytest.mark.timeout(240)

SAMPLE = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "ipfs-cluster-state-export.json"
SAMPLE_CID = "QmbrCtydGyPeHiLURSPMqrvE5mCgMCwFYq3UD4XLCeAYw6"  # echo test_53 | ipfs add -q


def service(peer: Peer, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [SERVICE, "-c", str(peer.folder), *args], input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True, env=clean_env(), timeout=60,
    )


def ipfs(peer: Peer, path: str, files: dict[str, bytes] | None = None) -> Any:
    body = b""
    headers = {}
    if files:
        b = "statecliboundary"
        body = b"".join(
            f'--{b}\r\nContent-Disposition: form-data; name="file"; filename="{n}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n".encode() + c + b"\r\n" for n, c in files.items()
        ) + f"--{b}--\r\n".encode()
        headers["Content-Type"] = f"multipart/form-data; boundary={b}"
    req = urllib.request.Request(f"{peer.ipfs_api}/{path}", data=body, method="POST", headers=headers)
    with urllib.request.urlopen(req, timeout=30) as resp:
        lines = [json.loads(x) for x in resp.read().decode().splitlines() if x.strip()]
    return lines[-1] if lines else None


def add_unpinned(peer: Peer, content: bytes) -> str:
    return str(ipfs(peer, "add?pin=false", {"f": content})["Hash"])


def ipfs_pinned(peer: Peer, cid: str) -> bool:
    try:
        out = ipfs(peer, f"pin/ls?arg={cid}")
    except urllib.error.HTTPError:
        return False
    return bool(out and cid in out.get("Keys", {}))


def status(peer: Peer, cid: str) -> str:
    code, body = peer.api("GET", f"/pins/{cid}?local=true")
    assert code == 200, body
    return str(next(iter(body["peer_map"].values()))["status"])


def restart(peer: Peer) -> None:
    """Start with a fresh log, so that ``wait_ready`` waits for this run's READY line, not an older one."""
    peer.log_path.unlink(missing_ok=True)
    peer.start()
    peer.wait_ready(90)


def pinset(peer: Peer) -> set[str]:
    code, body = peer.api("GET", "/allocations")
    assert code in (200, 204), body
    items = [body] if isinstance(body, dict) else (body or [])  # one NDJSON line decodes as one object
    return {p["cid"] for p in items}


def test_export_cleanup_import_then_daemon_pins_the_imported_pins(tmp_path: Path) -> None:
    (peer,) = init_peers(tmp_path, 1, fast=True)
    data = peer.folder / "raft"
    try:
        peer.start()
        peer.wait_ready(60)
        busy = service(peer, "state", "export")
        assert busy.returncode == 1 and b"error obtaining execution lock" in busy.stderr

        assert add_unpinned(peer, b"test_53\n") == SAMPLE_CID
        mine = add_unpinned(peer, b"pinned through the cluster before the export\n")
        code, _ = peer.api("POST", f"/pins/{mine}")
        assert code == 200
        wait_for(lambda: status(peer, mine) == "pinned", "the first pin")
        assert not ipfs_pinned(peer, SAMPLE_CID)
        peer.stop()

        exported = tmp_path / "export.json"
        res = service(peer, "state", "export", "-f", str(exported))
        assert res.returncode == 0, res.stderr
        (line,) = exported.read_bytes().splitlines()
        assert json.loads(line)["cid"] == mine

        refused = service(peer, "state", "cleanup")
        assert refused.returncode == 1 and b"--force" in refused.stderr and data.exists()
        res = service(peer, "state", "cleanup", "-f")
        assert res.returncode == 0, res.stderr
        assert not data.exists() and (peer.folder / "raft.old.0").exists()

        # the export followed by the pretty-printed test data file, through stdin
        res = service(peer, "state", "import", "-f", stdin=exported.read_bytes() + SAMPLE.read_bytes())
        assert res.returncode == 0, res.stderr
        assert res.stdout == b"reading from stdin, Ctrl-D to finish\n"
        assert not (peer.folder / "raft.import").exists()  # the staging folder was swapped in

        restart(peer)
        wait_for(lambda: pinset(peer) == {mine, SAMPLE_CID}, "the imported pinset")
        wait_for(lambda: status(peer, SAMPLE_CID) == "pinned" and status(peer, mine) == "pinned",
                 "the imported pins to be pinned")
        assert ipfs_pinned(peer, SAMPLE_CID)  # pinned on IPFS by the daemon at start, not by the import

        third = add_unpinned(peer, b"pinned after the import\n")
        code, _ = peer.api("POST", f"/pins/{third}")
        assert code == 200
        wait_for(lambda: status(peer, third) == "pinned", "a pin after the import")
        peer.stop()
        restart(peer)
        # the import survives restarts, and so do pins made after it
        wait_for(lambda: pinset(peer) == {mine, SAMPLE_CID, third}, "the pinset after a restart")
    finally:
        peer.stop()


def test_export_says_when_the_journal_holds_commits_the_state_lacks(tmp_path: Path) -> None:
    """A state commit may skip its fsync when its entries are in the synced Raft journal, so after a power loss
    the state can lack the last commits until the peer starts and applies them again. An offline export reads
    the state only: it says so, and after one start and stop the export has everything."""
    import contextlib
    import sqlite3
    import time

    (peer,) = init_peers(tmp_path, 1, fast=True)
    state = peer.folder / "raft" / "state.sqlite"
    copy = tmp_path / "state-before.sqlite"
    cids = ["QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG", "QmbrCtydGyPeHiLURSPMqrvE5mCgMCwFYq3UD4XLCeAYw6",
            "QmRQ353oFNqt8zfZ9X1HgRUszwv9RkEEwmMZZkbkYEsybn"]
    try:
        peer.start()
        peer.wait_ready(60)
        assert peer.api("POST", f"/pins/{cids[0]}")[0] == 200
        src = sqlite3.connect(state)
        with contextlib.closing(sqlite3.connect(copy)) as dst:
            src.backup(dst)  # the state as a power loss could leave it: without what follows
        src.close()
        for cid in cids[1:]:
            assert peer.api("POST", f"/pins/{cid}")[0] == 200
        time.sleep(2)  # PySyncObj stores the commit index once a second
    finally:
        peer.stop()
    for extra in (Path(f"{state}-wal"), Path(f"{state}-shm")):
        extra.unlink(missing_ok=True)
    state.write_bytes(copy.read_bytes())
    behind = service(peer, "state", "export")
    assert behind.returncode == 0, behind.stderr
    assert [json.loads(x)["cid"] for x in behind.stdout.splitlines()] == [cids[0]]
    assert b"warning: the Raft journal holds committed entries up to" in behind.stderr, behind.stderr
    assert b"start the peer once" in behind.stderr
    try:
        restart(peer)
        wait_for(lambda: pinset(peer) == set(cids), "the journal's pins in the state")
    finally:
        peer.stop()
    done = service(peer, "state", "export")
    assert done.returncode == 0 and done.stderr == b"", done.stderr
    assert {json.loads(x)["cid"] for x in done.stdout.splitlines()} == set(cids)


def test_import_errors_exit_1_and_keep_the_state(tmp_path: Path) -> None:
    (peer,) = init_peers(tmp_path, 1, ipfs="external")
    good = service(peer, "state", "import", "-f", str(SAMPLE))
    assert good.returncode == 0, good.stderr
    before = service(peer, "state", "export").stdout
    bad = service(peer, "state", "import", "-f", stdin=b"nope")
    assert bad.returncode == 1
    assert bad.stderr.startswith(b"error importing state: ") and b"malformed" in bad.stderr
    missing = service(peer, "state", "import", "-f", str(tmp_path / "missing.json"))
    assert missing.returncode == 1 and b"error importing state: " in missing.stderr
    assert service(peer, "state", "export").stdout == before
    res = service(peer, "state", "import", "-f", "--rmin", "2", "--rmax", "3", str(SAMPLE))
    assert res.returncode == 0, res.stderr
    got = json.loads(service(peer, "state", "export").stdout)
    assert (got["replication_factor_min"], got["replication_factor_max"]) == (2, 3)
    up = service(peer, "state", "upgrade")
    assert up.returncode == 0 and f"is current (format version {FORMAT_VERSION})".encode() in up.stdout


def test_same_import_on_every_peer_restarts_the_cluster_with_its_peerset(tmp_path: Path) -> None:
    """As the Go docs say: stop all peers, import the same file on each, start them (no --bootstrap)."""
    from pincluster.localnet import start_network, stop_network

    peers = init_peers(tmp_path, 2, fast=True)
    try:
        start_network(peers, timeout=60)
        stop_network(peers)
        for p in peers:
            res = service(p, "state", "import", "-f", str(SAMPLE))
            assert res.returncode == 0, res.stderr
        for p in peers:
            p.log_path.unlink(missing_ok=True)
            p.start()
        for p in peers:
            p.wait_ready(90)
        want = {p.identity for p in peers}

        def settled() -> bool:
            return all(set(p.api("GET", "/id")[1]["cluster_peers"]) == want and pinset(p) == {SAMPLE_CID}
                       for p in peers)

        wait_for(settled, "both peers to see each other and the imported pin")
        other = "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"
        code, _ = peers[1].api("POST", f"/pins/{other}")
        assert code == 200
        wait_for(lambda: all(pinset(p) == {SAMPLE_CID, other} for p in peers), "the new pin on both peers")
    finally:
        stop_network(peers)
