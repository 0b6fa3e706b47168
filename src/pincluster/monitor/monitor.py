"""The peer monitor (Go's ``pubsubmon`` plus its alert checker) and the informer publisher (spec §13.3, §13.4).

Metrics arrive through :meth:`Monitor.log_metric` (the lead wires RPC ``PeerMonitor.LogMetric`` to it) and
leave through the injected ``broadcast``. Every ``check_interval`` the checker looks at the latest metric of
each (peer, name) of the current members; an expired one raises one :class:`Alert`, and that (peer, name) is
quiet until a new valid metric arrives, after which a new expiry alerts again. Alerts go to the ``on_alert``
hook (run as a task, its errors logged: one failing re-pin never stops alerting, unlike Go's handler that
returns after the first ping alert), to :meth:`alerts` (a bounded channel) and to :meth:`recent_alerts`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta

import msgspec

from pincluster.aio import cancel_and_wait
from pincluster.clock import SYSTEM_CLOCK, Clock
from pincluster.config.sections import PubsubMonConfig
from pincluster.informer.interface import Informer, ttl_ns
from pincluster.monitor.interface import AlertHook, Broadcast, PeersSource
from pincluster.monitor.metrics import MetricStore
from pincluster.types.codec import to_json
from pincluster.types.gotime import from_unix_nano
from pincluster.types.models import Alert, Metric, PingValue
from pincluster.types.multiaddr import Multiaddr
from pincluster.types.peer import PeerID

__all__ = ["ALERT_CHANNEL_SIZE", "MAX_RECENT_ALERTS", "InformerPublisher", "Monitor", "ping_metric"]

log = logging.getLogger("pincluster.monitor")

ALERT_CHANNEL_SIZE = 256
MAX_RECENT_ALERTS = 1000
#: Round period when an informer returned no metric (Go: 30 s).
DEFAULT_TTL_S = 30.0
_FOREVER_NS = 2**63 - 1


class Monitor:
    """Stores metrics with TTLs, broadcasts ours, raises alerts on expiry. Implements ``PeerMonitor``."""

    def __init__(
        self,
        config: PubsubMonConfig,
        *,
        broadcast: Broadcast,
        peers: PeersSource | None = None,
        on_alert: AlertHook | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.config = config
        self._broadcast = broadcast
        self._peers = peers
        self.on_alert = on_alert
        self._clock = clock
        self.store = MetricStore()
        self._alerted: set[tuple[str, PeerID]] = set()
        self._channel: asyncio.Queue[Alert] = asyncio.Queue(ALERT_CHANNEL_SIZE)
        self._recent: deque[Alert] = deque(maxlen=MAX_RECENT_ALERTS)
        self._task: asyncio.Task[None] | None = None
        self._hook_tasks: set[asyncio.Task[None]] = set()
        # latest_metrics is asked for every pin (allocation) while metrics change only every few seconds:
        # answers are kept per name until a metric of that name arrives, a peer is pruned, the member set
        # changes or one of the answered metrics expires (see shared_latest_metrics).
        self._shared: dict[str, tuple[int, frozenset[PeerID] | None, int, int, tuple[Metric, ...]]] = {}
        self._snapshots: dict[tuple[str, ...], tuple[tuple[Metric, ...], ...]] = {}
        self._members_list: list[PeerID] | None = None
        self._members_set: frozenset[PeerID] | None = None

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._check_loop(), name="monitor-checker")

    async def shutdown(self) -> None:
        await cancel_and_wait([self._task, *self._hook_tasks])
        self._task = None
        self._hook_tasks.clear()

    # ------------------------------------------------------------------ metrics
    async def log_metric(self, metric: Metric) -> None:
        """Store a metric, stamping ``received_at``; a valid one re-arms alerts for its (name, peer)."""
        metric = msgspec.structs.replace(metric, received_at=self._clock.now_ns())
        self.store.add(metric)
        if metric.valid and metric.peer is not None:
            self._alerted.discard((metric.name, metric.peer))

    async def publish_metric(self, metric: Metric) -> None:
        """Store and broadcast one of our metrics. Invalid metrics are never published."""
        if not metric.valid:
            log.debug("not publishing invalid metric %s", metric.name)
            return
        await self.log_metric(metric)
        await self._broadcast(metric)

    async def _members(self) -> frozenset[PeerID] | None:
        """The current members as a set: the same object while the member list is unchanged (so answers
        cached for it stay valid; comparing a few IDs costs less than building the set every time)."""
        if self._peers is None:
            return None
        peers = await self._peers()
        if self._members_set is None or peers != self._members_list:
            self._members_list = list(peers)
            self._members_set = frozenset(peers)
        return self._members_set

    async def latest_metrics(self, name: str) -> list[Metric]:
        return list(await self.shared_latest_metrics(name))

    async def shared_latest_metrics(self, name: str) -> tuple[Metric, ...]:
        """:meth:`latest_metrics` as an immutable tuple that is the *same object* as long as the answer
        cannot have changed: no metric of ``name`` arrived, no peer was pruned, the members are the same and
        none of the answered metrics expired."""
        return self._shared_latest(name, await self._members(), self._clock.now_ns())

    async def shared_snapshot(self, names: tuple[str, ...]) -> tuple[tuple[Metric, ...], ...]:
        """:meth:`shared_latest_metrics` of several names (members asked once): the same object while none
        of them changed. The allocator keys its cache on that identity (one check per pin)."""
        members = await self._members()
        now = self._clock.now_ns()
        parts = tuple([self._shared_latest(name, members, now) for name in names])
        last = self._snapshots.get(names)
        if last is not None and len(last) == len(parts) and all(a is b for a, b in zip(last, parts, strict=True)):
            return last
        self._snapshots[names] = parts
        return parts

    def _shared_latest(self, name: str, members: frozenset[PeerID] | None, now: int) -> tuple[Metric, ...]:
        version = self.store.version(name)
        hit = self._shared.get(name)
        # [computed_at, valid_until): valid metrics only become invalid by expiring (``expired`` is
        # ``now > expire``), and a clock that went back recomputes.
        if hit is not None and hit[0] == version and hit[1] is members and hit[2] <= now < hit[3]:
            return hit[4]
        out = tuple(self.store.latest_valid(name, now, members))
        until = min((m.expire for m in out), default=_FOREVER_NS) + 1
        self._shared[name] = (version, members, now, until, out)
        return out

    def metric_names(self) -> list[str]:
        return self.store.names()

    # ------------------------------------------------------------------ alerts
    async def alerts(self) -> AsyncIterator[Alert]:
        while True:
            yield await self._channel.get()

    def recent_alerts(self) -> list[Alert]:
        return list(self._recent)

    async def check_once(self) -> list[Alert]:
        """One checker round: raise an alert for each newly expired (name, peer) of a current member."""
        members = await self._members()
        if members is not None:
            for gone in self.store.peers() - members:  # left the cluster: forget, so memory stays bounded
                self.store.remove_peer(gone)
                self._alerted = {k for k in self._alerted if k[1] != gone}
        now = self._clock.now_ns()
        raised = []
        for m in self.store.all_latest(members):
            assert m.peer is not None
            key = (m.name, m.peer)
            if not m.expired(now) or key in self._alerted:
                continue
            self._alerted.add(key)
            alert = Alert.from_metric(m, from_unix_nano(now))
            raised.append(alert)
            self._dispatch(alert)
        return raised

    def _dispatch(self, alert: Alert) -> None:
        log.warning("alert: metric %s of peer %s expired", alert.name, alert.peer)
        self._recent.appendleft(alert)
        if self._channel.full():  # nobody reads: drop the oldest rather than block the checker
            self._channel.get_nowait()
        self._channel.put_nowait(alert)
        if self.on_alert is not None:
            task = asyncio.create_task(self._run_hook(alert))
            self._hook_tasks.add(task)
            task.add_done_callback(self._hook_tasks.discard)

    async def _run_hook(self, alert: Alert) -> None:
        assert self.on_alert is not None
        try:
            await self.on_alert(alert)
        except Exception:
            log.exception("alert handler failed for %s of %s", alert.name, alert.peer)

    async def _check_loop(self) -> None:
        period = self.config.check_interval.total_seconds()
        while True:
            await self._clock.sleep(period)
            try:
                await self.check_once()
            except Exception:
                log.exception("alert check failed")


class InformerPublisher:
    """Runs each informer in its own loop: publish its valid metrics (stamped with our peer ID), then wait
    half the smallest TTL (30 s when there is none), or a quarter after a failure (spec §13.3)."""

    def __init__(
        self,
        informers: Sequence[Informer],
        monitor: Monitor,
        peer: PeerID,
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.informers = list(informers)
        self._monitor = monitor
        self._peer = peer
        self._clock = clock
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        if not self._tasks:
            self._tasks = [asyncio.create_task(self._loop(i), name=f"informer-{i.name}") for i in self.informers]

    async def shutdown(self) -> None:
        await cancel_and_wait(self._tasks)
        self._tasks.clear()

    async def push(self, informer: Informer) -> float:
        """Publish ``informer``'s metrics once; returns the seconds to wait before the next round."""
        now = self._clock.now_ns()
        min_ttl = DEFAULT_TTL_S
        failed = False
        try:
            metrics = await informer.get_metrics()
        except Exception as exc:
            log.warning("informer %s failed: %s", informer.name, exc)
            return min_ttl / 4
        ttls = [m.ttl_ns(now) / 1e9 for m in metrics if m.expire > now]
        if ttls:
            min_ttl = min(ttls)
        for m in metrics:
            if m.discard(now):
                continue
            try:
                await self._monitor.publish_metric(msgspec.structs.replace(m, peer=self._peer))
            except Exception as exc:
                failed = True
                log.warning("cannot publish metric %s: %s", m.name, exc)
        return min_ttl / 4 if failed else min_ttl / 2

    async def push_all(self) -> None:
        """Publish every informer's metrics now (RPC ``Cluster.SendInformersMetrics``)."""
        for informer in self.informers:
            await self.push(informer)

    async def _loop(self, informer: Informer) -> None:
        while True:
            delay = await self.push(informer)
            await self._clock.sleep(max(delay, 0.001))


def ping_metric(
    peer: PeerID,
    *,
    peer_name: str,
    ipfs_id: PeerID | None,
    ipfs_addresses: Sequence[Multiaddr],
    interval: timedelta,
    now_ns: int,
) -> Metric:
    """The ``ping`` metric a peer publishes every ``monitor_ping_interval`` (TTL twice that), whose value is
    the JSON ``{"peer_name","ipfs_id","ipfs_addresses"}`` (spec §2.13, §13.3)."""
    value = to_json(PingValue(peer_name=peer_name, ipfs_id=ipfs_id, ipfs_addresses=tuple(ipfs_addresses)))
    return Metric(
        name="ping",
        peer=peer,
        value=value.decode().rstrip("\n"),
        valid=True,
        expire=now_ns + 2 * ttl_ns(interval),
    )
