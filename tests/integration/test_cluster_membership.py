"""Raft and membership with real daemons on 127.0.0.1: concurrent writes, leader failover, restarts, joins,
removals, wrong secrets, leaving on shutdown, signals and the folder lock.

One 3-peer cluster serves the module; the tests run in file order and each leaves it whole for the next (a
test that stops peers starts them again). Pins use identity-hash CIDs: their content is inside the CID, so
every node pins them at once without fetching anything, and the tests measure Raft, not bitswap.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest
from tests.integration.cluster_harness import Peer, clean_env, init_peers, running_cluster, start_cluster
from tests.integration.cluster_harness import wait_for as _wait_for

from pincluster.localnet import SERVICE
from pincluster.lock import ClusterLock
from pincluster.pintracker.heads import HEAD_CACHE_FILE
from pincluster.types.cid import CID, IDENTITY, RAW, multihash_encode

pytestmark = pytest.mark.timeout(400)

T = TypeVar("T")
EVERYWHERE = "replication-min=-1&replication-max=-1"
LEADER_RE = re.compile(r"Raft leader is now (\S+) \(term (\d+)\)")

#: An empty pinset or peer list is an answer here: only None/False mean "not yet".
wait_for = functools.partial(_wait_for, done=lambda v: v is not None and v is not False)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Peer]]:
    root = tmp_path_factory.mktemp("membership")
    with running_cluster(root, 3) as peers:
        yield peers


@pytest.fixture(scope="module")
def extra_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("membership-extra")


def identity_cid(tag: str) -> str:
    """A CID whose content is its own digest: pinnable on every node without any block transfer."""
    return str(CID.v1(RAW, multihash_encode(IDENTITY, tag.encode())))


def allocations(peer: Peer) -> dict[str, str]:
    """The peer's whole shared pinset as {cid: canonical JSON of the pin}."""
    status, body = peer.api("GET", "/allocations", timeout=60)
    assert status in (200, 204), body
    items = body if isinstance(body, list) else ([] if body is None else [body])
    return {p["cid"]: json.dumps(p, sort_keys=True) for p in items}


def same_pinset(peers: list[Peer], want: set[str] | None = None) -> dict[str, str] | None:
    """The common pinset if every peer holds the same one (and it contains ``want``), else None."""
    sets = [allocations(p) for p in peers]
    if any(s != sets[0] for s in sets[1:]):
        return None
    if want is not None and not want <= set(sets[0]):
        return None
    return sets[0]


def cluster_peers(peer: Peer) -> set[str]:
    status, body = peer.api("GET", "/id", timeout=10)
    assert status == 200, body
    return set(body["cluster_peers"] or ())


def leader_of(peer: Peer, after: int = 0) -> str | None:
    """The Raft leader's peer id as the peer's log last named it (only log text past offset ``after``)."""
    found = LEADER_RE.findall(peer.log()[after:])
    if not found:
        return None
    name = found[-1][0]
    return None if name == "None" else name.split("@")[0]


def write(peer: Peer, cid: str) -> bool:
    """One pin through ``peer``'s REST API; True only when it was acknowledged (HTTP 200)."""
    try:
        status, _ = peer.api("POST", f"/pins/{cid}?{EVERYWHERE}", timeout=15)
    except OSError:
        return False
    return status == 200


def secret_of(peer: Peer) -> str:
    return str(peer.service["cluster"]["secret"])


def new_peer(root: Path, name: str, secret: str, **changes: Any) -> Peer:
    """An extra peer (initialised like the cluster's) in its own folder under ``root``."""
    folder = root / name
    folder.mkdir()
    peer = init_peers(folder, 1, secret=secret, service_changes=changes or None)[0]
    return peer


def test_1000_concurrent_pins_reach_every_peer(cluster: list[Peer]) -> None:
    cids = [identity_cid(f"concurrent-{i}") for i in range(1000)]
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=12) as pool:
        ok = list(pool.map(lambda ic: write(cluster[ic[0] % 3], ic[1]), enumerate(cids)))
    took = time.monotonic() - started
    assert all(ok), f"{ok.count(False)} of 1000 pins were refused"
    pinset = wait_for(lambda: same_pinset(cluster, set(cids)), timeout=60, what="identical pinsets with 1000 pins")
    assert set(cids) <= set(pinset)
    sample = json.loads(pinset[cids[0]])
    assert sample["replication_factor_min"] == -1 and sample["allocations"] == []
    print(f"1000 pins through 3 peers, 12 at a time: {took:.1f} s ({1000 / took:.0f}/s)")


def test_leader_kill_during_writes_keeps_acknowledged_writes(cluster: list[Peer]) -> None:
    leader_id = wait_for(lambda: leader_of(cluster[0]), what="a Raft leader")
    assert all(leader_of(p) == leader_id for p in cluster)
    victim = next(p for p in cluster if p.identity == leader_id)
    survivors = [p for p in cluster if p is not victim]
    acked: list[str] = []
    refused: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def writer(n: int) -> None:
        i = 0
        while not stop.is_set():
            cid = identity_cid(f"failover-{n}-{i}")
            ok = write(cluster[(n + i) % 3], cid)
            with lock:
                (acked if ok else refused).append(cid)
            i += 1

    threads = [threading.Thread(target=writer, args=(n,), daemon=True) for n in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    offsets = {p.index: len(p.log()) for p in survivors}
    before_kill = len(acked)
    killed_at = time.monotonic()
    victim.kill()

    def new_leader() -> str | None:
        names = {leader_of(p, offsets[p.index]) for p in survivors}
        return names.pop() if len(names) == 1 and None not in names and leader_id not in names else None

    new_id = wait_for(new_leader, timeout=15, interval=0.05, what="a new Raft leader")
    failover = time.monotonic() - killed_at
    wait_for(lambda: len(acked) > before_kill + 20 or None, timeout=20, what="writes acknowledged after the failover")
    stop.set()
    for t in threads:
        t.join(30)
    assert new_id in {p.identity for p in survivors}
    assert failover < 5, f"a new leader took {failover:.1f} s"
    want = set(acked)
    wait_for(lambda: same_pinset(survivors, want), timeout=30, what="every acknowledged write on the survivors")

    victim.start()
    victim.wait_ready(60)
    pinset = wait_for(lambda: same_pinset(cluster, want), timeout=60, what="the restarted peer caught up")
    assert want <= set(pinset)
    print(f"failover {failover:.2f} s; {len(acked)} writes acknowledged, {len(refused)} refused")


def stop_with(peer: Peer, sig: signal.Signals, timeout: float = 30) -> tuple[int | None, str]:
    """Send one signal and wait for the exit; returns (exit code or None, the log text written meanwhile)."""
    assert peer.proc is not None
    start = len(peer.log())
    peer.proc.send_signal(sig)
    try:
        code: int | None = peer.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        code = None
    text = peer.log()[start:]
    if code is None:
        peer.kill()  # it hung: the caller fails on code None, no need for another graceful attempt
    else:
        peer.stop()
    return code, text


def test_folder_lock_refuses_a_second_daemon(cluster: list[Peer]) -> None:
    folder = cluster[1].folder
    res = subprocess.run(
        [SERVICE, "-c", str(folder), "daemon"], capture_output=True, text=True, timeout=60, env=clean_env()
    )
    assert res.returncode == 1
    msg = (
        f"error obtaining execution lock: lock {folder}/cluster.lock: someone else has the lock. "
        f"If no other ipfs-cluster-service process is running, remove {folder}/cluster.lock, "
        "or make sure that the config folder is writable for the user running ipfs-cluster-service."
    )
    assert msg in res.stdout + res.stderr, res.stdout + res.stderr
    assert cluster[1].running_pid() is not None  # the running daemon is untouched
    assert cluster[1].api("GET", "/id")[0] == 200


def test_signals_stop_in_order_and_full_restart_keeps_pinset(cluster: list[Peer]) -> None:
    for i in range(5):
        assert write(cluster[i % 3], identity_cid(f"signals-{i}"))
    before = wait_for(lambda: same_pinset(cluster, {identity_cid(f"signals-{i}") for i in range(5)}),
                      what="settled pinset")
    sigs = (signal.SIGHUP, signal.SIGINT, signal.SIGTERM)
    for peer, sig in zip(reversed(cluster), sigs, strict=True):
        assert (peer.folder / HEAD_CACHE_FILE).exists()  # the listing cache of this daemon run
        code, text = stop_with(peer, sig)
        assert code == 0, f"{sig.name}: exit {code}\n{text[-3000:]}"
        assert f"received {sig.name}: shutting down" in text
        assert "shutdown complete" in text, text[-3000:]
        assert _lock_free(peer.folder)
        assert not (peer.folder / HEAD_CACHE_FILE).exists()
    for p in cluster:
        p.start()
    for p in cluster:
        p.wait_ready(60)
    after = wait_for(lambda: same_pinset(cluster, set(before)), timeout=60, what="pinset after the full restart")
    assert after == before
    for p in cluster:  # each fills its listing cache once ready, so that a first listing is not the slow one
        wait_for(lambda p=p: f"listing cache ready: {len(before)} pins" in p.log(this_run=True), what="warm")
    want = {p.identity for p in cluster}
    wait_for(lambda: all(cluster_peers(p) == want for p in cluster) or None, what="three peers after the restart")


def _lock_free(folder: Path) -> bool:
    """Whether the daemon released ``cluster.lock`` (taking it would raise LockError otherwise)."""
    lk = ClusterLock(folder)
    lk.acquire()
    lk.release()
    return True


def _wipe_raft(peer: Peer) -> None:
    peer.stop()
    shutil.rmtree(peer.folder / "raft", ignore_errors=True)


def test_wiped_raft_folder_rejoins_through_bootstrap(cluster: list[Peer]) -> None:
    for i in range(20):
        assert write(cluster[i % 3], identity_cid(f"wipe-{i}"))
    before = wait_for(lambda: same_pinset(cluster), what="settled pinset")
    peer = cluster[2]
    _wipe_raft(peer)
    try:
        peer.start("--bootstrap", cluster[0].cluster_addr)
        peer.wait_ready(60)
        after = wait_for(lambda: same_pinset(cluster, set(before)), timeout=60, what="the wiped peer caught up")
        assert after == before
    finally:
        if peer.running_pid() is None or peer.proc is None or peer.proc.poll() is not None:
            peer.stop()


def test_wiped_raft_folder_catches_up_after_peers_rm(cluster: list[Peer]) -> None:
    """The workaround for the case above: remove the wiped peer from the peerset first, then bootstrap."""
    peer = cluster[2]
    _wipe_raft(peer)  # already stopped and wiped when the test above ran; this also makes the test standalone
    for i in range(20):
        assert write(cluster[i % 2], identity_cid(f"wipe-rm-{i}"))
    before = wait_for(lambda: same_pinset(cluster[:2]), what="settled pinset")
    status, body = cluster[0].api("DELETE", f"/peers/{peer.identity}")
    assert status in (200, 204), body
    peer.start("--bootstrap", cluster[0].cluster_addr)
    peer.wait_ready(60)
    after = wait_for(lambda: same_pinset(cluster, set(before)), timeout=60, what="the wiped peer caught up")
    assert after == before
    want = {p.identity for p in cluster}
    wait_for(lambda: all(cluster_peers(p) == want for p in cluster) or None, what="three peers everywhere")


def test_fourth_peer_joins_then_is_removed(cluster: list[Peer], extra_root: Path) -> None:
    before = wait_for(lambda: same_pinset(cluster), what="settled pinset")
    fourth = new_peer(extra_root, "fourth", secret_of(cluster[0]))
    fourth.start("--bootstrap", cluster[1].cluster_addr)
    try:
        fourth.wait_ready(60)
        everyone = [*cluster, fourth]
        ids = {p.identity for p in everyone}
        wait_for(lambda: all(cluster_peers(p) == ids for p in everyone) or None, what="four peers everywhere")
        assert wait_for(lambda: same_pinset(everyone, set(before)), timeout=60, what="state on the 4th") == before

        status, body = cluster[0].api("DELETE", f"/peers/{fourth.identity}")
        assert status in (200, 204), body
        three = {p.identity for p in cluster}
        wait_for(lambda: all(cluster_peers(p) == three for p in cluster) or None, what="the 4th gone from /id")
        assert fourth.proc is not None
        code = fourth.proc.wait(30)  # it notices that it was removed and shuts itself down
        assert code == 0
        log = fourth.log()
        assert "removed from the cluster peerset" in log and "shutdown complete" in log
    finally:
        fourth.stop()


def test_wrong_secret_cannot_join(cluster: list[Peer], extra_root: Path) -> None:
    stranger = new_peer(extra_root, "stranger", os.urandom(32).hex())
    stranger.start("--bootstrap", cluster[0].cluster_addr)
    try:
        assert stranger.proc is not None
        code = stranger.proc.wait(60)
        assert code != 0
        assert "does not share the same cluster.secret" in stranger.log(), stranger.log()[-3000:]
        assert all(stranger.identity not in cluster_peers(p) for p in cluster)
    finally:
        stranger.stop()


def test_leave_on_shutdown_removes_the_peer(cluster: list[Peer], extra_root: Path) -> None:
    leaver = new_peer(extra_root, "leaver", secret_of(cluster[0]), **{"cluster.leave_on_shutdown": True})
    leaver.start("--bootstrap", cluster[0].cluster_addr)
    try:
        leaver.wait_ready(60)
        with_leaver = {p.identity for p in cluster} | {leaver.identity}
        wait_for(lambda: all(cluster_peers(p) == with_leaver for p in cluster) or None, what="the leaver joined")
        code, text = stop_with(leaver, signal.SIGTERM)
        assert code == 0 and "shutdown complete" in text, text[-3000:]
        three = {p.identity for p in cluster}
        wait_for(lambda: all(cluster_peers(p) == three for p in cluster) or None, what="the leaver left the peerset")
    finally:
        leaver.stop()


def test_leave_on_shutdown_when_the_leaver_is_the_leader(extra_root: Path) -> None:
    """A 2-peer cluster whose first peer (so its Raft leader) leaves on shutdown: the other one stays alone."""
    secret = os.urandom(32).hex()
    first = new_peer(extra_root, "lead-leaver", secret, **{"cluster.leave_on_shutdown": True})
    second = new_peer(extra_root, "stayer", secret)
    try:
        start_cluster([first, second])
        assert leader_of(second) == first.identity
        assert write(second, identity_cid("before the leader leaves"))
        code, text = stop_with(first, signal.SIGTERM, timeout=15)  # a follower leaves in well under 1 s
        assert code == 0 and "shutdown complete" in text, text[-3000:]
        wait_for(lambda: cluster_peers(second) == {second.identity} or None, what="the leader left the peerset")
        assert write(second, identity_cid("after the leader left"))  # the remaining peer is a working cluster
    finally:
        first.kill()
        second.stop()
