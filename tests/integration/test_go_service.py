"""IPFS Cluster's own ``ipfs-cluster-service`` 1.1.6 (the Go original, built by ``tests/gocluster.sh``) beside
ours, on what a user moves from one to the other: the configuration files ``init`` writes, the state export
format (each imports the other's export), and a peer folder moved over from Go in place, whose Raft state ours
cannot read: it must refuse to start, say how to bring the pinset over, and that way must work.

No daemon of Go's runs (its peers cannot join ours); every command here is offline. Skipped with
``PINCLUSTER_NO_GO_CLUSTER=1``.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.integration.cluster_harness import isolate_go_peer, wait_for

from pincluster.localnet import SERVICE, clean_env
from pincluster.p2p.keys import PrivateKey
from pincluster.types.cid import CID

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kubo import go_cluster_binary  # type: ignore[import-not-found,unused-ignore]

pytestmark = pytest.mark.timeout(120)

SECRET = secrets.token_hex(32)  # this module's own: Go's daemons find other tests' peers by mDNS
#: ``service.json`` keys pincluster writes and Go does not (its own Raft transport and journal compaction)
OURS_ONLY = {"consensus.raft.listen_multiaddress", "consensus.raft.compaction_min_entries"}


@pytest.fixture(scope="module")
def go_service() -> Path:
    return go_cluster_binary("ipfs-cluster-service")


def run(binary: Path | str, folder: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = clean_env({"CLUSTER_SECRET": SECRET, "CLUSTER_PEERNAME": "moved", "GOLOG_LOG_LEVEL": "error"})
    return subprocess.run([str(binary), "-c", str(folder), *args], capture_output=True, text=True, timeout=60,
                          env=env, cwd=cwd, stdin=subprocess.DEVNULL)


def ok(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode == 0, f"{res.args}: exit {res.returncode}\nstdout: {res.stdout}\nstderr: {res.stderr}"
    return res.stdout


def _flat(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict) and obj:
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else k))
        return out
    return {prefix: obj}


def test_init_writes_what_go_writes(go_service: Path, tmp_path: Path) -> None:
    """Every key and default of Go's ``init --consensus raft`` is in ours, with the same value; ours adds two
    keys of its own. Each program reads the other's files; both name them by absolute paths."""
    go, ours = tmp_path / "go", tmp_path / "ours"
    go_init = run(go_service, Path("go"), "init", "--consensus", "raft", cwd=tmp_path)
    ours_init = run(SERVICE, Path("ours"), "init", "--consensus", "raft", "--ipfs", "external", cwd=tmp_path)
    ok(go_init), ok(ours_init)
    for d, res in ((go, go_init), (ours, ours_init)):
        for line in (f"configuration written to {d}/service.json.", f"new identity written to {d}/identity.json",
                     f"new empty peerstore written to {d}/peerstore."):
            assert line in res.stderr.splitlines(), res.stderr
    g, o = (_flat(json.loads((d / "service.json").read_text())) for d in (go, ours))
    assert set(o) - set(g) == OURS_ONLY
    assert {k: o.get(k) for k in g} == g
    # each reads the other's service.json and identity.json (an empty state exports nothing)
    assert ok(run(go_service, ours, "state", "export")) == ""
    assert ok(run(SERVICE, go, "state", "export")) == ""


def _rich_pins() -> list[dict[str, Any]]:
    """Pins of every type and option: names that JSON escapes, metadata, origins, user allocations, expiry,
    an update's origin, references, a CIDv1, depths -1, 0, 1 and 3."""
    def cid(i: int) -> str:
        return str(CID.v0(hashlib.sha256(b"go-state-%d" % i).digest()))

    peers = [str(PrivateKey.generate_ed25519().public_key().peer_id()) for _ in range(3)]
    base = {"replication_factor_min": -1, "replication_factor_max": -1, "allocations": []}
    return [
        {**base, "cid": cid(1), "name": "plain", "type": "pin", "max_depth": -1},
        {"cid": cid(2), "name": '<html> & "quotes" ünïcode ☃', "type": "pin", "max_depth": 0, "mode": "direct",
         "replication_factor_min": 2, "replication_factor_max": 3, "allocations": peers[:2],
         "user_allocations": [peers[2]], "metadata": {"k": "v", "<a>": "&b"},
         "origins": [f"/ip4/1.2.3.4/tcp/4001/p2p/{peers[0]}"], "expire_at": "2030-01-02T03:04:05.123456Z",
         "timestamp": "2026-01-02T03:04:05.5Z"},
        {"cid": cid(3), "name": "updated", "type": "pin", "max_depth": -1, "replication_factor_min": 1,
         "replication_factor_max": 1, "allocations": [peers[1]], "pin_update": cid(1),
         "timestamp": "2026-11-26T18:00:00Z"},
        {"cid": "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku", "name": "raw v1", "type": "pin",
         "max_depth": -1, "replication_factor_min": 1, "replication_factor_max": 2, "allocations": [peers[2]]},
        {**base, "cid": cid(5), "name": "depth", "type": "pin", "max_depth": 3},
        {**base, "cid": cid(6), "name": "meta", "type": "meta-pin", "max_depth": -1, "reference": cid(7),
         "shard_size": 1048576},
        {**base, "cid": cid(7), "name": "cdag", "type": "clusterdag-pin", "max_depth": 0, "reference": cid(6)},
        {"cid": cid(8), "name": "shard", "type": "shard-pin", "max_depth": 1, "replication_factor_min": 1,
         "replication_factor_max": 1, "allocations": [peers[0]], "reference": cid(9)},
    ]


def _by_cid(text: str) -> dict[str, dict[str, Any]]:
    return {p["cid"]: p for p in map(json.loads, text.splitlines())}


def _to_seconds(pin: dict[str, Any]) -> dict[str, Any]:
    """The pin as Go's state keeps it: times to the second (its protobuf holds Unix seconds)."""
    out = dict(pin)
    for key in ("timestamp", "expire_at"):
        head, dot, _ = out[key].partition(".")
        out[key] = head + "Z" if dot else out[key]
    return out


@pytest.fixture
def folders(go_service: Path, tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    go, ours = tmp_path / "go", tmp_path / "ours"
    ok(run(go_service, go, "init", "--consensus", "raft"))
    ok(run(SERVICE, ours, "init", "--consensus", "raft", "--ipfs", "external"))
    yield go, ours


def test_each_imports_the_others_export(go_service: Path, folders: tuple[Path, Path], tmp_path: Path) -> None:
    go, ours = folders
    src = tmp_path / "rich.json"
    src.write_text("".join(json.dumps(p) + "\n" for p in _rich_pins()))
    ok(run(SERVICE, ours, "state", "import", "-f", str(src)))
    our_export = ok(run(SERVICE, ours, "state", "export"))
    (tmp_path / "ours.json").write_text(our_export)

    ok(run(go_service, go, "state", "import", "-f", str(tmp_path / "ours.json")))
    go_export = ok(run(go_service, go, "state", "export"))
    # the same pins, every field equal (Go writes the same JSON), times to Go's precision
    assert _by_cid(go_export) == {c: _to_seconds(p) for c, p in _by_cid(our_export).items()}
    assert len(_by_cid(go_export)) == 8

    (tmp_path / "go.json").write_text(go_export)
    ok(run(SERVICE, ours, "state", "import", "-f", str(tmp_path / "go.json")))
    again = ok(run(SERVICE, ours, "state", "export"))
    assert _by_cid(again) == _by_cid(go_export)
    # ours in CID byte order (Go's follows its datastore's iteration)
    assert [CID.decode(c).bytes for c in _by_cid(again)] == sorted(CID.decode(c).bytes for c in _by_cid(again))


def test_a_go_peer_folder_is_refused_until_its_pinset_is_brought_over(
    go_service: Path, folders: tuple[Path, Path], tmp_path: Path
) -> None:
    """The folder of a Go peer, used by ours in place: its Raft state cannot be read, so nothing starts (an
    empty pinset would be shown); following the message (Go's export, then our import) brings the pins over
    and keeps Go's folder as a backup."""
    go, _ = folders
    src = tmp_path / "rich.json"
    src.write_text("".join(json.dumps(p) + "\n" for p in _rich_pins()))
    ok(run(go_service, go, "state", "import", "-f", str(src)))
    raft = go / "raft"
    before = sorted(str(p.relative_to(go)) for p in raft.rglob("*"))
    assert "raft/snapshots" in before

    for args in (("daemon",), ("state", "export"), ("state", "upgrade")):
        res = run(SERVICE, go, *args)
        assert res.returncode == 1, (args, res.stdout, res.stderr)
        assert f"{raft} holds the Raft state of IPFS Cluster (Go) (snapshots), which pincluster cannot read" in (
            res.stderr), res.stderr
        assert "state export -f pins.json" in res.stderr and "state import pins.json" in res.stderr
        assert "listening" not in res.stderr  # refused before any listener opened
    assert sorted(str(p.relative_to(go)) for p in raft.rglob("*")) == before  # nothing touched

    pins = tmp_path / "pins.json"
    ok(run(go_service, go, "state", "export", "-f", str(pins)))
    imported = run(SERVICE, go, "state", "import", "-f", str(pins))
    ok(imported)
    assert f"the previous state was moved to {go}/raft.old.0" in imported.stdout + imported.stderr
    assert (go / "raft.old.0" / "snapshots").is_dir()  # Go's state kept, not deleted
    assert _by_cid(ok(run(SERVICE, go, "state", "export"))) == _by_cid(pins.read_text())


def test_go_and_ours_exclude_each_other_on_one_folder(go_service: Path, tmp_path: Path) -> None:
    """Both take Go's lock (an fcntl lock on an empty ``cluster.lock``): neither runs on a folder the other
    has, and each locks it again once the other is done."""
    from pincluster.lock import ClusterLock

    folder = tmp_path / "peer"
    ok(run(go_service, folder, "init", "--consensus", "raft", "--randomports"))
    isolate_go_peer(folder / "service.json")
    with ClusterLock(folder):
        res = run(go_service, folder, "state", "export")
        assert res.returncode == 1 and "someone else has the lock" in res.stderr, res.stderr
    assert (folder / "cluster.lock").stat().st_size == 0  # Go refuses a lock file with content
    ok(run(go_service, folder, "state", "export"))

    log = tmp_path / "go-daemon.log"
    with log.open("w") as out:
        daemon = subprocess.Popen([str(go_service), "-c", str(folder), "daemon"], stdout=out, stderr=out,
                                  env=clean_env(), stdin=subprocess.DEVNULL)
    try:
        # Go takes the lock before it listens
        wait_for(lambda: daemon.poll() is not None or "listening on" in log.read_text(), "Go's daemon listening",
                 timeout=30)
        assert daemon.poll() is None, log.read_text()
        for args in (("daemon",), ("state", "export")):
            res = run(SERVICE, folder, *args)
            assert res.returncode == 1, res.stderr
            assert res.stderr.startswith(f"error obtaining execution lock: lock {folder}/cluster.lock: someone else "
                                         "has the lock."), res.stderr
    finally:
        daemon.kill()  # its orderly shutdown can wait long for an IPFS daemon that is not there
        daemon.wait(30)
