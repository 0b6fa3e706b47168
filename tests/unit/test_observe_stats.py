"""The one-screen health view: snapshots from a fake cluster, the text and rich renderings, the reporter, the
last-error handler, and the tracker's operation counts the metrics rely on."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import AsyncIterator

import pytest
from tests.unit.test_observe_fakes import FakeCluster, peer

from pincluster.config.sections import StatelessTrackerConfig
from pincluster.errors import Unavailable
from pincluster.ipfsconn.fake import FakeIPFSConnector
from pincluster.observe.metrics import Metrics
from pincluster.observe.stats import (
    MAX_TEXT_LINES,
    AlertLine,
    HealthReporter,
    HealthSnapshot,
    LogTail,
    PinCounts,
    health_snapshot,
    render_rich,
    render_text,
)
from pincluster.pintracker.stateless import StatelessPinTracker
from pincluster.types.cid import CID, RAW, sha256_multihash
from pincluster.types.models import Pin
from pincluster.types.status import TrackerStatus

pytestmark = pytest.mark.timeout(30)


async def test_snapshot_of_a_healthy_leader() -> None:
    c = FakeCluster(total=10, remote=3, ops={"pin_queued": 2, "pinning": 1, "pin_error": 1}, queue=2)
    s = await health_snapshot(c)
    assert s.peer_id == str(c.peer_id) and s.peername == "peer0"
    assert s.version.startswith("1.1.6 (pincluster ")
    assert s.raft_leader == str(c.peer_id) and s.is_leader and s.raft_term == 4 and s.raft_commit_index == 99
    assert (s.members_total, s.members_alive) == (3, 2)
    assert s.pins == PinCounts(total=10, allocated_here=7, pinned=3, pin_queued=2, pinning=1, pin_error=1,
                               remote=3, exact=True)  # fmt: skip
    assert s.queue_length == 2
    assert s.ipfs_reachable and s.ipfs_repo_size == 1000 and s.ipfs_free == 4000
    assert s.informers == {"freespace": "4000", "tag:group": "default"}
    assert s.informer_weights["freespace"] == 4000
    assert s.alerts_total == 1 and s.last_alerts[0].name == "ping"
    assert s.last_alerts[0].peer == str(c.others[1]) and s.last_alerts[0].triggered_at == "01:02:03Z"
    assert s.rpc_calls_total is None and s.rpc_calls_per_second is None  # no metrics given


async def test_snapshot_reports_failures_as_unknown_not_as_errors() -> None:
    c = FakeCluster(total=1)
    c.leader = None
    c.ipfs.down = True
    s = await health_snapshot(c)
    assert s.raft_leader is None and not s.is_leader
    assert not s.ipfs_reachable and "connection refused" in s.ipfs_error
    assert s.ipfs_repo_size is None and s.ipfs_free is None
    lines = render_text(s)
    assert any("UNREACHABLE: ipfshttp: connection refused" in line for line in lines)
    assert any("leader none (election or no quorum)" in line for line in lines)


async def test_slow_ipfs_is_bounded() -> None:
    c = FakeCluster()

    async def stuck() -> None:
        await asyncio.sleep(10)

    c.ipfs.id = stuck  # type: ignore[assignment,method-assign]
    s = await health_snapshot(c, ipfs_timeout=0.05)
    assert not s.ipfs_reachable and "no answer within 0.05 s" in s.ipfs_error


async def test_rates_come_from_the_previous_snapshot() -> None:
    c = FakeCluster()
    m = Metrics(process=False)
    first = await health_snapshot(c, metrics=m)
    for _ in range(30):
        m.rpc_call("Cluster.ID", True, True, 0.001)
    m.rpc_served("Cluster.Pin", False)
    second = await health_snapshot(c, metrics=m, previous=first)
    assert second.rpc_calls_total == 31 and second.rpc_errors_total == 1
    dt = second.taken_at - first.taken_at
    assert second.rpc_calls_per_second == pytest.approx(31 / dt)
    assert second.rpc_errors_per_second == pytest.approx(1 / dt)
    assert second.uptime_seconds >= first.uptime_seconds


def _busy_snapshot() -> HealthSnapshot:
    alerts = [AlertLine(name="ping", peer=str(peer()), triggered_at=f"01:0{i}:00Z") for i in range(3)]
    return HealthSnapshot(
        taken_at=0.0, peer_id=str(peer()), peername="peer1", version="1.1.6 (pincluster 0.1.0)",
        uptime_seconds=3725, raft_leader=str(peer()), raft_term=7, raft_commit_index=1234, members_total=3,
        members_alive=2, pins=PinCounts(total=120, pinned=100, pinning=5, pin_queued=10, pin_error=2, remote=3,
        unpin_queued=1, unpinning=1, unpin_error=1, exact=True), queue_length=10, ipfs_reachable=True,
        ipfs_repo_size=1_200_000_000, ipfs_free=98_000_000_000, informers={"freespace": "98000000000",
        "tag:group": "default", "pinqueue": "10"}, rpc_calls_total=1234, rpc_errors_total=2,
        rpc_calls_per_second=12.34, rpc_errors_per_second=0.0, ipfs_requests_total=567, ipfs_errors_total=1,
        alerts_total=3, last_alerts=alerts, last_error="01:02:03 pintracker: pin QmX failed: timeout",
    )  # fmt: skip


def test_text_screen_fits_in_15_lines_and_says_everything() -> None:
    s = _busy_snapshot()
    lines = render_text(s)
    assert len(lines) <= MAX_TEXT_LINES
    text = "\n".join(lines)
    for expected in (
        "peer1 " + s.peer_id + ", version 1.1.6", "up 1h02m", "term 7", "commit 1234", "2/3 alive",
        "120 in pinset: 100 pinned, 5 pinning, 10 queued, 2 error, 3 remote",
        "unpin: 1 queued, 1 running, 1 error", "10 pin operations waiting", "repo 1.2 GB, free 98.0 GB",
        "12.3 calls/s, 0.0 errors/s; 1234 calls, 2 errors", "free 98.0 GB; 567 requests, 1 failed", "01:02:00Z",
        "last error: 01:02:03 pintracker: pin QmX failed: timeout",
    ):  # fmt: skip
        assert expected in text, expected
    assert all(len(line) < 300 for line in lines)


def test_estimated_counts_are_flagged() -> None:
    s = HealthSnapshot(taken_at=0, peer_id="p", peername="", version="v", uptime_seconds=1,
                       pins=PinCounts(total=5, pinned=5, remote=None, exact=False))  # fmt: skip
    text = "\n".join(render_text(s))
    assert "? remote (pinned estimated" in text
    assert "last error: none" in text and "alerts:     0 (none)" in text


def test_rich_panel_renders() -> None:
    from rich.console import Console

    out = io.StringIO()
    Console(file=out, width=160, color_system=None).print(render_rich(_busy_snapshot()))
    text = out.getvalue()
    assert "pincluster health" in text and "peer1" in text and "2/3 alive" in text and "last error" in text


async def test_reporter_logs_a_plain_block_when_not_a_tty(caplog: pytest.LogCaptureFixture) -> None:
    c = FakeCluster(total=2)
    rep = HealthReporter(c, 0.05, metrics=Metrics(process=False), stream=io.StringIO(), tty=False)
    with caplog.at_level(logging.INFO, logger="pincluster.observations"):
        rep.start()
        for _ in range(100):
            if len([r for r in caplog.records if "== peer health ==" in r.getMessage()]) >= 2:
                break
            await asyncio.sleep(0.02)
        await rep.stop()
    blocks = [r.getMessage() for r in caplog.records if "== peer health ==" in r.getMessage()]
    assert len(blocks) >= 2
    assert len(blocks[0].splitlines()) <= MAX_TEXT_LINES
    assert "2 in pinset: 2 pinned" in blocks[0]
    assert "calls/s" in blocks[1]  # the second report has a previous one to compute rates from


async def test_reporter_draws_a_panel_on_a_tty() -> None:
    out = io.StringIO()
    rep = HealthReporter(FakeCluster(total=1), 60, stream=out, tty=True)
    snap = await rep.report()
    assert snap.pins.total == 1
    assert "pincluster health" in out.getvalue() and "1 in pinset" in out.getvalue()


def test_log_tail_keeps_the_last_error_only() -> None:
    tail = LogTail().attach()
    try:
        lg = logging.getLogger("pincluster.ipfshttp")
        lg.error("first failure: %s", "a")
        lg.warning("just a warning")
        lg.error("second failure\nwith a traceback line")
        logging.getLogger("elsewhere").error("not ours")
    finally:
        tail.detach()
    assert tail.last.endswith(" ipfshttp: second failure")
    logging.getLogger("pincluster.raft").error("after detach")
    assert "after detach" not in tail.last


class _Pinset:
    def __init__(self, pins: list[Pin]) -> None:
        self.pins = {p.cid.bytes: p for p in pins}

    async def get(self, cid: CID) -> Pin | None:
        return self.pins.get(cid.bytes)

    async def list(self) -> AsyncIterator[Pin]:
        for p in self.pins.values():
            yield p


async def test_tracker_status_counts_follow_operations() -> None:
    cids = [CID.v1(RAW, sha256_multihash(f"c{i}".encode())) for i in range(4)]
    pins = [Pin(cid=c, replication_factor_min=-1, replication_factor_max=-1) for c in cids]
    ipfs = FakeIPFSConnector(peer(), available=cids)
    ipfs.gate = asyncio.Event()
    ipfs.fail[cids[3]] = Unavailable("ipfs is down")
    me = peer()
    tr = StatelessPinTracker(StatelessTrackerConfig(concurrent_pins=1), me, ipfs, _Pinset(pins))
    await tr.start()
    try:
        for p in pins:
            await tr.track(p)
        await asyncio.sleep(0.05)
        counts = tr.status_counts()
        assert counts == {TrackerStatus.PINNING: 1, TrackerStatus.PIN_QUEUED: 3}
        assert tr.pin_queue_size() == 3
        ipfs.gate.set()
        for _ in range(100):
            if tr.status_counts() == {TrackerStatus.PIN_ERROR: 1}:
                break
            await asyncio.sleep(0.02)
        assert tr.status_counts() == {TrackerStatus.PIN_ERROR: 1}  # done operations are forgotten
    finally:
        await tr.shutdown()
