"""The integration tests' N-peer clusters: ``pincluster.localnet`` with test timings (1 s pings, 2 s TTLs)."""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from pincluster.cli.service import free_port
from pincluster.localnet import Peer, clean_env, ctl, existing_peers, start_network, stop_network
from pincluster.localnet import init_peers as _init_peers

__all__ = [
    "Peer",
    "clean_env",
    "ctl",
    "existing_peers",
    "init_peers",
    "isolate_go_peer",
    "running_cluster",
    "start_cluster",
    "stop_all",
    "wait_for",
]

T = TypeVar("T")


def isolate_go_peer(service_json: Path) -> dict[str, Any]:
    """Keep a Go peer made by Go's ``init --randomports`` away from the other tests running at the same time
    (the suite's parallel workers); returns the config written.

    - Its TCP and UDP listeners move to ports of this worker's range (``free_port``, see tests/conftest.py):
      Go binds port 0 and closes it, a kernel ephemeral port that another process may take before the daemon
      binds it.
    - mDNS is off: Go's peers look for others on the network by it, and would connect to another test's peers
      that share their secret."""
    cfg = json.loads(service_json.read_text())
    cfg["cluster"]["mdns_interval"] = "0s"
    moved: dict[str, str] = {}

    def new_port(m: re.Match[str]) -> str:
        proto, port = m.group(1), m.group(2)
        return f"/{proto}/" + moved.setdefault(f"{proto}/{port}", str(free_port(proto)))

    def walk(node: Any, listening: bool) -> Any:
        if isinstance(node, dict):
            return {k: walk(v, listening or "listen" in k) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, listening) for v in node]
        if listening and isinstance(node, str):
            return re.sub(r"/(tcp|udp)/([1-9]\d*)", new_port, node)
        return node

    cfg = walk(cfg, False)
    service_json.write_text(json.dumps(cfg, indent=2))
    return cfg  # type: ignore[no-any-return]


def init_peers(root: Path, n: int, **kwargs: Any) -> list[Peer]:
    kwargs.setdefault("fast", True)
    return _init_peers(root, n, **kwargs)


def start_cluster(peers: list[Peer], timeout: float = 90) -> None:
    start_network(peers, timeout=timeout, loglevel="info,pintracker:debug")


def stop_all(peers: list[Peer]) -> None:
    stop_network(peers)


@contextlib.contextmanager
def running_cluster(root: Path, n: int = 3, *, timeout: float = 90, **init_kwargs: Any) -> Iterator[list[Peer]]:
    """``n`` peers initialised under ``root`` and started; stopped on exit (for module-scoped fixtures)."""
    peers = init_peers(root, n, **init_kwargs)
    try:
        start_cluster(peers, timeout)
        yield peers
    finally:
        stop_all(peers)


def wait_for(
    pred: Callable[[], T],
    what: str = "condition",
    timeout: float = 45,
    interval: float = 0.3,
    done: Callable[[T], bool] = bool,
) -> T:
    """Poll ``pred`` until ``done(value)`` (truthy by default); its last value, or AssertionError naming
    ``what`` and the last value seen."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = pred()
        if done(last):
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")
