"""The integration tests' N-peer clusters: ``pincluster.localnet`` with test timings (1 s pings, 2 s TTLs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pincluster.localnet import Peer, clean_env, ctl, existing_peers, start_network, stop_network
from pincluster.localnet import init_peers as _init_peers

__all__ = ["Peer", "clean_env", "ctl", "existing_peers", "init_peers", "start_cluster", "stop_all"]


def init_peers(root: Path, n: int, **kwargs: Any) -> list[Peer]:
    kwargs.setdefault("fast", True)
    return _init_peers(root, n, **kwargs)


def start_cluster(peers: list[Peer], timeout: float = 90) -> None:
    start_network(peers, timeout=timeout, loglevel="info,pintracker:debug")


def stop_all(peers: list[Peer]) -> None:
    stop_network(peers)
