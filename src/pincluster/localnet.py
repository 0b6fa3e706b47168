"""A local private network: several cluster peers with embedded IPFS nodes on this machine.

This is the README's quick start (``python -m pincluster.localnet up``) and the integration tests' harness.
Each peer is a real ``ipfs-cluster-service daemon`` process with its own config folder, on free 127.0.0.1
ports, all sharing one generated cluster secret (and so one private IPFS network: the embedded nodes'
``swarm.key`` derives from it). Peer 0 starts first and the others join it with ``--bootstrap``, as the IPFS
Cluster tutorials teach; a network that already exists is restarted as it is.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
SERVICE = str(BIN / "ipfs-cluster-service")
CTL = str(BIN / "ipfs-cluster-ctl")

#: Shorter timings for tests: 1 s pings and 2 s metric TTLs make alerts and re-pinning happen in seconds.
FAST: dict[str, dict[str, Any]] = {
    "cluster": {"monitor_ping_interval": "1s", "state_sync_interval": "5s", "pin_recover_interval": "30s"},
    "pubsubmon": {"check_interval": "1s"},
    "disk": {"metric_ttl": "2s"},
    "tags": {"metric_ttl": "2s"},
    "pinqueue": {"metric_ttl": "2s"},
    "ipfshttp": {"connect_swarms_delay": "1s", "pin_timeout": "8s"},
}
_GROUPS = ("api", "ipfs_connector", "pin_tracker", "monitor", "informer", "allocator", "consensus")


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment without CLUSTER_* overrides that would leak into every peer."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLUSTER_", "IPFS_CLUSTER_", "LIBP2P_"))}
    env.update(extra or {})
    return env


@dataclass
class Peer:
    """One peer of the local network: its folder, and its daemon process when running."""

    index: int
    folder: Path
    proc: subprocess.Popen[bytes] | None = None
    _log_offset: int = 0  # where this run's lines begin in the (appended) log file

    @property
    def log_path(self) -> Path:
        return self.folder.parent / f"peer{self.index}.log"

    @property
    def pid_path(self) -> Path:
        return self.folder.parent / f"peer{self.index}.pid"

    @property
    def service(self) -> dict[str, Any]:
        return json.loads((self.folder / "service.json").read_text())  # type: ignore[no-any-return]

    @property
    def identity(self) -> str:
        return str(json.loads((self.folder / "identity.json").read_text())["id"])

    @property
    def rest_multiaddr(self) -> str:
        return str(self.service["api"]["restapi"]["http_listen_multiaddress"])

    @property
    def rest(self) -> str:
        """The REST API's URL: https when the peer serves it over TLS (``ssl_cert_file``)."""
        parts = self.rest_multiaddr.split("/")
        scheme = "https" if self.service["api"]["restapi"].get("ssl_cert_file") else "http"
        return f"{scheme}://{parts[2]}:{parts[4]}"

    @property
    def cluster_addr(self) -> str:
        ma = self.service["cluster"]["listen_multiaddress"]
        ma = ma[0] if isinstance(ma, list) else ma
        return f"{ma}/p2p/{self.identity}"

    @property
    def ipfs_api(self) -> str:
        parts = self.service["ipfs_connector"]["ipfshttp"]["node_multiaddress"].split("/")
        return f"http://{parts[2]}:{parts[4]}/api/v0"

    def start(self, *args: str, loglevel: str = "info") -> None:
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        logf = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [SERVICE, "-c", str(self.folder), "--loglevel", loglevel, "daemon", *args],
            stdout=logf,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=clean_env(),
            start_new_session=True,  # keeps running after the quick start's shell exits
        )
        self.pid_path.write_text(str(self.proc.pid))

    def running_pid(self) -> int | None:
        """The pid of this peer's daemon if one is running (from this process or an earlier one)."""
        if self.proc is not None and self.proc.poll() is None:
            return self.proc.pid
        try:
            pid = int(self.pid_path.read_text())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        pid = self.running_pid()
        if pid is not None:
            with _suppress():
                os.kill(pid, sig)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and _alive(pid, self.proc):
                time.sleep(0.1)
            if _alive(pid, self.proc):
                with _suppress():
                    os.kill(pid, signal.SIGKILL)
        if self.proc is not None:
            with _suppress():
                self.proc.wait(5)
        self.proc = None
        with _suppress():
            self.pid_path.unlink()

    def kill(self) -> None:
        """kill -9: no orderly shutdown at all."""
        self.stop(signal.SIGKILL, timeout=5)

    def log(self, *, this_run: bool = False) -> str:
        """The peer's log; with ``this_run``, only what the current daemon wrote."""
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as f:
            if this_run:
                f.seek(self._log_offset)
            return f.read().decode(errors="replace")

    def api(self, method: str, path: str, body: bytes | None = None, timeout: float = 30) -> tuple[int, Any]:
        """One REST call; returns (status, decoded JSON, or a list for NDJSON streams, or None)."""
        req = urllib.request.Request(self.rest + path, data=body, method=method)
        conf = self.service["api"]["restapi"]
        creds = conf.get("basic_auth_credentials") or {}
        if creds:  # the first user will do
            user, password = next(iter(creds.items()))
            req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
        # a local network's certificate is its own (self-signed): encrypted, not verified
        tls = None
        if req.type == "https":
            tls = ssl.create_default_context()
            tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
        streamed = False
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=tls) as resp:
                raw = resp.read()
                status = resp.status
                streamed = "X-Stream-Error" in resp.headers.get("Trailer", "")
        except urllib.error.HTTPError as err:
            raw = err.read()
            status = err.code
        text = raw.decode()
        if not text.strip():
            return status, [] if streamed else None
        if streamed:
            return status, [json.loads(line) for line in text.splitlines() if line.strip()]
        try:
            return status, json.loads(text)
        except json.JSONDecodeError:
            return status, [json.loads(line) for line in text.splitlines() if line.strip()]

    def wait_ready(self, timeout: float = 60) -> None:
        """Until the REST API answers and the log says READY; fails early if the process died."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"peer{self.index} exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                status, _ = self.api("GET", "/id", timeout=5)
                if status == 200 and "IPFS Cluster is READY" in self.log(this_run=True):
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"peer{self.index} not ready after {timeout:.0f}s:\n{self.log()[-4000:]}")


def _alive(pid: int, proc: subprocess.Popen[bytes] | None) -> bool:
    if proc is not None and proc.pid == pid:
        return proc.poll() is None
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _suppress() -> contextlib.suppress:
    return contextlib.suppress(OSError, subprocess.SubprocessError)


def _loopback(folder: Path, fast: bool) -> None:
    """Bind every listener to 127.0.0.1 (a local network never listens beyond this machine)."""
    path = folder / "service.json"
    svc = json.loads(path.read_text())
    listen = svc["cluster"]["listen_multiaddress"]
    listen = [listen] if isinstance(listen, str) else listen
    svc["cluster"]["listen_multiaddress"] = next(a for a in listen if "/tcp/" in a).replace("0.0.0.0", "127.0.0.1")
    raft = svc["consensus"]["raft"]
    raft["listen_multiaddress"] = raft["listen_multiaddress"].replace("0.0.0.0", "127.0.0.1")
    if fast:
        for section, values in FAST.items():
            if section == "cluster":
                svc["cluster"].update(values)
                continue
            for group in _GROUPS:
                if section in svc.get(group, {}):
                    svc[group][section].update(values)
    path.write_text(json.dumps(svc, indent=2))
    ipfs_cfg = folder / "ipfs" / "config"
    if ipfs_cfg.exists():
        cfg = json.loads(ipfs_cfg.read_text())
        cfg["Addresses"]["Swarm"] = [a.replace("0.0.0.0", "127.0.0.1") for a in cfg["Addresses"]["Swarm"]]
        ipfs_cfg.write_text(json.dumps(cfg, indent=2))


def _listen_ports(folder: Path) -> set[int]:
    """The TCP ports a peer made by ``init`` will listen on (cluster, Raft, APIs, metrics, embedded node)."""
    import re

    svc = json.loads((folder / "service.json").read_text())
    api = svc.get("api", {})
    listens: list[Any] = [
        svc["cluster"].get("listen_multiaddress"),
        svc.get("consensus", {}).get("raft", {}).get("listen_multiaddress"),
        api.get("restapi", {}).get("http_listen_multiaddress"),
        api.get("pinsvcapi", {}).get("http_listen_multiaddress"),
        api.get("ipfsproxy", {}).get("listen_multiaddress"),
    ]
    ipfs_cfg = folder / "ipfs" / "config"
    if ipfs_cfg.exists():
        listens.append(json.loads(ipfs_cfg.read_text()).get("Addresses", {}))
    return {int(m) for m in re.findall(r"/tcp/(\d+)", json.dumps(listens))} - {0}


def _claim_ports(folder: Path) -> bool:
    """Claim the peer's listen ports; False (nothing claimed) if one is claimed already.

    ``--randomports`` checks that a port is free *now*; a peer made earlier but not started yet (two clusters
    set up at once, as the composite-cluster test does), or a port this process took with ``free_port`` for
    something it has not started yet (a metrics endpoint), is not bound yet, so an init could pick it again.
    One record (``claim_ports``) holds both."""
    from pincluster.cli.service import claim_ports  # the CLI's imports only when peers are made

    return claim_ports(_listen_ports(folder))


def init_peers(
    root: Path,
    n: int,
    *,
    secret: str | None = None,
    fast: bool = False,
    ipfs: str = "embedded",
    extra_env: dict[str, str] | None = None,
    service_changes: dict[str, Any] | Callable[[int], dict[str, Any]] | None = None,
) -> list[Peer]:
    """``ipfs-cluster-service init`` for ``n`` peers under ``root`` with one shared secret.

    ``service_changes`` maps dotted ``service.json`` keys to values (``"cluster.disable_repinning": False``);
    a callable gets the peer's index and returns that peer's changes. With ``ipfs="external"`` it is how each
    peer learns its own IPFS daemon, e.g. ``lambda i: {"ipfs_connector.ipfshttp.node_multiaddress":
    kubos[i].api_multiaddr}``; those daemons should share a ``swarm.key`` derived from ``secret`` (see
    ``docs/kubo.md``)."""
    secret = secret or secrets.token_hex(32)
    peers = []
    for i in range(n):
        folder = root / f"peer{i}"
        env = clean_env({"CLUSTER_SECRET": secret, "CLUSTER_PEERNAME": f"peer{i}", **(extra_env or {})})
        for _attempt in range(8):
            res = subprocess.run(
                [SERVICE, "-c", str(folder), "init", "--randomports", "--ipfs", ipfs],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            if res.returncode != 0:
                raise RuntimeError(f"init of peer{i} failed: {res.stderr}")
            if _claim_ports(folder):
                break
            shutil.rmtree(folder)  # a port another peer of ours holds: start this one afresh
        _loopback(folder, fast)
        changes = service_changes(i) if callable(service_changes) else service_changes
        if changes:
            svc = json.loads((folder / "service.json").read_text())
            for key, value in changes.items():
                section, _, name = key.rpartition(".")
                target = svc
                for part in section.split("."):
                    target = target[part]
                target[name] = value
            (folder / "service.json").write_text(json.dumps(svc, indent=2))
        peers.append(Peer(i, folder))
    return peers


def existing_peers(root: Path) -> list[Peer]:
    return [Peer(int(d.name[4:]), d) for d in sorted(root.glob("peer*")) if (d / "service.json").exists()]


def start_network(peers: list[Peer], *, bootstrap: bool = True, timeout: float = 90, loglevel: str = "info") -> None:
    """Start every peer; new peers join peer 0 with --bootstrap; wait until all see each other."""
    peers[0].start(loglevel=loglevel)
    if bootstrap:
        peers[0].wait_ready(timeout)
    for p in peers[1:]:
        if bootstrap:
            p.start("--bootstrap", peers[0].cluster_addr, loglevel=loglevel)
        else:
            p.start(loglevel=loglevel)
    for p in peers:
        p.wait_ready(timeout)
    want = {p.identity for p in peers}
    deadline = time.monotonic() + timeout

    def sees_all(p: Peer) -> bool:
        """Members and metrics: a peer can place pins only once it has every peer's metrics."""
        if p.proc is not None and p.proc.poll() is not None:
            raise RuntimeError(f"peer{p.index} exited with {p.proc.returncode}:\n{p.log()[-4000:]}")
        try:
            ids = set((p.api("GET", "/id")[1] or {}).get("cluster_peers") or ())
            metrics = p.api("GET", "/monitor/metrics/freespace")[1] or []
        except OSError:  # not answering this moment: try again until the deadline, then show the logs
            return False
        return ids == want and {m["peer"] for m in metrics} == want

    while time.monotonic() < deadline:
        if all(sees_all(p) for p in peers):
            return
        time.sleep(0.3)
    raise RuntimeError("the peers did not all see each other:\n" + "\n".join(p.log()[-2000:] for p in peers))


def stop_network(peers: list[Peer]) -> None:
    for p in reversed(peers):
        p.stop()


def ctl(peer: Peer, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([CTL, "--host", peer.rest_multiaddr, *args], capture_output=True, text=True, timeout=120,
                         env=clean_env())
    if check and res.returncode != 0:
        raise RuntimeError(f"ipfs-cluster-ctl {' '.join(args)} failed ({res.returncode}): {res.stdout}{res.stderr}")
    return res


def _up(root: Path, n: int, ci: bool) -> int:
    root.mkdir(parents=True, exist_ok=True)
    peers = existing_peers(root)
    for p in peers:
        p.stop()
    fresh = len(peers) != n
    if fresh:
        for p in peers:
            subprocess.run(["rm", "-rf", str(p.folder)], check=False)
        print(f"Creating a private network of {n} peers in {root} …", flush=True)
        peers = init_peers(root, n)
    else:
        print(f"Restarting the private network of {n} peers in {root} …", flush=True)
    start_network(peers, bootstrap=fresh)
    for p in peers:
        print(f"  peer{p.index}: {p.identity}  REST {p.rest_multiaddr}  log {p.log_path}")
    sample = root / "sample.txt"
    sample.write_text(f"Hello from pincluster! {time.time()}\n")
    print("\nAdding a sample file with replication factor 2:")
    print("$ ipfs-cluster-ctl add --replication-min 2 --replication-max 2 --wait", sample.name, flush=True)
    out = ctl(peers[0], "add", "--rmin", "2", "--rmax", "2", "--wait", "--wait-timeout", "60s", str(sample))
    print(out.stdout, end="")
    cid = out.stdout.split()[1]
    print(f"\n$ ipfs-cluster-ctl status {cid}")
    st = ctl(peers[1], "status", cid)
    print(st.stdout, end="")
    pinned = st.stdout.count("PINNED")
    print(f"\n{pinned} peers hold the file; the third tracks it as REMOTE.")
    if ci:
        stop_network(peers)
        print("CI mode: the network was stopped.")
        return 0 if pinned == 2 else 1
    ctl_cmd = f"{CTL} --host {peers[0].rest_multiaddr}"
    print(
        "\nThe network keeps running. Try:\n"
        f"  {ctl_cmd} peers ls\n"
        f"  {ctl_cmd} add -r 3 README.md\n"
        f"  {ctl_cmd} status\n"
        "Stop it with:  bash scripts/quickstart stop"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pincluster.localnet", description=__doc__)
    ap.add_argument("command", choices=["up", "down", "status"], nargs="?", default="up")
    ap.add_argument("--dir", default=".quickstart", help="where the peers' folders live (default .quickstart)")
    ap.add_argument("-n", "--peers", type=int, default=3)
    ap.add_argument("--ci", action="store_true", help="stop the network after showing the status (CI)")
    args = ap.parse_args(argv)
    root = Path(args.dir).resolve()
    if args.command == "down":
        for p in existing_peers(root):
            p.stop()
        print(f"stopped the network in {root}")
        return 0
    if args.command == "status":
        peers = existing_peers(root)
        if not peers or peers[0].running_pid() is None:
            print(f"no network is running in {root}")
            return 1
        print(ctl(peers[0], "status", check=False).stdout, end="")
        return 0
    return _up(root, args.peers, args.ci)


if __name__ == "__main__":
    raise SystemExit(main())
