"""Raft consensus end to end: real peer processes (tests/integration/raft_peer.py) on 127.0.0.1.

One 3-peer cluster is shared by the tests of this module, in order; each test states what it expects.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from pincluster.cli.service import free_port
from pincluster.consensus.transport import RaftAuthenticator, sealed_frame
from pincluster.state.store import FORMAT_VERSION

PEER = Path(__file__).with_name("raft_peer.py")
SECRET = "5a" * 32
WRONG_SECRET = "a5" * 32
# small compaction threshold so that snapshots are written and shipped during the tests
CONFIG = json.dumps({"compaction_min_entries": 40, "commit_timeout": "50ms", "election_timeout": "1s"})


class Peer:
    def __init__(self, root: Path, peer_id: str, secret: str = SECRET) -> None:
        self.peer_id = peer_id
        self.data = root / peer_id
        self.log_path = root / f"{peer_id}.log"
        self.raft_port = free_port()
        self.secret = secret
        self.proc: subprocess.Popen[str] | None = None
        self.ctl = 0

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.raft_port}"

    @property
    def spec(self) -> str:
        return f"{self.peer_id}@{self.addr}"

    def start(self, init: str = "", bootstrap: str = "", expect_ready: bool = True) -> str:
        cmd = [sys.executable, str(PEER), "--peer-id", self.peer_id, "--data", str(self.data),
               "--raft-port", str(self.raft_port), "--secret", self.secret, "--config", CONFIG,
               "--exit-on-stdin-eof"]
        if init:
            cmd += ["--init", init]
        if bootstrap:
            cmd += ["--bootstrap", bootstrap]
        with open(self.log_path, "a") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True
            )
        line = self.proc.stdout.readline().strip() if self.proc.stdout else ""
        if expect_ready:
            assert line.startswith("READY"), f"{self.peer_id} did not start: {line!r}\n{self.log_path.read_text()}"
            self.ctl = int(line.split()[1])
        return line

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ctl}{path}", timeout=60) as r:
            return json.load(r)

    def post(self, path: str, body: Any, timeout: float = 60) -> Any:
        req = urllib.request.Request(f"http://127.0.0.1:{self.ctl}{path}", data=json.dumps(body).encode(),
                                     headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return json.load(r)
        except urllib.error.HTTPError as exc:
            return json.load(exc)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._close_pipes()
        self.proc = None

    def _close_pipes(self) -> None:
        assert self.proc is not None
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self._close_pipes()
        self.proc = None

    @property
    def alive(self) -> bool:
        return self.proc is not None


def wait(pred: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = pred()
            if last:
                return last
        except (OSError, urllib.error.URLError, ValueError) as exc:
            last = exc
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}: {last!r}")


class Cluster:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.peers = [Peer(root, f"peer{i}") for i in range(3)]
        self.init = ",".join(p.spec for p in self.peers)

    def start(self, peer: Peer) -> None:
        peer.start(init=self.init)

    def live(self) -> list[Peer]:
        return [p for p in self.peers if p.alive]

    def leader(self, timeout: float = 15) -> Peer:
        def find() -> Peer | None:
            sts = [(p, p.get("/status")) for p in self.live()]
            leaders = {s["leader"] for _, s in sts}
            if len(leaders) == 1 and None not in leaders:
                name = leaders.pop()
                return next((p for p, _ in sts if p.peer_id == name), None)
            return None

        return wait(find, timeout, "one agreed leader")  # type: ignore[no-any-return]

    def digests(self) -> list[Any]:
        for p in self.live():
            r = p.post("/wait_sync", {"timeout": 20})
            assert r.get("ok"), r
        return [p.get("/digest") for p in self.live()]

    def converged(self, timeout: float = 30) -> Any:
        def same() -> Any:
            ds = [p.get("/digest") for p in self.live()]
            return ds[0] if all(d == ds[0] for d in ds) else None

        return wait(same, timeout, "identical state on every live peer")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("raft"))
    for p in c.peers:
        c.start(p)
    c.leader()
    yield c
    for p in c.peers + getattr(c, "extra", []):
        p.stop()


def keys(n: int, tag: str) -> list[str]:
    return [(tag.encode().hex() + os.urandom(16).hex()) for _ in range(n)]


def test_1000_concurrent_pins_through_every_peer_are_identical(cluster: Cluster) -> None:
    ks = keys(1000, "c")
    chunks = [ks[i::30] for i in range(30)]
    with ThreadPoolExecutor(30) as ex:
        results = list(ex.map(lambda ic: cluster.peers[ic[0] % 3].post("/pin", {"keys": ic[1]}), enumerate(chunks)))
    acked = sum(len(r["acked"]) for r in results)
    assert acked == 1000, [r["failed"][:3] for r in results if r["failed"]]
    ds = cluster.converged()
    assert ds["count"] == 1000 and ds["ordered"]
    assert all(p.post("/has", {"keys": ks})["missing"] == [] for p in cluster.peers)


def test_small_concurrent_writes_are_replicated_once(cluster: Cluster) -> None:
    """Replication is pipelined: a follower's answer covering older entries does not make the leader send the
    entries in flight again (PySyncObj did, for about a third of all entries under many small writes)."""
    leader = cluster.leader()
    sent0, resent0 = leader.get("/status")["entries_replicated"]
    ks = keys(1500, "s")
    with ThreadPoolExecutor(30) as ex:
        results = list(ex.map(lambda ic: cluster.peers[ic[0] % 3].post("/pin", {"keys": ic[1]}),
                              enumerate(ks[i : i + 3] for i in range(0, len(ks), 3))))
    assert sum(len(r["acked"]) for r in results) == 1500
    assert cluster.converged()["count"] == 2500
    now = leader.get("/status")["entries_replicated"]
    sent, resent = now[0] - sent0, now[1] - resent0
    assert sent >= 2 * 1500 / 256 and resent <= max(10, sent // 50), (sent, resent)


def test_kill_leader_during_writes_keeps_every_acknowledged_write(cluster: Cluster) -> None:
    leader = cluster.leader()
    followers = [p for p in cluster.peers if p is not leader]
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def writer(peer: Peer) -> None:
        while not stop.is_set():
            try:
                r = peer.post("/pin", {"keys": keys(20, "k")}, timeout=40)
            except OSError:
                continue
            with lock:
                acked.extend(r["acked"])

    threads = [threading.Thread(target=writer, args=(followers[i % 2],)) for i in range(4)]
    for t in threads:
        t.start()
    wait(lambda: len(acked) > 200, 20, "writes before the kill")
    leader.kill()
    killed_at = time.monotonic()

    def new_leader() -> bool:
        sts = [p.get("/status") for p in followers]
        return all(s["leader"] not in (None, leader.peer_id) and s["leader"] == sts[0]["leader"] for s in sts)

    wait(new_leader, 10, "a new leader")
    failover = time.monotonic() - killed_at
    n_at_failover = len(acked)
    wait(lambda: len(acked) > n_at_failover + 200, 20, "writes after the failover")
    stop.set()
    for t in threads:
        t.join(60)
    assert failover < 5.0, f"failover took {failover:.2f}s"
    cluster.start(leader)
    ds = cluster.converged(40)
    assert ds["count"] >= len(acked)
    for p in cluster.peers:
        assert p.post("/has", {"keys": acked})["missing"] == [], p.peer_id
    print(f"failover {failover:.2f}s, {len(acked)} acknowledged writes kept")


def test_restart_all_three_keeps_state(cluster: Cluster) -> None:
    cluster.leader()
    before = cluster.converged()
    for p in cluster.peers:
        p.stop()
    for p in cluster.peers:
        cluster.start(p)
    cluster.leader(20)
    after = cluster.converged()
    assert after == before


def _state_copy(cluster: Cluster, peer: Peer, tag: str) -> tuple[Path, Path]:
    """(the peer's state file, a copy of it taken now): to roll the state back as a power loss may."""
    state = peer.data / "state.sqlite"
    copy = cluster.root / f"{peer.peer_id}-state-{tag}.sqlite"
    src = sqlite3.connect(state)
    with contextlib.closing(sqlite3.connect(copy)) as dst:
        src.backup(dst)
    src.close()
    return state, copy


def _restore_state(state: Path, copy: Path) -> None:
    """Put a stopped peer's state back to ``copy`` (its WAL, which holds later commits, goes too)."""
    for extra in (Path(f"{state}-wal"), Path(f"{state}-shm")):
        extra.unlink(missing_ok=True)
    shutil.copyfile(copy, state)


def test_states_that_lost_their_last_commits_get_them_back_from_the_journals(cluster: Cluster) -> None:
    """A state commit whose entries are on the disk in the peer's Raft journal skips its own fsync, so a power
    loss may take the last state commits back, on every peer at once. Simulated harder here: every peer's state
    goes back to a copy taken before 300 acknowledged writes (the journals and snapshots keep theirs); after a
    restart every acknowledged write is on every peer again."""
    cluster.leader()
    copies = [_state_copy(cluster, p, "before") for p in cluster.peers]
    before = [p.get("/status")["group_commits"] for p in cluster.peers]
    ks = keys(300, "l")
    with ThreadPoolExecutor(10) as ex:
        results = list(ex.map(lambda ic: cluster.peers[ic[0] % 3].post("/pin", {"keys": ic[1]}),
                              enumerate(ks[i : i + 10] for i in range(0, len(ks), 10))))
    acked = [k for r in results for k in r["acked"]]
    assert len(acked) == 300
    cluster.converged()
    for p, (b, a) in zip(cluster.peers, [(b, p.get("/status")["group_commits"]) for p, b in
                                         zip(cluster.peers, before, strict=True)], strict=True):
        commits, synced = a[0] - b[0], a[1] - b[1]
        assert commits > 0 and synced < commits, (p.peer_id, commits, synced)  # most skipped their fsync
    _power_loss_then_every_write_is_back(cluster, copies, acked)


def _power_loss_then_every_write_is_back(cluster: Cluster, copies: list[tuple[Path, Path]], acked: list[str]) -> None:
    """Kill every peer, put each state back to its copy (which lacks the acknowledged writes ``acked``), restart:
    every write must be on every peer again (from the journals, or the snapshots)."""
    for p in cluster.peers:
        p.kill()
    for state, copy in copies:
        with contextlib.closing(sqlite3.connect(copy)) as db:
            assert db.execute("SELECT count(*) FROM pins WHERE key = ?", (bytes.fromhex(acked[0]),)).fetchone() == (0,)
        _restore_state(state, copy)
    for p in cluster.peers:
        cluster.start(p)
    cluster.leader(20)
    for p in cluster.peers:
        wait(lambda p=p: p.post("/has", {"keys": acked})["missing"] == [], 40, f"{p.peer_id} to have every write")
    cluster.converged()


def test_a_follower_whose_last_journal_record_tore_gets_it_again_from_the_leader(cluster: Cluster) -> None:
    """Power loss on a follower while its journal's last record went to the disk: the record's size fields got
    there, a page of its command did not (zeros), and the state lacks the entry (its commit skipped the fsync,
    the journal holding it). At restart the record's checksum finds it torn: the peer drops it, the leader
    sends it again, and every acknowledged write is on the peer. Loaded as it was, the entry was applied torn
    and its writes were missing on that peer for good."""
    leader = cluster.leader()
    victim = next(p for p in cluster.peers if p is not leader)
    state, copy = _state_copy(cluster, victim, "before-tear")
    ks = keys(60, "tear")
    assert len(leader.post("/pin", {"keys": ks})["acked"]) == 60  # one request: one Raft entry
    cluster.converged()
    victim.kill()
    journal = victim.data / "journal"
    raw = bytearray(journal.read_bytes())
    at = raw.find(bytes.fromhex(ks[30]))
    assert at > 0, "the entry is not in the follower's journal (compacted away?)"
    raw[at - 40 : at + 40] = bytes(80)  # inside the record's command (60 pins): its size fields and checksum stay
    journal.write_bytes(bytes(raw))
    _restore_state(state, copy)
    cluster.start(victim)
    cluster.leader(20)
    wait(lambda: victim.post("/has", {"keys": ks})["missing"] == [], 40, f"{victim.peer_id} to have every write")
    cluster.converged()
    assert "dropped" in victim.log_path.read_text()


def test_peer_with_deleted_data_folder_catches_up(cluster: Cluster) -> None:
    leader = cluster.leader()
    # many small entries so that the leader compacts its log and must ship a snapshot
    for _ in range(10):
        leader.post("/pin", {"keys": keys(1, "s")})
    for chunk in range(6):
        cluster.peers[chunk % 3].post("/pin", {"keys": keys(5, "s")})
    victim = next(p for p in cluster.peers if p is not leader)
    victim.stop()
    shutil.rmtree(victim.data)
    cluster.peers[cluster.peers.index(leader)].post("/pin", {"keys": keys(50, "w")})
    cluster.start(victim)
    expected = leader.get("/digest")
    wait(lambda: victim.get("/digest") == leader.get("/digest"), 40, "the wiped peer to catch up")
    assert victim.get("/digest")["count"] >= expected["count"]


def test_fourth_peer_joins_receives_state_and_is_removed(cluster: Cluster) -> None:
    leader = cluster.leader()
    d = Peer(cluster.root, "peer3")
    cluster.extra = [d]  # type: ignore[attr-defined]
    d.start(bootstrap=cluster.peers[1].addr)
    wait(lambda: d.get("/digest") == leader.get("/digest"), 40, "the new peer to receive the state")
    assert d.peer_id in leader.get("/status")["peers"]
    d.post("/pin", {"keys": keys(10, "d")})
    cluster.converged()
    r = leader.post("/rm_peer", {"peer_id": d.peer_id})
    assert "error" not in r, r
    wait(lambda: all(d.peer_id not in p.get("/status")["peers"] for p in cluster.peers), 10, "removal")
    d.stop()
    r = cluster.peers[2].post("/pin", {"keys": keys(10, "r")})
    assert len(r["acked"]) == 10


def test_peer_with_wrong_secret_cannot_join_and_says_why(cluster: Cluster) -> None:
    e = Peer(cluster.root, "peerX", secret=WRONG_SECRET)
    line = e.start(bootstrap=cluster.peers[0].addr, expect_ready=False)
    assert e.proc is not None
    assert e.proc.wait(30) == 1
    assert line.startswith("ERROR") and "does not share the same cluster.secret" in line, line
    assert "does not share the same cluster.secret" in e.log_path.read_text()
    member_log = cluster.peers[0].log_path.read_text()
    assert "does not share the same cluster.secret" in member_log
    assert "peerX" not in cluster.peers[0].get("/status")["peers"]


class _Exploit:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("with_secret", [False, True])
def test_pickle_exploit_sent_to_raft_port_does_not_run(cluster: Cluster, tmp_path: Path, with_secret: bool) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Exploit(str(marker)), 2)
    auth = RaftAuthenticator(bytes.fromhex(SECRET)) if with_secret else None
    target = cluster.peers[0]
    with socket.create_connection(("127.0.0.1", target.raft_port), timeout=5) as s:
        if auth is not None:
            # a secret holder completes the handshake first (random key), then sends the exploit as a message
            s.sendall(sealed_frame(pickle.dumps(os.urandom(32), 2), auth))
            time.sleep(0.3)
        s.sendall(sealed_frame(payload, auth))
        # and once more, bare, as a first message
        s.sendall(sealed_frame(payload, auth))
        time.sleep(0.5)
    time.sleep(0.3)
    assert not marker.exists(), "the pickle ran code on the Raft peer"
    log_text = target.log_path.read_text()
    if with_secret:
        assert "refused to unpickle the global posix.system" in log_text
    # the cluster still works
    r = cluster.peers[1].post("/pin", {"keys": keys(5, "p")})
    assert len(r["acked"]) == 5


def test_a_power_loss_between_a_snapshot_and_the_journal_compaction_loses_no_acknowledged_write(
    tmp_path: Path,
) -> None:
    """A snapshot reaches the disk a moment before the journal entries it holds are dropped (PySyncObj drops them
    at its next tick; the journal file is then rewritten). Every peer snapshots at about the same index, so a
    power loss can find all three in that moment, their states without their last commits (those skipped their
    fsync: the journal held the entries). PySyncObj cleared a journal that did not start at the snapshot, and
    with it every entry after the snapshot: acknowledged writes were gone from every peer. Held here: each peer's
    snapshot stays in that moment until the kill."""
    c = Cluster(tmp_path)
    try:
        for p in c.peers:
            c.start(p)
        c.leader()
        c.peers[0].post("/pin", {"keys": keys(20, "w")})
        c.converged()
        copies = [_state_copy(c, p, "before") for p in c.peers]
        for p in c.peers:
            p.post("/hold_after_snapshot", {})
        ks = keys(300, "h")  # one pin per request: more Raft entries than compaction_min_entries
        with ThreadPoolExecutor(4) as ex:
            results = list(ex.map(lambda ik: c.peers[ik[0] % 3].post("/pin", {"keys": [ik[1]]}), enumerate(ks)))
        acked = [k for r in results for k in r["acked"]]
        assert len(acked) == 300
        c.converged()
        held = [p.post("/hold_after_snapshot", {})["held"] for p in c.peers]
        assert held == [1, 1, 1], held  # each peer in that moment
        _power_loss_then_every_write_is_back(c, copies, acked)
    finally:
        for p in c.peers:
            p.stop()


def _small_tmpfs(folder: Path, size: str) -> bool:
    """Mount a tmpfs of ``size`` on ``folder`` (a disk that fills up); False where mounting is not allowed."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                             capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return res.returncode == 0


def test_a_peer_whose_disk_fills_stops_saying_so_and_catches_up_once_it_has_room(tmp_path: Path) -> None:
    """One peer's data folder on a 3 MB disk, the others' on a large one. When it fills, the peer stops with a
    message that says so and what to do (it was killed by SIGBUS, without a word: its journal is a shared
    mapping, and the file grew into holes the full disk could not back); the other two go on acknowledging
    writes. Given room and restarted, it has every acknowledged write."""
    c = Cluster(tmp_path)
    small = c.peers[2].data
    if not _small_tmpfs(small, "3M"):
        pytest.skip("cannot mount a tmpfs here (needs root): no small disk to fill")
    try:
        for p in c.peers:
            c.start(p)
        c.leader()
        acked: list[str] = []
        full = c.peers[2]
        assert full.proc is not None
        for i in range(200):
            r = c.peers[i % 2].post("/pin", {"keys": keys(100, "f")}, timeout=30)
            acked += r["acked"]
            if full.proc.poll() is not None and i % 10 == 9:
                break
        code = full.proc.wait(30)
        log_text = full.log_path.read_text()
        assert code == 74, (code, log_text[-2000:])  # EX_IOERR, not -7 (SIGBUS)
        stop = [line for line in log_text.splitlines() if "cannot be written" in line]
        assert len(stop) == 1 and "This peer stops now, with nothing lost" in stop[0], log_text[-3000:]
        assert "No space left on device" in stop[0] or "disk is full" in stop[0], stop
        assert "Traceback" not in log_text, log_text[-3000:]  # one line that says it all
        assert len(acked) >= 2000 and not r["failed"], r  # the other two went on
        full.proc = None
        subprocess.run(["mount", "-o", "remount,size=64M", str(small)], check=True, timeout=10)
        c.start(full)
        wait(lambda: full.post("/has", {"keys": acked})["missing"] == [], 60, "the peer to have every write")
        c.converged()
    finally:
        for p in c.peers:
            p.stop()
        subprocess.run(["umount", "-l", str(small)], capture_output=True, timeout=10)


def test_state_format_version_refusal(tmp_path: Path) -> None:
    p = Peer(tmp_path, "old")
    p.data.mkdir(parents=True)
    db = sqlite3.connect(p.data / "state.sqlite")
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID")
    db.execute("CREATE TABLE pins (key BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID")
    db.execute("INSERT INTO meta VALUES ('format_version', ?), ('applied_index', 0), ('applied_term', 0)",
               (FORMAT_VERSION - 1,))
    db.commit()
    db.close()
    line = p.start(init=p.spec, expect_ready=False)
    assert p.proc is not None and p.proc.wait(30) == 1
    assert f"format version {FORMAT_VERSION - 1}" in line and f"format version {FORMAT_VERSION}" in line, line
    assert "ipfs-cluster-service state upgrade" in line, line
