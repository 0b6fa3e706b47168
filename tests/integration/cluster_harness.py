"""The integration tests' N-peer clusters: ``pincluster.localnet`` with test timings (1 s pings, 2 s TTLs)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from pincluster.localnet import Peer, clean_env, ctl, existing_peers, start_network, stop_network
from pincluster.localnet import init_peers as _init_peers

__all__ = [
    "Peer",
    "clean_env",
    "ctl",
    "existing_peers",
    "init_peers",
    "running_cluster",
    "start_cluster",
    "stop_all",
    "wait_for",
]

T = TypeVar("T")


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
