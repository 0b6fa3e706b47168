"""A real kubo daemon for tests: built once by ``tests/kubo.sh``, started on free ports in a temp IPFS_PATH.

Use from a test module::

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # the tests/ folder
    from kubo import kubo_daemon  # noqa: F401  (a module-scoped fixture yielding a KuboDaemon)

or start one yourself with ``KuboDaemon(tmpdir).start()`` / ``.stop()``. kubo is initialised with
``ipfs init --profile test`` (every listener on 127.0.0.1 port 0, no bootstrap, no mDNS), so the RPC port is
read back from ``$IPFS_PATH/api`` and parallel test runs never collide. ``PINCLUSTER_NO_KUBO=1`` skips tests
that need kubo; ``PINCLUSTER_KUBO_BIN`` points at an existing binary instead of building one. The same way,
``go_cluster_binary`` gives IPFS Cluster's own Go programs, which some tests run beside ours.

For a cluster peer, ``KuboDaemon.for_cluster(root, secret)`` makes the kubo of a **private** network: its
``swarm.key`` is derived from the cluster secret exactly as ``ipfs-cluster-service init`` derives the embedded
nodes' key (``pincluster.ipfs.swarmkey.derive_swarm_key``), ``LIBP2P_FORCE_PNET=1`` makes kubo refuse to run
without it, the bootstrap list is empty and the swarm listens on 127.0.0.1 port 0. ``start_all`` starts
several daemons at once (kubo takes a few seconds to come up; in parallel that cost is paid once).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pincluster.ipfs.swarmkey import FORCE_PNET_ENV, derive_swarm_key, write_swarm_key

TESTS_DIR = Path(__file__).resolve().parent
_BUILD_TIMEOUT = 1800.0
_START_TIMEOUT = 60.0


def _switched_off(env: str) -> bool:
    return os.environ.get(env, "") not in ("", "0")


def kubo_disabled() -> bool:
    return _switched_off("PINCLUSTER_NO_KUBO")


def go_binary(script: str, bin_env: str, off_env: str, what: str, *args: str) -> Path:
    """The binary that ``tests/<script> args…`` builds once and caches (``$<bin_env>`` when set); skips the
    test when ``$<off_env>`` is set, fails it when the build fails."""
    if _switched_off(off_env):
        pytest.skip(f"{off_env}=1: tests against {what} are disabled")
    env_bin = os.environ.get(bin_env)
    if env_bin:
        return Path(env_bin)
    try:
        out = subprocess.run(["bash", str(TESTS_DIR / script), *args], check=True, capture_output=True, text=True,
                             timeout=_BUILD_TIMEOUT)
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"building {what} with tests/{script} failed (exit {exc.returncode}):\n{exc.stderr[-3000:]}")
    path = Path(out.stdout.strip().splitlines()[-1])
    if not path.is_file():
        pytest.fail(f"tests/{script} printed {path}, which is not a file")
    return path


def kubo_binary() -> Path:
    """Path of the pinned kubo binary, building it on first use (skips the test if kubo is disabled)."""
    return go_binary("kubo.sh", "PINCLUSTER_KUBO_BIN", "PINCLUSTER_NO_KUBO", "a real kubo daemon")


def go_cluster_binary(name: str) -> Path:
    """IPFS Cluster's own ``ipfs-cluster-ctl`` or ``ipfs-cluster-service`` 1.1.6 (Go), built on first use by
    ``tests/gocluster.sh``. ``PINCLUSTER_NO_GO_CLUSTER=1`` skips the tests that run them beside ours;
    ``PINCLUSTER_GO_CTL_BIN`` / ``PINCLUSTER_GO_SERVICE_BIN`` point at existing binaries."""
    env = "PINCLUSTER_GO_CTL_BIN" if name == "ipfs-cluster-ctl" else "PINCLUSTER_GO_SERVICE_BIN"
    return go_binary("gocluster.sh", env, "PINCLUSTER_NO_GO_CLUSTER", f"IPFS Cluster's Go {name}", name)


def kubo_cli(repo: Path) -> Callable[..., bytes]:
    """The kubo CLI on its own repo at ``repo`` (``init --profile test -e`` on first use), for commands that
    need no daemon (``add -n``, ``add --offline``, ``dag export --offline``); returns ``ipfs(*args, cwd=None)``,
    which gives the command's stdout and fails the test on a non-zero exit."""
    binary = str(kubo_binary())
    env = {**os.environ, "IPFS_PATH": str(repo)}

    def ipfs(*args: str, cwd: Path | None = None) -> bytes:
        return subprocess.run([binary, *args], env=env, cwd=cwd, check=True, capture_output=True,
                              timeout=60).stdout

    if not repo.exists():
        ipfs("init", "--profile", "test", "-e")
    return ipfs


class KuboDaemon:
    """One kubo daemon in its own IPFS_PATH; ``api_multiaddr`` / ``api_url`` once started."""

    def __init__(
        self,
        root: Path,
        *,
        binary: Path | None = None,
        offline: bool = False,
        swarm_key: bytes | None = None,
    ) -> None:
        self.root = root
        self.ipfs_path = root / "ipfs"
        self.binary = binary or kubo_binary()
        self.offline = offline
        self.swarm_key = swarm_key  # 32 bytes: a private network (swarm.key + LIBP2P_FORCE_PNET=1)
        self.proc: subprocess.Popen[bytes] | None = None
        self._terminated = False
        self.api_multiaddr = ""
        self.api_url = ""
        self.peer_id = ""
        #: ``Authorization`` header of ``rpc`` calls (a daemon with ``API.Authorizations`` refuses them without)
        self.authorization = ""
        self._log = root / "daemon.log"

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({"IPFS_PATH": str(self.ipfs_path), "IPFS_TELEMETRY": "off", "GOLOG_LOG_LEVEL": "error"})
        if self.swarm_key is not None:
            env[FORCE_PNET_ENV] = "1"  # kubo refuses to start rather than join the public network by mistake
        else:
            env.pop(FORCE_PNET_ENV, None)
        return env

    @classmethod
    def for_cluster(cls, root: Path, cluster_secret: bytes | str, *, binary: Path | None = None) -> KuboDaemon:
        """The kubo of one cluster peer: a private network keyed like the cluster's embedded nodes."""
        secret = bytes.fromhex(cluster_secret) if isinstance(cluster_secret, str) else cluster_secret
        return cls(root, binary=binary, swarm_key=derive_swarm_key(secret))

    def _init_repo(self) -> None:
        self.ipfs("init", "--profile", "test")  # listeners on 127.0.0.1 port 0, no bootstrap, no mDNS
        if self.swarm_key is None:
            return
        write_swarm_key(self.ipfs_path / "swarm.key", self.swarm_key)
        # Routing.Type=auto would query public HTTP routers, which kubo disables (with an error line) in a
        # private network; the TCP listener shared with websockets is not supported under a PSK either.
        cfg_path = self.ipfs_path / "config"
        cfg = json.loads(cfg_path.read_text())
        cfg["Bootstrap"] = []
        cfg["Routing"]["Type"] = "dht"
        cfg["Addresses"]["Swarm"] = ["/ip4/127.0.0.1/tcp/0"]
        cfg["Swarm"]["Transports"]["Network"]["Websocket"] = False
        cfg_path.write_text(json.dumps(cfg, indent=2))

    def ipfs(self, *args: str, input: bytes | None = None, timeout: float = 60.0) -> str:
        """Run the ``ipfs`` CLI against this repo (talks to the daemon when it runs)."""
        res = subprocess.run([str(self.binary), *args], env=self.env, input=input, capture_output=True, timeout=timeout)
        if res.returncode != 0:
            raise RuntimeError(f"ipfs {' '.join(args)} failed: {res.stderr.decode(errors='replace')}")
        return res.stdout.decode()

    def start(self) -> KuboDaemon:
        self.launch()
        return self.wait_ready()

    def launch(self) -> None:
        """Start the daemon process without waiting for it (``wait_ready`` waits)."""
        self.root.mkdir(parents=True, exist_ok=True)
        if not (self.ipfs_path / "config").exists():
            self._init_repo()
        api_file = self.ipfs_path / "api"
        api_file.unlink(missing_ok=True)
        args = [str(self.binary), "daemon"]
        if self.offline:
            args.append("--offline")
        log = open(self._log, "ab")  # noqa: SIM115 - owned by the child process
        self.proc = subprocess.Popen(args, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def wait_ready(self) -> KuboDaemon:
        """Until the RPC API answers ``id``; reads the API address back from ``$IPFS_PATH/api``."""
        assert self.proc is not None, "launch() first"
        api_file = self.ipfs_path / "api"
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kubo daemon exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            if api_file.exists():
                self.api_multiaddr = api_file.read_text().strip()
                parts = self.api_multiaddr.split("/")
                self.api_url = f"http://{parts[2]}:{parts[4]}"
                try:
                    ident = self.rpc("id")
                except (OSError, urllib.error.URLError):
                    time.sleep(0.1)
                    continue
                self.peer_id = str(ident["ID"])
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"kubo daemon did not become ready in {_START_TIMEOUT}s:\n{self.log()[-3000:]}")

    def rpc(self, path: str, timeout: float = 10.0) -> dict[str, Any]:
        """A synchronous RPC call (for setup and cross-checks, independent of the code under test)."""
        req = urllib.request.Request(f"{self.api_url}/api/v0/{path}", method="POST", data=b"",
                                     headers={"Authorization": self.authorization} if self.authorization else {})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = resp.read().decode()
        return json.loads(body.splitlines()[0]) if body.strip() else {}

    def log(self) -> str:
        try:
            return self._log.read_text(errors="replace")
        except OSError:
            return ""

    def terminate(self) -> None:
        """Ask the daemon to shut down (SIGTERM once: kubo takes a second signal as "force-quit now")."""
        if self.proc is not None and self.proc.poll() is None and not self._terminated:
            self.proc.send_signal(signal.SIGTERM)
            self._terminated = True

    def stop(self) -> None:
        """Shut the daemon down and wait for it (SIGKILL after 15 s)."""
        self.terminate()
        proc, self.proc = self.proc, None
        self._terminated = False
        if proc is None or proc.poll() is not None:
            return
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def swarm_addresses(self) -> list[str]:
        """The swarm addresses kubo announces (``id``'s ``Addresses``), each ending in ``/p2p/<id>``."""
        return [str(a) for a in self.rpc("id").get("Addresses") or []]

    def swarm_peers(self) -> set[str]:
        """Peer IDs of the nodes this kubo is connected to."""
        return {str(p["Peer"]) for p in self.rpc("swarm/peers").get("Peers") or []}

    def __enter__(self) -> KuboDaemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_all(daemons: list[KuboDaemon]) -> list[KuboDaemon]:
    """Start several daemons in parallel; on any failure stop them all and re-raise."""
    try:
        for d in daemons:
            d.launch()
        for d in daemons:
            d.wait_ready()
    except BaseException:
        stop_all(daemons)
        raise
    return daemons


def stop_all(daemons: list[KuboDaemon]) -> None:
    """Stop every daemon (SIGTERM, then SIGKILL after 15 s); never raises for one that already exited."""
    for d in daemons:
        d.terminate()  # all at once, then wait for each
    for d in daemons:
        d.stop()


@pytest.fixture(scope="module")
def kubo_daemon() -> Iterator[KuboDaemon]:
    """A running kubo daemon shared by one test module (online, with no peers: swarm on 127.0.0.1 only)."""
    root = Path(tempfile.mkdtemp(prefix="pincluster-kubo-"))
    daemon = KuboDaemon(root)
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.stop()
        shutil.rmtree(root, ignore_errors=True)
