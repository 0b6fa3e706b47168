"""Prometheus metrics: the registry after simulated and real RPC/IPFS calls, the scrape-time collector with a
fake cluster, and the HTTP exporter (port 0, busy port)."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import msgspec
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from tests.unit.test_observe_fakes import FakeCluster

from pincluster.errors import ConfigError, NotFound
from pincluster.ipfsconn.ipfshttp import IPFSHTTPConnector
from pincluster.observe.hooks import endpoint_of
from pincluster.observe.metrics import Metrics, MetricsExporter
from pincluster.observe.stats import HealthSnapshot, PinsetWalker
from pincluster.p2p.host import Host
from pincluster.p2p.keys import PrivateKey
from pincluster.rpc import POLICIES, RPC, Policy, rpc_method
from pincluster.types.cid import CID, RAW, sha256_multihash
from pincluster.types.multiaddr import Multiaddr

pytestmark = pytest.mark.timeout(30)


def samples(text: bytes | str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, keyed by (sample name, sorted labels)."""
    if isinstance(text, bytes):
        text = text.decode()
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(s: dict[tuple[str, tuple[tuple[str, str], ...]], float], metric: str, /, **labels: str) -> float:
    return s[(metric, tuple(sorted(labels.items())))]


def test_endpoint_labels_are_bounded() -> None:
    assert endpoint_of("pin/add?arg=QmX&recursive=true&progress=true") == "pin/add"
    assert endpoint_of("/api/v0/version") == "version"
    assert endpoint_of("repo/stat?size-only=true") == "repo/stat"
    assert endpoint_of("") == "/"


def test_registry_after_simulated_calls() -> None:
    m = Metrics(process=False)
    m.rpc_call("Cluster.Pin", True, True, 0.003)
    m.rpc_call("Cluster.Pin", True, False, 0.2)
    m.rpc_call("PinTracker.Status", False, True, 0.0001)
    m.rpc_served("Cluster.ID", True)
    m.rpc_served("unknown", False)
    m.ipfs_call("pin/add?arg=QmA&progress=true", 0.5, "ok")
    m.ipfs_call("pin/add?arg=QmB&progress=true", 1.5, "error")
    m.ipfs_call("pin/ls?stream=true&type=recursive", 0.01, "cancelled")
    m.ipfs_call("block/put?cid-codec=raw", 0.002, "ok")
    s = samples(m.render())
    calls = "pincluster_rpc_calls_total"
    assert value(s, calls, method="Cluster.Pin", target="remote", outcome="ok") == 1
    assert value(s, calls, method="Cluster.Pin", target="remote", outcome="error") == 1
    assert value(s, calls, method="PinTracker.Status", target="local", outcome="ok") == 1
    lat = "pincluster_rpc_call_duration_seconds"
    assert value(s, f"{lat}_count", method="Cluster.Pin", target="remote") == 2
    assert value(s, f"{lat}_sum", method="Cluster.Pin", target="remote") == pytest.approx(0.203)
    assert value(s, f"{lat}_bucket", method="Cluster.Pin", target="remote", le="0.005") == 1
    assert value(s, "pincluster_rpc_served_total", method="Cluster.ID", outcome="ok") == 1
    assert value(s, "pincluster_rpc_served_total", method="unknown", outcome="error") == 1
    ipfs = "pincluster_ipfs_request_duration_seconds"
    assert value(s, f"{ipfs}_count", endpoint="pin/add") == 2
    assert value(s, f"{ipfs}_bucket", endpoint="pin/add", le="1.0") == 1
    assert value(s, f"{ipfs}_count", endpoint="pin/ls") == 1
    assert value(s, "pincluster_ipfs_request_errors_total", endpoint="pin/add") == 1
    assert ("pincluster_ipfs_request_errors_total", (("endpoint", "pin/ls"),)) not in s  # cancelled ≠ error
    assert (m.rpc_calls_total, m.rpc_errors_total) == (5, 2)
    assert (m.ipfs_requests_total, m.ipfs_errors_total) == (4, 1)
    assert m.ipfs_by_endpoint["pin/add"] == [2, 1]


def test_registries_are_per_peer_and_include_process_metrics() -> None:
    a, b = Metrics(), Metrics()
    a.rpc_call("Cluster.ID", False, True, 0.001)
    sa, sb = samples(a.render()), samples(b.render())
    assert value(sa, "pincluster_rpc_calls_total", method="Cluster.ID", target="local", outcome="ok") == 1
    assert not any(k[0] == "pincluster_rpc_calls_total" for k in sb)
    assert any(k[0].startswith("process_") for k in sa)  # CPU, memory, fds (Linux)
    assert any(k[0].startswith("python_gc_") for k in sa)


class Svc:
    @rpc_method("Echo")
    async def echo(self, x: int) -> int:
        return x

    @rpc_method("Fail")
    async def fail(self, x: int) -> int:
        raise NotFound(f"nothing at {x}")

    @rpc_method("Count")
    async def count(self, n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i


POL = {**POLICIES, "Obs.Echo": Policy.OPEN, "Obs.Fail": Policy.OPEN, "Obs.Count": Policy.OPEN}


async def test_rpc_hook_counts_calls_made_and_served() -> None:
    psk = os.urandom(32)
    ha = Host(PrivateKey.generate_ed25519(), psk, "/pincluster/rpc/1.0", [Multiaddr("/ip4/127.0.0.1/tcp/0")])
    hb = Host(PrivateKey.generate_ed25519(), psk, "/pincluster/rpc/1.0", [Multiaddr("/ip4/127.0.0.1/tcp/0")])
    await ha.start()
    await hb.start()
    try:
        a, b = RPC(ha, policies=POL), RPC(hb, policies=POL)
        a.register("Obs", Svc())
        b.register("Obs", Svc())
        ma, mb = Metrics(process=False), Metrics(process=False)
        a.observer, b.observer = ma, mb
        await ha.connect(hb.addrs[0])
        assert await a.call(hb.peer_id, "Obs.Echo", 7) == 7
        with pytest.raises(NotFound):
            await a.call(hb.peer_id, "Obs.Fail", 1)
        assert await a.call(None, "Obs.Echo", 1) == 1  # local fast path
        assert [x async for x in a.stream(hb.peer_id, "Obs.Count", 3)] == [0, 1, 2]
        async for _ in a.stream(hb.peer_id, "Obs.Count", 100):
            break  # stopping early is the consumer's choice, not an error
        with pytest.raises(Exception, match="no RPC method"):
            await a.call(hb.peer_id, "Obs.Nope", 1)
        await asyncio.sleep(0.05)  # the server counts after writing its answer
        sa, sb = samples(ma.render()), samples(mb.render())
        made = "pincluster_rpc_calls_total"
        assert value(sa, made, method="Obs.Echo", target="remote", outcome="ok") == 1
        assert value(sa, made, method="Obs.Fail", target="remote", outcome="error") == 1
        assert value(sa, made, method="Obs.Echo", target="local", outcome="ok") == 1
        assert value(sa, made, method="Obs.Count", target="remote", outcome="ok") == 2
        assert value(sa, made, method="Obs.Nope", target="remote", outcome="error") == 1
        assert value(sa, "pincluster_rpc_call_duration_seconds_count", method="Obs.Echo", target="remote") == 1
        served = "pincluster_rpc_served_total"
        assert value(sb, served, method="Obs.Echo", outcome="ok") == 1
        assert value(sb, served, method="Obs.Fail", outcome="error") == 1
        assert value(sb, served, method="unknown", outcome="error") == 1  # the caller's name is not a label
        assert value(sb, served, method="Obs.Count", outcome="ok") >= 1
        assert not any(k[0] == made for k in sb)  # b made no calls
    finally:
        await ha.close()
        await hb.close()


@pytest.fixture
async def fake_kubo() -> AsyncIterator[str]:
    async def ident(_: web.Request) -> web.Response:
        return web.json_response({"ID": "12D3KooWLR4KKA6xfW6ArNgnGP6RZbjwV7xYh3mznzQ6h8BFoPXr", "Addresses": []})

    async def repo_stat(_: web.Request) -> web.Response:
        return web.json_response({"RepoSize": 1000, "StorageMax": 5000})

    async def broken(_: web.Request) -> web.Response:
        return web.json_response({"Message": "boom", "Code": 0, "Type": "error"}, status=500)

    app = web.Application()
    app.router.add_post("/api/v0/id", ident)
    app.router.add_post("/api/v0/repo/stat", repo_stat)
    async def not_pinned(request: web.Request) -> web.Response:
        msg = f"path '{request.query['arg']}' is not pinned"
        return web.json_response({"Message": msg, "Code": 0, "Type": "error"}, status=500)

    app.router.add_post("/api/v0/pin/rm", broken)
    app.router.add_post("/api/v0/pin/ls", not_pinned)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"/ip4/127.0.0.1/tcp/{runner.addresses[0][1]}"
    await runner.cleanup()


async def test_ipfs_hook_times_each_endpoint(fake_kubo: str) -> None:
    m = Metrics(process=False)
    async with IPFSHTTPConnector(fake_kubo, ipfs_request_timeout=5) as c:
        c.observer = m
        await c.id()
        await c.id()
        stat = await c.repo_stat()
        assert stat.repo_size == 1000
        with pytest.raises(Exception, match="boom"):
            await c.unpin(CID.v1(RAW, sha256_multihash(b"x")))
        status = await c.pin_ls_cid(CID.v1(RAW, sha256_multihash(b"y")))
        assert not status.is_pinned(-1)
    s = samples(m.render())
    h = "pincluster_ipfs_request_duration_seconds"
    assert value(s, f"{h}_count", endpoint="id") == 2
    assert value(s, f"{h}_count", endpoint="repo/stat") == 1
    assert value(s, f"{h}_count", endpoint="pin/rm") == 1
    assert value(s, "pincluster_ipfs_request_errors_total", endpoint="pin/rm") == 1
    assert value(s, f"{h}_count", endpoint="pin/ls") == 1
    assert ("pincluster_ipfs_request_errors_total", (("endpoint", "pin/ls"),)) not in s  # a negative answer
    assert value(s, f"{h}_sum", endpoint="id") > 0


async def test_collector_exports_cluster_values_and_go_names() -> None:
    cluster = FakeCluster(total=10, remote=3, ops={"pin_queued": 2, "pinning": 1, "pin_error": 1,
                                                    "unpin_error": 1}, queue=2)  # fmt: skip
    m = Metrics(process=False)
    m.ipfs_call("pin/add?arg=x", 0.1, "ok")
    m.ipfs_call("pin/add?arg=y", 0.1, "error")
    exp = MetricsExporter(m, cluster, "/ip4/127.0.0.1/tcp/0")
    s = samples(await exp.scrape())
    assert value(s, "pincluster_pins", status="pinned") == 3  # 7 allocated here − 4 live pin operations
    assert value(s, "pincluster_pins", status="remote") == 3
    assert value(s, "pincluster_pins", status="pin_queued") == 2
    assert value(s, "pincluster_pins", status="pinning") == 1
    assert value(s, "pincluster_pins", status="pin_error") == 1
    assert value(s, "pincluster_pins", status="unpin_error") == 1
    assert value(s, "pincluster_pins_exact") == 1
    assert value(s, "pincluster_pinset_size") == 10
    assert value(s, "pincluster_pin_queue_length") == 2
    assert value(s, "pincluster_peers") == 3
    assert value(s, "pincluster_peers_alive") == 2  # self + one pinging peer
    assert value(s, "pincluster_raft_term") == 4
    assert value(s, "pincluster_raft_is_leader") == 1
    assert value(s, "pincluster_raft_leader", peer=str(cluster.peer_id)) == 1
    assert value(s, "pincluster_alerts") == 1
    assert value(s, "pincluster_ipfs_up") == 1
    assert value(s, "pincluster_ipfs_free_bytes") == 4000
    assert value(s, "pincluster_informer_value", name="freespace") == 4000
    assert ("pincluster_informer_value", (("name", "tag:group"),)) not in s  # text values are skipped
    # IPFS Cluster 1.1.6's names, exactly
    assert value(s, "ipfscluster_pins") == 10
    assert value(s, "ipfscluster_pins_pin_queued") == 2
    assert value(s, "ipfscluster_pins_pinning") == 1
    assert value(s, "ipfscluster_pins_pin_error") == 1
    assert value(s, "ipfscluster_pins_pin_add") == 2
    assert value(s, "ipfscluster_pins_pin_add_errors") == 1
    assert value(s, "ipfscluster_informer_disk") == 4000


async def test_large_pinset_is_estimated_not_walked() -> None:
    cluster = FakeCluster(total=50, remote=20, ops={"pinning": 5})
    exp = MetricsExporter(Metrics(process=False), cluster, "/ip4/127.0.0.1/tcp/0", walker=PinsetWalker(limit=10))
    s = samples(await exp.scrape())
    assert cluster.walks == 0
    assert value(s, "pincluster_pins", status="pinned") == 45  # upper bound: total − live pin operations
    assert ("pincluster_pins", (("status", "remote"),)) not in s
    assert value(s, "pincluster_pins_exact") == 0


async def test_walk_is_cached_while_the_pinset_size_is_unchanged() -> None:
    cluster = FakeCluster(total=5, remote=1)
    walker = PinsetWalker(limit=100, min_interval=60)
    exp = MetricsExporter(Metrics(process=False), cluster, "/ip4/127.0.0.1/tcp/0", walker=walker)
    await exp.scrape()
    await exp.scrape()
    assert cluster.walks == 1
    cluster.set_pins(total=6, remote=1)
    s = samples(await exp.scrape())
    assert cluster.walks == 2
    assert value(s, "pincluster_pins", status="pinned") == 5


async def test_exporter_serves_metrics_and_health_over_http() -> None:
    cluster = FakeCluster(total=4, remote=0)
    m = Metrics()
    exp = MetricsExporter(m, cluster, "/ip4/127.0.0.1/tcp/0")
    await exp.start()
    try:
        assert exp.url.startswith("http://127.0.0.1:")
        async with aiohttp.ClientSession() as http:
            async with http.get(exp.url + "/metrics") as r:
                assert r.status == 200
                assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
                s = samples(await r.text())
            async with http.get(exp.url + "/health") as r:
                assert r.status == 200
                snap = msgspec.json.decode(await r.read(), type=HealthSnapshot)
        assert value(s, "pincluster_pins", status="pinned") == 4
        assert any(k[0] == "process_cpu_seconds_total" for k in s)
        assert snap.pins.total == 4 and snap.peer_id == str(cluster.peer_id)
    finally:
        await exp.stop()


async def test_busy_port_names_the_config_key() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        exp = MetricsExporter(Metrics(process=False), FakeCluster(), f"/ip4/127.0.0.1/tcp/{port}")
        with pytest.raises(ConfigError) as ei:
            await exp.start()
    assert ei.value.key == "observations.metrics.prometheus_endpoint"
    assert f"/ip4/127.0.0.1/tcp/{port}" in str(ei.value)


async def test_exporter_on_a_unix_socket(tmp_path: Path) -> None:
    path = tmp_path / "metrics.sock"
    exp = MetricsExporter(Metrics(process=False), FakeCluster(total=2), f"/unix{path}")
    exp.bind()  # the daemon binds first and serves once the cluster runs
    assert path.exists()
    await exp.start()
    try:
        connector = aiohttp.UnixConnector(path=str(path))
        async with aiohttp.ClientSession(connector=connector) as http, http.get("http://localhost/metrics") as r:
            s = samples(await r.text())
        assert value(s, "pincluster_pinset_size") == 2
    finally:
        await exp.stop()
    assert not path.exists()
