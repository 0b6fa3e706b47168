"""Start real N-peer clusters for end-to-end tests: each peer is an ``ipfs-cluster-service daemon`` process
with its embedded IPFS node (or an external kubo), on free 127.0.0.1 ports, sharing one secret.

Peer 0 starts alone and becomes the Raft leader; the others join it with ``--bootstrap``, as the IPFS Cluster
tutorials teach. Timings are shortened (1 s pings, 2 s metric TTLs) so that alerts and re-pinning happen
within seconds.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
SERVICE = str(BIN / "ipfs-cluster-service")
CTL = str(BIN / "ipfs-cluster-ctl")

FAST = {
    "cluster": {"monitor_ping_interval": "1s", "state_sync_interval": "5s", "pin_recover_interval": "30s"},
    "pubsubmon": {"check_interval": "1s"},
    "disk": {"metric_ttl": "2s"},
    "tags": {"metric_ttl": "2s"},
    "pinqueue": {"metric_ttl": "2s"},
    "ipfshttp": {"connect_swarms_delay": "1s", "pin_timeout": "8s"},
}


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLUSTER_", "IPFS_CLUSTER_", "LIBP2P_"))}
    env.update(extra or {})
    return env


@dataclass
class Peer:
    index: int
    folder: Path
    secret: str
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.folder.parent / f"peer{self.index}.log"

    @property
    def service(self) -> dict[str, Any]:
        return json.loads((self.folder / "service.json").read_text())  # type: ignore[no-any-return]

    @property
    def identity(self) -> str:
        return str(json.loads((self.folder / "identity.json").read_text())["id"])

    @property
    def rest(self) -> str:
        ma = self.service["api"]["restapi"]["http_listen_multiaddress"]
        parts = ma.split("/")
        return f"http://{parts[2]}:{parts[4]}"

    @property
    def cluster_addr(self) -> str:
        ma = self.service["cluster"]["listen_multiaddress"]
        ma = ma[0] if isinstance(ma, list) else ma
        return f"{ma}/p2p/{self.identity}"

    def start(self, *args: str) -> None:
        logf = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [SERVICE, "-c", str(self.folder), "--loglevel", "info,pintracker:debug", "daemon", *args],
            stdout=logf,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=clean_env(),
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        rc = self.proc.returncode
        self.proc = None
        return rc

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def api(self, method: str, path: str, body: bytes | None = None, timeout: float = 30) -> tuple[int, Any]:
        """One REST call; returns (status, decoded JSON or list of NDJSON objects or None)."""
        req = urllib.request.Request(self.rest + path, data=body, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
                status = resp.status
        except urllib.error.HTTPError as err:
            raw = err.read()
            status = err.code
        text = raw.decode()
        if not text.strip():
            return status, None
        try:
            return status, json.loads(text)
        except json.JSONDecodeError:
            return status, [json.loads(line) for line in text.splitlines() if line.strip()]

    def wait_api(self, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"peer{self.index} exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                status, body = self.api("GET", "/id", timeout=5)
                if status == 200 and "READY" in self.log():
                    return body  # type: ignore[no-any-return]
            except OSError as exc:
                last = exc
            time.sleep(0.2)
        raise AssertionError(f"peer{self.index} not ready after {timeout}s ({last}):\n{self.log()[-4000:]}")


def _patch(folder: Path, fast: bool) -> None:
    svc_path = folder / "service.json"
    svc = json.loads(svc_path.read_text())
    listen = svc["cluster"]["listen_multiaddress"]
    listen = [listen] if isinstance(listen, str) else listen
    svc["cluster"]["listen_multiaddress"] = next(a for a in listen if "/tcp/" in a).replace("0.0.0.0", "127.0.0.1")
    raft = svc["consensus"]["raft"]
    raft["listen_multiaddress"] = raft["listen_multiaddress"].replace("0.0.0.0", "127.0.0.1")
    if fast:
        for section, values in FAST.items():
            target = svc.get(section) if section == "cluster" else None
            if target is None:
                for group in ("api", "ipfs_connector", "pin_tracker", "monitor", "informer", "allocator"):
                    if section in svc.get(group, {}):
                        target = svc[group][section]
                        break
            if target is not None:
                target.update(values)
    svc_path.write_text(json.dumps(svc, indent=2))
    ipfs_cfg = folder / "ipfs" / "config"
    if ipfs_cfg.exists():
        cfg = json.loads(ipfs_cfg.read_text())
        cfg["Addresses"]["Swarm"] = [a.replace("0.0.0.0", "127.0.0.1") for a in cfg["Addresses"]["Swarm"]]
        ipfs_cfg.write_text(json.dumps(cfg, indent=2))


def init_peers(root: Path, n: int, *, secret: str | None = None, fast: bool = True, ipfs: str = "embedded",
               extra_env: dict[str, str] | None = None) -> list[Peer]:
    secret = secret or secrets.token_hex(32)
    peers = []
    for i in range(n):
        folder = root / f"peer{i}"
        env = clean_env({"CLUSTER_SECRET": secret, "CLUSTER_PEERNAME": f"peer{i}", **(extra_env or {})})
        res = subprocess.run(
            [SERVICE, "-c", str(folder), "init", "--randomports", "--ipfs", ipfs],
            env=env, capture_output=True, text=True, timeout=60,
        )
        assert res.returncode == 0, res.stderr
        _patch(folder, fast)
        peers.append(Peer(i, folder, secret))
    return peers


def start_cluster(peers: list[Peer], timeout: float = 90) -> None:
    """Start peer 0, then the others bootstrapping to it; wait until every peer sees every other."""
    peers[0].start()
    peers[0].wait_api(timeout)
    for p in peers[1:]:
        p.start("--bootstrap", peers[0].cluster_addr)
    for p in peers[1:]:
        p.wait_api(timeout)
    deadline = time.monotonic() + timeout
    want = {p.identity for p in peers}
    while time.monotonic() < deadline:
        ok = True
        for p in peers:
            _, body = p.api("GET", "/id")
            if set(body.get("cluster_peers") or ()) != want:
                ok = False
        if ok:
            return
        time.sleep(0.3)
    raise AssertionError("peers did not all see each other:\n" + "\n".join(p.log()[-2000:] for p in peers))


def stop_all(peers: list[Peer]) -> None:
    for p in peers:
        try:
            p.stop()
        except Exception:
            p.kill()
