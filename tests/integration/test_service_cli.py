"""``ipfs-cluster-service`` as a real process: init, overwrite protection, lock, version, flags."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pincluster.p2p.keys import PrivateKey

EXE = str(Path(sys.executable).parent / "ipfs-cluster-service")
LOCK_MSG = (
    "error obtaining execution lock: lock {p}: someone else has the lock. If no other ipfs-cluster-service "
    "process is running, remove {p}, or make sure that the config folder is writable for the user running "
    "ipfs-cluster-service.\n"
)


def run(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("CLUSTER_", "IPFS_CLUSTER_"))}
    full_env.update(env or {})
    return subprocess.run(
        [EXE, *args],
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=30,
    )


def test_init_twice_needs_force(tmp_path: Path) -> None:
    d = tmp_path / "peer"
    first = run("-c", str(d), "init", "--ipfs", "external")
    assert first.returncode == 0, first.stderr
    assert first.stderr == (
        f"configuration written to {d}/service.json.\n"
        f"new identity written to {d}/identity.json\n"
        f"new empty peerstore written to {d}/peerstore.\n"
        f"swarm key for the IPFS daemon written to {d}/swarm.key: copy it to $IPFS_PATH/swarm.key on this "
        "machine and start the daemon with LIBP2P_FORCE_PNET=1 (every peer's key is the same: it derives from "
        "the secret)\n"
    )
    # a relative -c: the messages name the files by their absolute paths, as Go's (filepath.Abs)
    rel = run("-c", "relative/peer", "init", "--ipfs", "external", cwd=tmp_path)
    assert rel.stderr.startswith(f"configuration written to {tmp_path}/relative/peer/service.json.\n"), rel.stderr
    service = (d / "service.json").read_bytes()
    identity = (d / "identity.json").read_bytes()
    cfg = json.loads(service)
    assert list(cfg["consensus"]) == ["raft"] and "datastore" not in cfg
    assert len(cfg["cluster"]["secret"]) == 64
    for name in ("service.json", "identity.json", "peerstore", "swarm.key"):
        assert (d / name).stat().st_mode & 0o777 == 0o600
    from pincluster.ipfs.swarmkey import derive_swarm_key, load_swarm_key

    assert load_swarm_key(d / "swarm.key") == derive_swarm_key(bytes.fromhex(cfg["cluster"]["secret"]))
    assert d.stat().st_mode & 0o777 == 0o700

    second = run("-c", str(d), "init")
    assert second.returncode == 1
    assert second.stderr == (
        f"error initializing configuration: {d}/service.json already exists; run with --force to overwrite it\n"
    )
    assert (d / "service.json").read_bytes() == service

    third = run("-c", str(d), "init", "--force")
    assert third.returncode == 0, third.stderr
    assert "new identity" not in third.stderr  # the identity is kept
    assert (d / "identity.json").read_bytes() == identity
    assert json.loads((d / "service.json").read_bytes())["cluster"]["secret"] != cfg["cluster"]["secret"]

    fourth = run("-f", "-c", str(d), "init")  # the global --force counts too
    assert fourth.returncode == 0, fourth.stderr


def test_overwrite_prompt_on_a_terminal(tmp_path: Path) -> None:
    d = tmp_path / "peer"
    assert run("-c", str(d), "init").returncode == 0
    before = (d / "service.json").read_bytes()
    for answer, changed in (("n\n", False), ("maybe\ny\n", True)):
        master, slave = pty.openpty()
        try:
            os.write(master, answer.encode())
            env = {k: v for k, v in os.environ.items() if not k.startswith(("CLUSTER_", "IPFS_CLUSTER_"))}
            proc = subprocess.run(
                [EXE, "-c", str(d), "init"], stdin=slave, capture_output=True, text=True, env=env, timeout=30
            )
        finally:
            os.close(slave)
            os.close(master)
        assert proc.returncode == 0, proc.stderr
        assert "The configuration file will be overwritten. Continue? [y/n]: " in proc.stdout
        assert ((d / "service.json").read_bytes() != before) is changed


def test_init_with_peers_secret_env_and_random_ports(tmp_path: Path) -> None:
    d = tmp_path / "peer"
    pids = [str(PrivateKey.generate_ed25519().public_key().peer_id()) for _ in range(2)]
    peers = f"/ip4/10.0.0.1/tcp/9096/p2p/{pids[0]},/dns4/b.example/tcp/9096/p2p/{pids[1]}"
    secret = "ab" * 32
    proc = run(
        "init", "--peers", peers, "-s", "--randomports",
        stdin=secret + "\n", env={"IPFS_CLUSTER_PATH": str(d), "CLUSTER_PEERNAME": "from-env"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "Enter cluster secret (32-byte hex string): "
    assert f"peerstore written to {d}/peerstore with 2 entries.\n" in proc.stderr
    cfg = json.loads((d / "service.json").read_text())
    assert cfg["cluster"]["secret"] == secret
    assert cfg["cluster"]["peername"] == "from-env"
    assert cfg["consensus"]["raft"]["init_peerset"] == pids
    assert (d / "peerstore").read_text() == peers.replace(",", "\n") + "\n"
    ports = [a.rsplit("/", 2)[1] for a in cfg["cluster"]["listen_multiaddress"]]
    ports.append(cfg["api"]["restapi"]["http_listen_multiaddress"].split("/")[-1])
    ports.append(cfg["api"]["ipfsproxy"]["listen_multiaddress"].split("/")[-1])
    ports.append(cfg["api"]["pinsvcapi"]["http_listen_multiaddress"].split("/")[-1])
    assert not {"9094", "9095", "9096", "9097"} & set(ports)


@pytest.mark.parametrize(
    ("args", "stdin", "expected"),
    [
        (["init", "--consensus", "paxos"], None,
         "error choosing consensus: flag value must be set to 'raft' or 'crdt'\n"),
        (["init", "--consensus", "crdt"], None,
         "error choosing consensus: crdt consensus is not supported by pincluster yet; "
         "use --consensus raft (the default)\n"),
        (["init", "--datastore", "mongo"], None,
         "error choosing datastore: flag value must be set to 'leveldb', 'badger', 'badger3' or 'pebble'\n"),
        (["init", "-s"], "1234\n", "error initializing configuration: cluster.secret: is too short: "
         "input secret is 2 bytes, cluster secret must be 32 bytes (64 hex characters)\n"),
        (["init", "--peers", "/ip4/10.0.0.1/tcp/1"], None,
         "error parsing --peers: /ip4/10.0.0.1/tcp/1 has no /p2p/<peer id> part\n"),
        (["--loglevel", "loud", "version"], None, "error setting up logging: invalid log level 'loud'"),
    ],
)  # fmt: skip
def test_init_errors(tmp_path: Path, args: list[str], stdin: str | None, expected: str) -> None:
    d = tmp_path / "peer"
    proc = run("-c", str(d), *args, stdin=stdin)
    assert proc.returncode == 1
    assert proc.stderr.startswith(expected), proc.stderr
    assert not (d / "service.json").exists()


def test_bad_env_at_init_names_the_key(tmp_path: Path) -> None:
    proc = run("-c", str(tmp_path), "init", env={"CLUSTER_RAFT_WAITFORLEADERTIMEOUT": "soon"})
    assert proc.returncode == 1
    assert proc.stderr.startswith(
        "error initializing configuration: raft.wait_for_leader_timeout (from $CLUSTER_RAFT_WAITFORLEADERTIMEOUT): "
    )


def test_lock_held_by_another_process(tmp_path: Path) -> None:
    d = tmp_path / "peer"
    assert run("-c", str(d), "init").returncode == 0
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys
            from pincluster.lock import ClusterLock
            with ClusterLock({str(d)!r}):
                print("locked", flush=True)
                sys.stdin.read()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        proc = run("-c", str(d), "init", "--force")
        assert proc.returncode == 1
        assert proc.stderr == LOCK_MSG.format(p=d / "cluster.lock")
    finally:
        holder.communicate("", timeout=10)
    assert run("-c", str(d), "init", "--force").returncode == 0


def test_version_help_and_source(tmp_path: Path) -> None:
    v = run("--version")
    assert (v.returncode, v.stdout) == (0, "ipfs-cluster-service version 1.1.6\n")
    v = run("version")
    assert (v.returncode, v.stdout) == (0, "1.1.6\n")
    h = run()
    assert h.returncode == 1 and h.stdout.startswith("NAME:\n   ipfs-cluster-service - IPFS Cluster peer\n")
    assert "\n   init     Creates a configuration and generates an identity\n" in h.stdout
    d = tmp_path / "peer"
    s = run("-c", str(d), "init", "http://config.example/service.json")
    assert s.returncode == 0, s.stderr
    assert json.loads((d / "service.json").read_text()) == {"source": "http://config.example/service.json"}
    assert (d / "identity.json").exists()


def test_init_sets_up_the_embedded_ipfs_node(tmp_path: Path) -> None:
    """With --ipfs embedded, init creates the node's repo with a swarm.key derived from the cluster secret:
    two peers initialised with the same secret get the same key, another secret gives another key."""
    secret = "ab" * 32
    keys = []
    for name, sec in (("a", secret), ("b", secret), ("c", "cd" * 32)):
        d = tmp_path / name
        res = run("-c", str(d), "init", "--ipfs", "embedded", "--randomports", env={"CLUSTER_SECRET": sec})
        assert res.returncode == 0, res.stderr
        assert f"embedded IPFS node initialized in {d}/ipfs" in res.stderr
        assert (d / "ipfs" / "config").exists()
        keys.append((d / "ipfs" / "swarm.key").read_text())
    assert keys[0] == keys[1] != keys[2]
    assert keys[0].startswith("/key/swarm/psk/1.0.0/\n/base16/\n")


def test_init_force_keeps_the_embedded_node_and_points_at_it(tmp_path: Path) -> None:
    """``init --force --randomports`` over a folder with an embedded node keeps the node, so the connector and
    the proxy must keep pointing at its API (new random ports there would point at nothing)."""
    d = tmp_path / "peer"
    assert run("-c", str(d), "init", "--randomports", "--ipfs", "embedded").returncode == 0
    api = json.loads((d / "ipfs" / "config").read_text())["Addresses"]["API"]
    again = run("-c", str(d), "init", "--randomports", "--ipfs", "embedded", "--force")
    assert again.returncode == 0, again.stderr
    assert "embedded IPFS node kept in" in again.stderr
    cfg = json.loads((d / "service.json").read_text())
    assert cfg["ipfs_connector"]["ipfshttp"]["node_multiaddress"] == api
    assert cfg["api"]["ipfsproxy"]["node_multiaddress"] == api


def test_randomports_stay_in_the_range_the_environment_gives(tmp_path: Path) -> None:
    """PINCLUSTER_RANDOMPORTS_RANGE confines every port ``init --randomports`` picks (the cluster's listeners and
    the embedded node's); a malformed range is refused with a message that shows the expected form."""
    import re

    d = tmp_path / "peer"
    res = run("-c", str(d), "init", "--randomports", "--ipfs", "embedded",
              env={"PINCLUSTER_RANDOMPORTS_RANGE": "23000-23999"})
    assert res.returncode == 0, res.stderr
    svc = json.loads((d / "service.json").read_text())
    svc.pop("observations", None)  # where metrics and traces go (not listeners; Go leaves them too)
    text = json.dumps(svc) + (d / "ipfs" / "config").read_text()
    ports = {int(p) for p in re.findall(r"/(?:tcp|udp)/(\d+)", text)} - {0}
    assert len(ports) >= 6, ports  # cluster, Raft, REST, proxy, pinning service, the node's API, swarm, gateway
    assert all(23000 <= p <= 23999 for p in ports), sorted(ports)
    for bad in ("23000", "9-5", "x-y", "0-10", "1-70000"):
        res = run("-c", str(tmp_path / f"bad{bad}"), "init", "--randomports",
                  env={"PINCLUSTER_RANDOMPORTS_RANGE": bad})
        assert res.returncode != 0
        assert "PINCLUSTER_RANDOMPORTS_RANGE" in res.stderr and "LOW-HIGH" in res.stderr, res.stderr
