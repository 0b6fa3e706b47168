"""pincluster's embedded IPFS node (``pincluster-ipfs daemon``) as a subprocess, for tests that run it beside
a real kubo daemon (``tests/kubo.py``)."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pincluster.types.multiaddr import Multiaddr


class EmbeddedNode:
    """pincluster's embedded IPFS node as a subprocess on free 127.0.0.1 ports."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.repo = root / "repo"
        self.proc: subprocess.Popen[str] | None = None
        self.api_multiaddr = ""
        self.api_url = ""
        self.peer_id = ""

    def _cmd(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "pincluster.ipfs.cli", "--repo", str(self.repo), *args]

    def start(self, configure: Callable[[dict[str, Any]], None] | None = None) -> EmbeddedNode:
        """Init the repo, let ``configure`` change its config JSON, start the daemon."""
        subprocess.run(
            self._cmd("init", "--api-addr", "/ip4/127.0.0.1/tcp/0", "--swarm-addr", "/ip4/127.0.0.1/tcp/0"),
            check=True,
            capture_output=True,
            timeout=60,
        )
        if configure is not None:
            cfg_path = self.repo / "config"
            cfg = json.loads(cfg_path.read_text())
            configure(cfg)
            cfg_path.write_text(json.dumps(cfg, indent=2))
        # the daemon's output goes to a file: a pipe nobody reads after the start would fill and stall it
        self.root.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("w") as out:
            self.proc = subprocess.Popen(self._cmd("daemon"), stdout=out, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.proc.poll() is None:
            text = self.log_text()
            if m := re.search(r"^RPC API server listening on (\S+)", text, re.M):
                self.api_multiaddr = m.group(1)
                host, port = Multiaddr(self.api_multiaddr).tcp_host_port()
                self.api_url = f"http://{host}:{port}"
            if m := re.search(r"^peer identity: (\S+)", text, re.M):
                self.peer_id = m.group(1)
            if re.search(r"^Daemon is ready", text, re.M):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("embedded IPFS node did not start:\n" + self.log_text()[-3000:])

    @property
    def log_path(self) -> Path:
        return self.root / "daemon.log"

    def log_text(self) -> str:
        """What the daemon printed so far (its log lines included)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextlib.contextmanager
def beside_kubo(root: Path, api: dict[str, Any], authorization: str = "") -> Iterator[tuple[Any, EmbeddedNode]]:
    """A kubo daemon (offline) and an embedded node, both with the same ``API`` config section (``API.<key>``
    set in each); ``authorization`` is the header kubo's readiness check sends. Yields ``(kubo, ours)``."""
    from kubo import KuboDaemon, kubo_binary

    kubo = KuboDaemon(root / "kubo", binary=kubo_binary(), offline=True)
    kubo.root.mkdir(parents=True, exist_ok=True)
    kubo.ipfs("init", "--profile", "test")
    for key, value in api.items():
        kubo.ipfs("config", "--json", f"API.{key}", json.dumps(value))
    kubo.authorization = authorization
    ours = EmbeddedNode(root / "ours")
    try:
        kubo.start()
        ours.start(lambda cfg: cfg.setdefault("API", {}).update(api))
        yield kubo, ours
    finally:
        ours.stop()
        kubo.stop()
