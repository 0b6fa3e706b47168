"""Metrics and the health screen on a real 3-peer cluster (daemons in subprocesses, embedded IPFS nodes).

Every peer serves Prometheus metrics on its own free port; peer 0 runs with ``--stats`` and a 1 s
``reporting_interval``. The test pins content, scrapes ``/metrics`` over HTTP and reads the health block
from peer 0's log (a file, so not a terminal: the plain-text block).
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.integration.cluster_harness import Peer, ctl, init_peers, stop_all, wait_for

from pincluster.cli.service import free_port
from pincluster.localnet import SERVICE, clean_env

pytestmark = pytest.mark.timeout(180)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        assert resp.status == 200
        text = resp.read().decode()
    out: Samples = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(s: Samples, metric: str, /, **labels: str) -> float:
    return s[(metric, tuple(sorted(labels.items())))]


def total(s: Samples, metric: str, **match: str) -> float:
    return sum(v for (n, labels), v in s.items() if n == metric and all((k, w) in labels for k, w in match.items()))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[Peer], list[int]]]:
    root = tmp_path_factory.mktemp("observe3")
    ports = [free_port() for _ in range(3)]

    def changes(i: int) -> dict[str, Any]:
        return {
            "observations.metrics.enable_stats": True,
            "observations.metrics.prometheus_endpoint": f"/ip4/127.0.0.1/tcp/{ports[i]}",
            "observations.metrics.reporting_interval": "1s",
        }

    peers = init_peers(root, 3, service_changes=changes)
    try:
        peers[0].start("--stats", loglevel="info")
        peers[0].wait_ready(90)
        for p in peers[1:]:
            p.start("--bootstrap", peers[0].cluster_addr, loglevel="info")
        for p in peers:
            p.wait_ready(90)
        want = {p.identity for p in peers}
        wait_for(lambda: all(set(p.api("GET", "/id")[1]["cluster_peers"]) == want for p in peers),
                 what="every peer to see the others")  # fmt: skip
        yield peers, ports
    finally:
        stop_all(peers)


def test_metrics_after_pinning(cluster: tuple[list[Peer], list[int]], tmp_path: Path) -> None:
    peers, ports = cluster
    cids = []
    for i in range(3):
        f = tmp_path / f"f{i}.txt"
        f.write_text(f"observe me {i} {time.time()}\n")
        out = ctl(peers[0], "add", "--quieter", str(f)).stdout.strip()
        cids.append(out.splitlines()[-1])

    def all_pinned() -> bool:
        for p in peers:
            for c in cids:
                st, body = p.api("GET", f"/pins/{c}")
                if st != 200 or {x["status"] for x in body["peer_map"].values()} != {"pinned"}:
                    return False
        return True

    wait_for(all_pinned, what="the pins to be pinned everywhere")

    def settled(port: int) -> Samples | None:
        s = scrape(port)
        return s if value(s, "pincluster_pins", status="pinned") == 3 else None

    for i, port in enumerate(ports):
        s = wait_for(lambda port=port: settled(port), what=f"peer{i} to report 3 pinned")
        assert value(s, "pincluster_pinset_size") == 3
        assert value(s, "ipfscluster_pins") == 3
        assert value(s, "pincluster_pins_exact") == 1
        for status in ("pin_queued", "pinning", "pin_error"):
            assert value(s, "pincluster_pins", status=status) == 0
        assert value(s, "pincluster_pins", status="remote") == 0  # replication everywhere (default -1)
        assert value(s, "pincluster_peers") == 3
        assert value(s, "pincluster_ipfs_up") == 1
        assert value(s, "pincluster_raft_has_leader") == 1
        assert total(s, "pincluster_rpc_calls_total") > 0
        assert total(s, "pincluster_rpc_calls_total", target="remote") > 0
        assert total(s, "pincluster_rpc_served_total") > 0
        assert total(s, "pincluster_ipfs_request_duration_seconds_count") > 0
        assert value(s, "pincluster_ipfs_request_duration_seconds_count", endpoint="pin/ls") > 0
        assert value(s, "pincluster_ipfs_request_duration_seconds_count", endpoint="id") > 0
        assert value(s, "pincluster_informer_value", name="freespace") > 0
        assert value(s, "process_resident_memory_bytes") > 0
    leaders = [value(scrape(p), "pincluster_raft_is_leader") for p in ports]
    assert sum(leaders) == 1
    pin_adds = [value(scrape(p), "ipfscluster_pins_pin_add") for p in ports]
    assert sum(pin_adds) > 0  # the peers whose nodes lacked the content pinned it with pin/add
    alive = wait_for(lambda: value(scrape(ports[1]), "pincluster_peers_alive") == 3, what="3 peers alive")
    assert alive

    with urllib.request.urlopen(f"http://127.0.0.1:{ports[2]}/health", timeout=10) as resp:
        health = json.loads(resp.read())
    assert health["peer_id"] == peers[2].identity and health["pins"]["total"] == 3


def test_stats_flag_prints_the_health_block(cluster: tuple[list[Peer], list[int]]) -> None:
    peers, _ = cluster

    def block() -> str | None:
        log = peers[0].log(this_run=True)
        start = log.rfind("== peer health ==")
        if start < 0:
            return None
        text = log[start:]
        return text if "last error:" in text else None

    text = wait_for(block, what="the health block in peer0's log")
    lines = text[: text.index("last error:")].splitlines()
    assert len(lines) + 1 <= 15
    assert f"peer0 {peers[0].identity}, version 1.1.6" in text
    assert "3/3 alive" in text or "/3 alive" in text
    assert "in pinset" in text and "ipfs:       reachable" in text and "calls/s" in text


def test_busy_metrics_port_stops_the_daemon_with_the_key(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        (peer,) = init_peers(tmp_path, 1, service_changes={
            "observations.metrics.prometheus_endpoint": f"/ip4/127.0.0.1/tcp/{port}"})  # fmt: skip
        res = subprocess.run(
            [SERVICE, "-c", str(peer.folder), "daemon", "--stats"], env=clean_env(), capture_output=True,
            text=True, timeout=90,
        )  # fmt: skip
    assert res.returncode == 1, res.stderr[-2000:]
    assert "observations.metrics.prometheus_endpoint" in res.stderr
    assert f"/ip4/127.0.0.1/tcp/{port}" in res.stderr
