"""Prometheus metrics of one peer (``observations.metrics``, spec §7.3.11) and the HTTP exporter serving them.

Three kinds of values:

* event counters and latency histograms fed by the hooks in ``rpc.core`` and ``ipfsconn.ipfshttp``
  (:class:`Metrics` implements both observer protocols of :mod:`pincluster.observe.hooks`);
* values computed at scrape time from the running cluster (pins by status, queue, peers, Raft, alerts,
  informers, IPFS repo): the scrape handler takes a :func:`~pincluster.observe.stats.health_snapshot` and
  :class:`ClusterCollector` turns it into metric families;
* the process collectors of ``prometheus_client`` (CPU, memory, file descriptors, GC).

Everything lives on a registry owned by the :class:`Metrics` object, never the library's global default:
tests run several peers in one process. Names are ``pincluster_*``; where IPFS Cluster 1.1.6 exports the
same quantity (OpenCensus, namespace ``ipfscluster``), the Go name is exported too, as an untyped sample
with exactly Go's name, so existing dashboards and alert rules keep working.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from bisect import bisect_left
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    UnknownMetricFamily,
)
from prometheus_client.registry import Collector

from pincluster.errors import ConfigError
from pincluster.observe.hooks import Outcome, endpoint_of
from pincluster.types.multiaddr import Multiaddr

if TYPE_CHECKING:
    from pincluster.observe.stats import HealthSnapshot, PinsetWalker

__all__ = ["LATENCY_BUCKETS", "ClusterCollector", "Metrics", "MetricsExporter"]

#: Prometheus text format 0.0.4 (spelled out: the constant moved between prometheus_client releases).
PROMETHEUS_TEXT_CT = "text/plain; version=0.0.4; charset=utf-8"

log = logging.getLogger("pincluster.observations")

#: Seconds; from 1 ms (a local call, a kubo ``id``) to 5 min (a slow ``pin/add``).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                   120.0, 300.0)  # fmt: skip
_LE = [repr(float(b)) for b in LATENCY_BUCKETS] + ["+Inf"]  # "0.005", "1.0": as prometheus_client writes

_OK = "ok"
_ERROR = "error"


class _Histogram:
    """Bucket counts (not cumulative) and a sum: one ``bisect`` and two additions per observation."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1  # first bound >= value: Prometheus' "le"
        self.total += seconds

    def buckets(self) -> list[tuple[str, float]]:
        out, acc = [], 0
        for le, n in zip(_LE, self.counts, strict=True):
            acc += n
            out.append((le, float(acc)))
        return out


class Metrics:
    """The event metrics of one peer (RPC calls, IPFS requests) on its own registry; the RPC and IPFS observer.

    The hooks run on hot paths of the event loop, so they only bump plain Python counters (about 1 µs, against
    about 11 µs for ``prometheus_client``'s locked ``Counter``/``Histogram`` children); the families are built
    at scrape time by :meth:`collect`. Everything runs on the loop thread: no locks needed.
    """

    def __init__(self, *, registry: CollectorRegistry | None = None, process: bool = True) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.started = time.time()
        self.rpc_made: dict[tuple[str, str, str], int] = {}  # (method, target, outcome) -> calls
        self.rpc_latency: dict[tuple[str, str], _Histogram] = {}  # (method, target)
        self.rpc_served_by: dict[tuple[str, str], int] = {}  # (method, outcome) -> calls
        self.ipfs_latency: dict[str, _Histogram] = {}  # endpoint
        self.ipfs_by_endpoint: dict[str, list[int]] = {}  # endpoint -> [requests, errors]
        # Totals for the health screen's rates.
        self.rpc_calls_total = 0
        self.rpc_errors_total = 0
        self.ipfs_requests_total = 0
        self.ipfs_errors_total = 0
        self.registry.register(_EventCollector(self))
        if process:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)

    # ------------------------------------------------------------------ observer hooks
    def rpc_call(self, method: str, remote: bool, ok: bool, seconds: float) -> None:
        target = "remote" if remote else "local"
        key = (method, target, _OK if ok else _ERROR)
        self.rpc_made[key] = self.rpc_made.get(key, 0) + 1
        h = self.rpc_latency.get((method, target))
        if h is None:
            h = self.rpc_latency[(method, target)] = _Histogram()
        h.observe(seconds)
        self.rpc_calls_total += 1
        if not ok:
            self.rpc_errors_total += 1

    def rpc_served(self, method: str, ok: bool) -> None:
        key = (method, _OK if ok else _ERROR)
        self.rpc_served_by[key] = self.rpc_served_by.get(key, 0) + 1
        self.rpc_calls_total += 1
        if not ok:
            self.rpc_errors_total += 1

    def ipfs_call(self, path: str, seconds: float, outcome: Outcome) -> None:
        endpoint = endpoint_of(path)
        h = self.ipfs_latency.get(endpoint)
        if h is None:
            h = self.ipfs_latency[endpoint] = _Histogram()
            self.ipfs_by_endpoint[endpoint] = [0, 0]
        h.observe(seconds)
        counts = self.ipfs_by_endpoint[endpoint]
        counts[0] += 1
        self.ipfs_requests_total += 1
        if outcome == _ERROR:
            counts[1] += 1
            self.ipfs_errors_total += 1

    def render(self) -> bytes:
        """The registry in the Prometheus text format."""
        return bytes(generate_latest(self.registry))


class _EventCollector(Collector):
    """Builds the RPC and IPFS families from :class:`Metrics`' counters (sorted, so scrapes are stable)."""

    def __init__(self, m: Metrics) -> None:
        self.m = m

    def collect(self) -> Iterator[Metric]:
        m = self.m
        made = CounterMetricFamily(
            "pincluster_rpc_calls", "RPC calls this peer made, by method, target (local or remote) and outcome",
            labels=["method", "target", "outcome"],
        )  # fmt: skip
        for key, n in sorted(m.rpc_made.items()):
            made.add_metric(list(key), n)
        yield made
        lat = HistogramMetricFamily(
            "pincluster_rpc_call_duration_seconds", "Duration of the RPC calls this peer made",
            labels=["method", "target"],
        )  # fmt: skip
        for (method, target), h in sorted(m.rpc_latency.items()):
            lat.add_metric([method, target], h.buckets(), h.total)
        yield lat
        served = CounterMetricFamily(
            "pincluster_rpc_served", "RPC calls other peers made to this peer, by method and outcome",
            labels=["method", "outcome"],
        )  # fmt: skip
        for served_key, n in sorted(m.rpc_served_by.items()):
            served.add_metric(list(served_key), n)
        yield served
        ipfs = HistogramMetricFamily(
            "pincluster_ipfs_request_duration_seconds",
            "Duration of requests to the IPFS daemon's RPC API, by endpoint (request to end of the answer)",
            labels=["endpoint"],
        )
        errors = CounterMetricFamily(
            "pincluster_ipfs_request_errors", "Failed requests to the IPFS daemon, by endpoint", labels=["endpoint"]
        )
        for endpoint, h in sorted(m.ipfs_latency.items()):
            ipfs.add_metric([endpoint], h.buckets(), h.total)
            n_err = m.ipfs_by_endpoint[endpoint][1]
            if n_err:
                errors.add_metric([endpoint], n_err)
        yield ipfs
        yield errors
        # IPFS Cluster 1.1.6's request counters: exact Go names (untyped, so no "_total" is appended).
        pin_add = m.ipfs_by_endpoint.get("pin/add", [0, 0])
        block_put = m.ipfs_by_endpoint.get("block/put", [0, 0])
        yield _untyped("ipfscluster_pins_pin_add", "Total number of IPFS pin requests", pin_add[0])
        yield _untyped("ipfscluster_pins_pin_add_errors", "Total number of failed pin requests", pin_add[1])
        yield _untyped("ipfscluster_blocks_put", "Total number of block/put requests", block_put[0])
        yield _untyped("ipfscluster_blocks_put_error", "Total number of block/put errors", block_put[1])


def _gauge(name: str, doc: str, value: float, labels: dict[str, str] | None = None) -> GaugeMetricFamily:
    if labels:
        g = GaugeMetricFamily(name, doc, labels=list(labels))
        g.add_metric(list(labels.values()), value)
        return g
    return GaugeMetricFamily(name, doc, value=value)


def _untyped(name: str, doc: str, value: float) -> UnknownMetricFamily:
    return UnknownMetricFamily(name, doc, value=value)


class ClusterCollector(Collector):
    """Metric families computed from the latest :class:`HealthSnapshot` (set by the scrape handler).

    ``collect`` is synchronous (``prometheus_client`` calls it inside ``generate_latest``) while reading the
    cluster is async, so the scrape handler awaits a snapshot first and hands it over with :meth:`set`.
    """

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.snapshot: HealthSnapshot | None = None

    def set(self, snapshot: HealthSnapshot) -> None:
        self.snapshot = snapshot

    def describe(self) -> list[Metric]:
        return []  # values appear only once a snapshot exists; nothing to pre-declare

    def collect(self) -> Iterator[Metric]:
        s = self.snapshot
        if s is None:
            return
        p = s.pins
        by_status = GaugeMetricFamily(
            "pincluster_pins", "Pins of the shared pinset by this peer's status (see docs/observability.md "
            "for how exact each value is)", labels=["status"],
        )  # fmt: skip
        for status, value in (
            ("pinned", p.pinned), ("pin_queued", p.pin_queued), ("pinning", p.pinning),
            ("pin_error", p.pin_error), ("unpin_queued", p.unpin_queued), ("unpinning", p.unpinning),
            ("unpin_error", p.unpin_error), ("remote", p.remote),
        ):  # fmt: skip
            if value is not None:
                by_status.add_metric([status], value)
        yield by_status
        yield _gauge("pincluster_pins_exact", "1 when pincluster_pins{status=pinned|remote} come from a full "
                     "walk of the pinset, 0 when estimated (pinset larger than the walk limit)",
                     1 if p.exact else 0)  # fmt: skip
        yield _gauge("pincluster_pinset_size", "Pins in the shared pinset (all peers)", p.total)
        yield _gauge("pincluster_pin_queue_length", "Pin operations waiting for a worker on this peer",
                     s.queue_length)  # fmt: skip
        yield _gauge("pincluster_peers", "Members of the cluster peerset (Raft configuration)", s.members_total)
        yield _gauge("pincluster_peers_alive", "Members with a valid ping metric (this peer included)",
                     s.members_alive)  # fmt: skip
        yield _gauge("pincluster_raft_term", "Current Raft term seen by this peer", s.raft_term)
        yield _gauge("pincluster_raft_commit_index", "Raft commit index on this peer", s.raft_commit_index)
        yield _gauge("pincluster_raft_is_leader", "1 when this peer is the Raft leader", 1 if s.is_leader else 0)
        yield _gauge("pincluster_raft_has_leader", "1 when this peer knows a Raft leader",
                     0 if s.raft_leader is None else 1)  # fmt: skip
        if s.raft_leader is not None:
            yield _gauge("pincluster_raft_leader", "The Raft leader's peer ID as a label (value 1)", 1,
                         {"peer": s.raft_leader})  # fmt: skip
        yield _gauge("pincluster_alerts", "Alerts kept by this peer (GET /health/alerts; at most 1000)",
                     s.alerts_total)  # fmt: skip
        yield _gauge("pincluster_ipfs_up", "1 when the IPFS daemon answered its last id request",
                     1 if s.ipfs_reachable else 0)  # fmt: skip
        if s.ipfs_repo_size is not None:
            yield _gauge("pincluster_ipfs_repo_size_bytes", "IPFS repo size (repo/stat)", s.ipfs_repo_size)
        if s.ipfs_storage_max is not None:
            yield _gauge("pincluster_ipfs_storage_max_bytes", "IPFS StorageMax (repo/stat)", s.ipfs_storage_max)
        if s.ipfs_free is not None:
            yield _gauge("pincluster_ipfs_free_bytes", "StorageMax minus repo size", s.ipfs_free)
        informers = GaugeMetricFamily(
            "pincluster_informer_value", "This peer's latest numeric informer metrics (freespace, pinqueue…)",
            labels=["name"],
        )
        for name, text in sorted(s.informers.items()):
            try:
                informers.add_metric([name], float(text))
            except ValueError:
                continue  # tags: text values
        yield informers
        yield _gauge("pincluster_uptime_seconds", "Seconds since the metrics were set up (daemon start)",
                     s.uptime_seconds)  # fmt: skip
        # IPFS Cluster 1.1.6's names (OpenCensus exporter, namespace "ipfscluster").
        yield _untyped("ipfscluster_pins", "Total number of cluster pins", p.total)
        yield _untyped("ipfscluster_pins_pin_queued", "Current number of pins queued for pinning", p.pin_queued)
        yield _untyped("ipfscluster_pins_pinning", "Current number of pins currently pinning", p.pinning)
        yield _untyped("ipfscluster_pins_pin_error", "Current number of pins in pin_error state", p.pin_error)
        disk = s.informer_weights.get("freespace", s.informer_weights.get("reposize"))
        if disk is not None:
            yield _untyped("ipfscluster_informer_disk", "The metric value weight issued by the disk informer", disk)


class MetricsExporter:
    """Serves ``GET /metrics`` (Prometheus text) and ``GET /health`` (the snapshot as JSON) over HTTP.

    Bound to ``observations.metrics.prometheus_endpoint`` (a ``/ip4|ip6|dns…/tcp/<port>`` or ``/unix/<path>``
    multiaddr). The daemon calls :meth:`bind` first thing, so a busy port stops it before it joins the cluster,
    and :meth:`start` once the cluster runs. Every scrape reads the cluster afresh, one scrape at a time.
    """

    def __init__(
        self,
        metrics: Metrics,
        cluster: Any,
        endpoint: Multiaddr | str,
        *,
        walker: PinsetWalker | None = None,
        log_tail: Any = None,
    ) -> None:
        from pincluster.observe.stats import PinsetWalker

        self.metrics = metrics
        self.cluster = cluster
        self.endpoint = endpoint if isinstance(endpoint, Multiaddr) else Multiaddr(endpoint)
        self.walker = walker if walker is not None else PinsetWalker()
        self.log_tail = log_tail
        self.collector = ClusterCollector(metrics)
        metrics.registry.register(self.collector)
        self._lock = asyncio.Lock()
        self._runner: web.AppRunner | None = None
        self._site: web.BaseSite | None = None
        self._sock: socket.socket | None = None
        self._previous: HealthSnapshot | None = None

    @property
    def url(self) -> str:
        """``http://host:port`` actually bound (port 0 resolved), for tests and the startup log line."""
        if self._site is None or self._runner is None:
            return ""
        addrs = self._runner.addresses
        if not addrs or not isinstance(addrs[0], tuple):
            return f"unix:{self.endpoint.unix_path()}"
        host, port = addrs[0][0], addrs[0][1]
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}"

    def bind(self) -> None:
        """Take the address now (served from :meth:`start`); a busy or bad address is a ConfigError."""
        if self._sock is not None:
            return
        sock: socket.socket | None = None
        try:
            if self.endpoint.is_unix():
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.bind(self.endpoint.unix_path())
            else:
                host, port = self.endpoint.tcp_host_port()
                family, _t, _p, _c, addr = socket.getaddrinfo(
                    host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
                )[0]
                sock = socket.socket(family, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart may leave TIME_WAIT
                sock.bind(addr)
            sock.listen(128)
            sock.setblocking(False)
        except (OSError, ValueError) as exc:
            if sock is not None:
                sock.close()
            raise ConfigError(
                "observations.metrics.prometheus_endpoint",
                f"cannot serve metrics on {self.endpoint}: {exc}; is another program (or another peer on this "
                "machine) using that address? Choose a free one in service.json",
            ) from exc
        self._sock = sock

    async def start(self) -> None:
        """Serve on the bound address (binding it now if :meth:`bind` was not called)."""
        self.bind()
        assert self._sock is not None
        app = web.Application()
        app.router.add_get("/metrics", self._handle_metrics)
        app.router.add_get("/health", self._handle_health)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.SockSite(runner, self._sock)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigError("observations.metrics.prometheus_endpoint", f"cannot serve metrics: {exc}") from exc
        self._runner, self._site = runner, site
        log.info("stats collection enabled: Prometheus metrics on %s/metrics", self.url)

    async def stop(self) -> None:
        runner, self._runner, self._site = self._runner, None, None
        if runner is not None:
            await runner.cleanup()
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
            if self.endpoint.is_unix():
                with contextlib.suppress(OSError):
                    os.unlink(self.endpoint.unix_path())
        with contextlib.suppress(KeyError):
            self.metrics.registry.unregister(self.collector)

    async def snapshot(self) -> HealthSnapshot:
        """A fresh snapshot (rates against the previous scrape); also installs it in the collector."""
        from pincluster.observe.stats import health_snapshot

        async with self._lock:
            snap = await health_snapshot(
                self.cluster, metrics=self.metrics, previous=self._previous, walker=self.walker,
                log_tail=self.log_tail,
            )  # fmt: skip
            self._previous = snap
            self.collector.set(snap)
            return snap

    async def scrape(self) -> bytes:
        await self.snapshot()  # no suspension point between installing the snapshot and rendering it
        return self.metrics.render()

    async def _handle_metrics(self, _req: web.Request) -> web.Response:
        body = await self.scrape()
        # The 0.0.4 text format: every Prometheus version reads it (our names need no escaping).
        return web.Response(body=body, headers={"Content-Type": PROMETHEUS_TEXT_CT})

    async def _handle_health(self, _req: web.Request) -> web.Response:
        snap = await self.snapshot()
        return web.Response(body=msgspec.json.encode(snap), content_type="application/json")
