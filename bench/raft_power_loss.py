"""Power-loss torture of the Raft consensus: real peer processes (tests/integration/raft_peer.py) on 127.0.0.1.

Each round: a new 3-peer cluster takes writes from 6 concurrent writers (1, 3 or 10 pins a request); at a random
moment every peer's state is copied; at another every peer is killed (-9) and its state put back to the copy,
as a power loss that takes the state commits which skipped their fsync may do (harder: it takes fsynced ones
too); then the peers restart. Every acknowledged write must be on every peer again. Snapshots are taken every
40 entries, so kills often land while one is being written or the journal compacted after it.

Prints a line per round and a summary: acknowledged writes, those after the copy (that the journals and
snapshots had to bring back), the rounds where a peer restarted between a snapshot and the compaction of its
journal (``_journal_from_snapshot``), and any write missing. Exits 1 at the first round that loses one, keeping
its folder.

``--at-snapshot`` kills a moment (0–10 ms) after any peer logs a snapshot written, which is when its journal
still holds the entries the snapshot does: where PySyncObj lost writes (``RaftConsensus._journal_from_snapshot``).

Usage: .venv/bin/python bench/raft_power_loss.py [--rounds 25] [--seed N] [--at-snapshot]
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "integration"))
import test_consensus_raft as harness  # the Raft tests' peer harness


def _snapshots_logged(c: harness.Cluster) -> int:
    return sum(p.log_path.read_text().count("Raft snapshot at index") for p in c.peers)


def _kill_after_next_snapshot(c: harness.Cluster, rng: random.Random, limit: float = 10.0) -> None:
    """Kill every peer a moment after any of them logs a snapshot written (the moment before its journal is
    compacted), or at a random moment if none does within ``limit`` seconds."""
    before = _snapshots_logged(c)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and _snapshots_logged(c) == before:
        time.sleep(0.002)
    time.sleep(rng.uniform(0, 0.01))
    for p in c.peers:
        p.kill()


def one_round(rng: random.Random, root: Path, at_snapshot: bool) -> tuple[int, int, bool, list[int]]:
    """(acknowledged writes, of which after the copy, whether a peer restarted in the snapshot-compaction
    window, missing writes per peer)."""
    c = harness.Cluster(root)
    try:
        for p in c.peers:
            c.start(p)
        c.leader()
        acked: list[str] = []
        lock = threading.Lock()
        stop = threading.Event()

        def writer(i: int) -> None:
            while not stop.is_set():
                ks = harness.keys(rng.choice([1, 1, 1, 3, 10]), "t")
                try:
                    res = c.peers[i % 3].post("/pin", {"keys": ks}, timeout=5)
                except OSError:
                    continue
                with lock:
                    acked.extend(res.get("acked", []))

        threads = [threading.Thread(target=writer, args=(i,), daemon=True) for i in range(6)]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.5, 2.0))
        with lock:
            before = len(acked)
        copies = [harness._state_copy(c, p, "copy") for p in c.peers]
        if at_snapshot:
            _kill_after_next_snapshot(c, rng)
        else:
            time.sleep(rng.uniform(0.5, 3.0))
            for p in c.peers:
                p.kill()
        stop.set()
        for t in threads:
            t.join(10)
        for state, copy in copies:
            harness._restore_state(state, copy)
        for p in c.peers:
            c.start(p)
        c.leader(30)
        missing = [0, 0, 0]
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            missing = [len(p.post("/has", {"keys": acked})["missing"]) for p in c.peers]
            if not any(missing):
                break
            time.sleep(0.5)
    finally:
        for p in c.peers:
            p.stop()
    window = any("before the snapshot at index" in p.log_path.read_text() for p in c.peers)
    return len(acked), len(acked) - before, window, missing


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=25)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--at-snapshot", action="store_true",
                    help="kill a moment after a peer logs a snapshot written, not at a random moment")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    total = after = windows = 0
    for r in range(args.rounds):
        root = Path(tempfile.mkdtemp(prefix="pincluster-power-loss-"))
        acked, late, window, missing = one_round(rng, root, args.at_snapshot)
        total, after, windows = total + acked, after + late, windows + window
        print(f"round {r}: {acked} writes acknowledged, {late} after the copy; "
              f"{'a peer restarted between a snapshot and its compaction; ' if window else ''}missing {missing}",
              flush=True)
        if any(missing):
            print(f"LOST acknowledged writes; the round's folder is kept: {root}")
            return 1
        shutil.rmtree(root, ignore_errors=True)
    print(f"{args.rounds} rounds: {total} writes acknowledged, {after} of them after the state copies, every one "
          f"on every peer after the restarts; {windows} rounds restarted a peer between a snapshot and its "
          "journal's compaction")
    return 0


if __name__ == "__main__":
    sys.exit(main())
