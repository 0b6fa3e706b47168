"""In-process fakes of a running Cluster for the observe tests (a cluster with pins, Raft, peers, alerts).

Named ``test_observe_*`` to stay in the observe helper's paths; it holds fakes and one self-check.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pincluster.p2p.keys import PrivateKey
from pincluster.types.cid import CID, RAW, sha256_multihash
from pincluster.types.models import IPFSID, Alert, IPFSRepoStat, Metric, Pin
from pincluster.types.peer import PeerID
from pincluster.types.status import TrackerStatus


def peer() -> PeerID:
    return PeerID.from_public_key(PrivateKey.generate_ed25519().public_key())


@dataclass
class FakeRaftStatus:
    leader: str | None
    is_leader: bool
    term: int
    commit_index: int


class FakeState:
    def __init__(self, owner: FakeCluster) -> None:
        self.owner = owner

    async def count(self) -> int:
        return self.owner.total


class FakeConsensus:
    def __init__(self, owner: FakeCluster) -> None:
        self.state = FakeState(owner)
        self.owner = owner

    def status(self) -> FakeRaftStatus:
        o = self.owner
        leader = None if o.leader is None else f"{o.leader}@127.0.0.1:9098"
        return FakeRaftStatus(leader, o.leader == o.peer_id, 4, 99)


class FakeTracker:
    def __init__(self, ops: dict[str, int], queue: int) -> None:
        self.ops = {TrackerStatus[k.upper()]: v for k, v in ops.items()}
        self.queue = queue

    def status_counts(self) -> dict[TrackerStatus, int]:
        return dict(self.ops)

    def pin_queue_size(self) -> int:
        return self.queue


class FakePinset:
    def __init__(self, owner: FakeCluster) -> None:
        self.owner = owner

    async def list(self) -> AsyncIterator[Pin]:
        self.owner.walks += 1
        o = self.owner
        for i in range(o.total):
            cid = CID.v1(RAW, sha256_multihash(f"pin {i}".encode()))
            if i < o.remote:
                yield Pin(cid=cid, replication_factor_min=1, replication_factor_max=1, allocations=(o.others[0],))
            else:
                yield Pin(cid=cid, replication_factor_min=-1, replication_factor_max=-1)


class FakeMonitor:
    def __init__(self, owner: FakeCluster) -> None:
        self.owner = owner

    def metric_names(self) -> list[str]:
        return ["ping", "freespace", "tag:group"]

    async def latest_metrics(self, name: str) -> list[Metric]:
        o = self.owner
        if name == "ping":
            return [Metric(name="ping", peer=o.others[0], valid=True)]
        if name == "freespace":
            return [Metric(name=name, peer=o.peer_id, value="4000", weight=4000, valid=True),
                    Metric(name=name, peer=o.others[0], value="1", weight=1, valid=True)]  # fmt: skip
        if name == "tag:group":
            return [Metric(name=name, peer=o.peer_id, value="default", valid=True)]
        return []

    def recent_alerts(self) -> list[Alert]:
        return list(self.owner.alerts)


class FakeIPFS:
    def __init__(self) -> None:
        self.down = False

    async def id(self) -> IPFSID:
        if self.down:
            from pincluster.errors import Unavailable

            raise Unavailable("ipfshttp: connection refused (is the IPFS daemon running?)")
        return IPFSID(id=peer())

    async def repo_stat(self) -> IPFSRepoStat:
        return IPFSRepoStat(repo_size=1000, storage_max=5000)


@dataclass
class FakeCluster:
    """What ``health_snapshot`` reads from a Cluster, with settable values."""

    total: int = 0
    remote: int = 0
    ops: dict[str, int] = field(default_factory=dict)
    queue: int = 0
    peername: str = "peer0"
    walks: int = 0

    def __post_init__(self) -> None:
        self.peer_id = peer()
        self.others = [peer(), peer()]
        self.leader: PeerID | None = self.peer_id
        self.consensus = FakeConsensus(self)
        self.tracker = FakeTracker(self.ops, self.queue)
        self.pinset = FakePinset(self)
        self.monitor = FakeMonitor(self)
        self.ipfs = FakeIPFS()
        when = datetime(2026, 11, 26, 1, 2, 3, tzinfo=UTC)
        self.alerts = [Alert(name="ping", peer=self.others[1], triggered_at=when)]

    def set_pins(self, *, total: int, remote: int) -> None:
        self.total, self.remote = total, remote

    async def member_ids(self) -> list[PeerID]:
        return [self.peer_id, *self.others]


async def test_fake_cluster_is_consistent() -> None:
    c = FakeCluster(total=3, remote=1)
    pins = [p async for p in c.pinset.list()]
    assert sum(p.is_remote_pin(c.peer_id) for p in pins) == 1
    assert await c.consensus.state.count() == 3
