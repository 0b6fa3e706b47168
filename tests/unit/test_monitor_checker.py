"""Unit tests of the metric store, the monitor (TTL, broadcast, alerts) and the informer publisher, all on a
fake clock."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from pincluster.config.sections import PubsubMonConfig, TagsInformerConfig
from pincluster.errors import InvalidInput
from pincluster.informer.tags import TagsInformer
from pincluster.monitor.interface import PeerMonitor
from pincluster.monitor.metrics import WINDOW, MetricStore
from pincluster.monitor.monitor import InformerPublisher, Monitor, ping_metric
from pincluster.p2p.keys import PrivateKey
from pincluster.testing import FakeClock
from pincluster.types.models import Alert, Metric
from pincluster.types.multiaddr import Multiaddr
from pincluster.types.peer import PeerID

NS = 1_000_000_000


def new_peer() -> PeerID:
    return PeerID.from_public_key(PrivateKey.generate_ed25519().public_key())


A, B, C = sorted((new_peer(), new_peer(), new_peer()), key=lambda p: p.bytes)


def metric(peer: PeerID, clock: FakeClock, ttl_s: float = 30, name: str = "ping", value: str = "", valid: bool = True
           ) -> Metric:
    return Metric(name=name, peer=peer, value=value, valid=valid, expire=clock.now_ns() + int(ttl_s * NS))


class Env:
    def __init__(self, peers: list[PeerID] | None = None) -> None:
        self.clock = FakeClock()
        self.sent: list[Metric] = []
        self.members = peers if peers is not None else [A, B, C]
        self.hooked: list[Alert] = []

        async def broadcast(m: Metric) -> None:
            self.sent.append(m)

        async def members() -> list[PeerID]:
            return list(self.members)

        async def on_alert(a: Alert) -> None:
            self.hooked.append(a)
            if len(self.hooked) == 1:
                raise RuntimeError("first repin failed")  # must not stop later alerts

        self.monitor = Monitor(PubsubMonConfig(), broadcast=broadcast, peers=members, on_alert=on_alert,
                               clock=self.clock)


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


def test_store_window_and_latest() -> None:
    clock = FakeClock()
    st = MetricStore()
    for i in range(WINDOW + 5):
        st.add(metric(A, clock, value=str(i)))
    assert len(st.window("ping", A)) == WINDOW
    latest = st.latest("ping", A)
    assert latest is not None and latest.value == str(WINDOW + 4)
    with pytest.raises(InvalidInput, match="needs a name and a peer"):
        st.add(Metric(name="ping"))


def test_store_latest_valid_filters_and_sorts() -> None:
    clock = FakeClock()
    st = MetricStore()
    st.add(metric(C, clock))
    st.add(metric(A, clock))
    st.add(metric(B, clock, valid=False))
    st.add(metric(new_peer(), clock, ttl_s=-1))  # expired
    assert [m.peer for m in st.latest_valid("ping", clock.now_ns())] == [A, C]
    assert [m.peer for m in st.latest_valid("ping", clock.now_ns(), {C})] == [C]
    assert st.names() == ["ping"]


async def test_publish_logs_and_broadcasts_valid_only() -> None:
    e = Env()
    mon: PeerMonitor = e.monitor  # checked statically by mypy
    assert isinstance(mon, PeerMonitor)
    await e.monitor.publish_metric(metric(A, e.clock, name="freespace", value="10"))
    await e.monitor.publish_metric(metric(A, e.clock, name="tag:none", valid=False))
    assert [m.name for m in e.sent] == ["freespace"]
    [m] = await e.monitor.latest_metrics("freespace")
    assert m.received_at == e.clock.now_ns()
    assert e.monitor.metric_names() == ["freespace"]


async def test_latest_metrics_ttl_and_peerset() -> None:
    e = Env(peers=[A, B])
    await e.monitor.log_metric(metric(A, e.clock, ttl_s=10))
    await e.monitor.log_metric(metric(B, e.clock, ttl_s=30))
    await e.monitor.log_metric(metric(C, e.clock, ttl_s=30))  # not a member
    assert [m.peer for m in await e.monitor.latest_metrics("ping")] == [A, B]
    await e.clock.advance(11)
    assert [m.peer for m in await e.monitor.latest_metrics("ping")] == [B]


async def test_expiry_alerts_once_then_again_after_new_metric() -> None:
    e = Env()
    await e.monitor.start()
    await e.monitor.log_metric(metric(A, e.clock, ttl_s=30))
    await e.monitor.log_metric(metric(B, e.clock, ttl_s=300))
    await e.clock.advance(15)
    assert e.monitor.recent_alerts() == []
    await e.clock.advance(30)  # A expired at 30 s; check at 45 s
    await settle()
    [alert] = e.monitor.recent_alerts()
    assert alert.peer == A and alert.name == "ping" and alert.triggered_at.year > 2000
    await e.clock.advance(60)  # more checks: no repeat for the same expiry
    await settle()
    assert len(e.monitor.recent_alerts()) == 1
    # A comes back, then expires again: a second alert (Go's handler would have stopped after the first)
    await e.monitor.log_metric(metric(A, e.clock, ttl_s=30))
    await e.clock.advance(15)
    assert len(e.monitor.recent_alerts()) == 1
    await e.clock.advance(30)
    await settle()
    assert [a.peer for a in e.monitor.recent_alerts()] == [A, A]
    assert len(e.hooked) == 2  # the hook kept being called although its first call raised
    got = []
    async for a in e.monitor.alerts():
        got.append(a)
        if len(got) == 2:
            break
    assert got[0].triggered_at < got[1].triggered_at
    await e.monitor.shutdown()


async def test_no_alert_for_removed_peer_and_memory_pruned() -> None:
    e = Env(peers=[A, B])
    await e.monitor.log_metric(metric(A, e.clock, ttl_s=1))
    await e.monitor.log_metric(metric(B, e.clock, ttl_s=1))
    e.members = [A]
    await e.clock.advance(2)
    raised = await e.monitor.check_once()
    assert [a.peer for a in raised] == [A]
    assert e.monitor.store.peers() == {A}


async def test_alert_channel_is_bounded() -> None:
    e = Env(peers=[])
    e.monitor.on_alert = None
    many = [new_peer() for _ in range(300)]
    e.members = many
    for p in many:
        await e.monitor.log_metric(metric(p, e.clock, ttl_s=1))
    await e.clock.advance(2)
    assert len(await e.monitor.check_once()) == 300
    assert e.monitor._channel.qsize() == 256
    assert len(e.monitor.recent_alerts()) == 300


async def test_informer_publisher_rounds() -> None:
    e = Env()
    tags = TagsInformer(TagsInformerConfig(metric_ttl=timedelta(seconds=30)), clock=e.clock)
    pub = InformerPublisher([tags], e.monitor, A, clock=e.clock)
    await pub.start()
    await settle()
    assert [(m.name, m.peer) for m in e.sent] == [("tag:group", A)]
    await e.clock.advance(14)
    assert len(e.sent) == 1
    await e.clock.advance(1)  # TTL/2 = 15 s
    await settle()
    assert len(e.sent) == 2
    await pub.shutdown()


async def test_informer_publisher_skips_invalid_and_retries_sooner() -> None:
    e = Env()
    none = TagsInformer(TagsInformerConfig(tags={}), clock=e.clock)
    pub = InformerPublisher([none], e.monitor, A, clock=e.clock)
    assert await pub.push(none) == 15.0
    assert e.sent == []

    async def failing(m: Metric) -> None:
        raise RuntimeError("no peers")

    e.monitor._broadcast = failing
    tags = TagsInformer(TagsInformerConfig(), clock=e.clock)
    assert await pub.push(tags) == 7.5  # TTL/4 after a failed publish


def test_ping_metric() -> None:
    clock = FakeClock()
    ipfs = new_peer()
    m = ping_metric(A, peer_name="p1", ipfs_id=ipfs, ipfs_addresses=[Multiaddr("/ip4/1.2.3.4/tcp/4001")],
                    interval=timedelta(seconds=15), now_ns=clock.now_ns())
    assert m.name == "ping" and m.valid and m.expire == clock.now_ns() + 30 * NS
    assert m.value == f'{{"peer_name":"p1","ipfs_id":"{ipfs}","ipfs_addresses":["/ip4/1.2.3.4/tcp/4001"]}}'
