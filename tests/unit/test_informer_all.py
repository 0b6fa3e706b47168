"""Unit tests of the informers: the values, weights, validity and TTLs they report (spec §7.3.10)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import timedelta

from pincluster.config.sections import DiskInformerConfig, PinQueueInformerConfig, TagsInformerConfig
from pincluster.informer.disk import DiskInformer
from pincluster.informer.interface import Informer
from pincluster.informer.numpin import NumpinInformer
from pincluster.informer.pinqueue import PinQueueInformer
from pincluster.informer.tags import TagsInformer
from pincluster.testing import FakeClock
from pincluster.types.cid import CID, RAW, sha256_multihash
from pincluster.types.models import IPFSRepoStat
from pincluster.types.status import IPFSPinStatus

NS = 1_000_000_000


class FakeRepo:
    def __init__(self, size: int, maximum: int) -> None:
        self.stat = IPFSRepoStat(repo_size=size, storage_max=maximum)
        self.error: Exception | None = None

    async def repo_stat(self) -> IPFSRepoStat:
        if self.error is not None:
            raise self.error
        return self.stat

    async def pin_ls(self, types: Sequence[str] = ("recursive", "direct")) -> AsyncIterator[tuple[CID, IPFSPinStatus]]:
        if self.error is not None:
            raise self.error
        for i in range(7):
            yield CID.v1(RAW, sha256_multihash(bytes([i]))), IPFSPinStatus.RECURSIVE


class FakeQueue:
    def __init__(self, n: int) -> None:
        self.n = n

    def pin_queue_size(self) -> int:
        return self.n


async def test_freespace() -> None:
    clock = FakeClock()
    inf = DiskInformer(DiskInformerConfig(), FakeRepo(300, 1000), clock=clock)
    informers: list[Informer] = [  # checked statically by mypy
        inf,
        NumpinInformer(FakeRepo(0, 0)),
        PinQueueInformer(PinQueueInformerConfig(), FakeQueue(0)),
        TagsInformer(TagsInformerConfig()),
    ]
    assert all(isinstance(i, Informer) for i in informers)
    [m] = await inf.get_metrics()
    assert (m.name, m.value, m.weight, m.valid, m.partitionable) == ("freespace", "700", 700, True, False)
    assert m.expire == clock.now_ns() + 30 * NS


async def test_freespace_full_is_invalid_zero() -> None:
    [m] = await DiskInformer(DiskInformerConfig(), FakeRepo(1000, 1000), clock=FakeClock()).get_metrics()
    assert (m.value, m.weight, m.valid) == ("0", 0, False)


async def test_reposize() -> None:
    cfg = DiskInformerConfig(metric_type="reposize", metric_ttl=timedelta(seconds=5))
    clock = FakeClock()
    [m] = await DiskInformer(cfg, FakeRepo(300, 1000), clock=clock).get_metrics()
    assert (m.name, m.value, m.weight, m.valid) == ("reposize", "300", -300, True)
    assert m.expire == clock.now_ns() + 5 * NS


async def test_disk_error_gives_invalid_metric() -> None:
    repo = FakeRepo(1, 2)
    repo.error = RuntimeError("down")
    [m] = await DiskInformer(DiskInformerConfig(), repo, clock=FakeClock()).get_metrics()
    assert m.name == "freespace" and not m.valid


async def test_numpin() -> None:
    clock = FakeClock()
    repo = FakeRepo(0, 0)
    inf = NumpinInformer(repo, clock=clock)
    assert isinstance(inf, Informer)
    [m] = await inf.get_metrics()
    assert (m.name, m.value, m.valid) == ("numpin", "7", True)
    assert m.expire == clock.now_ns() + 10 * NS
    repo.error = RuntimeError("down")
    [m] = await inf.get_metrics()
    assert not m.valid


async def test_pinqueue_weight_buckets() -> None:
    q = FakeQueue(250_000)
    inf = PinQueueInformer(PinQueueInformerConfig(), q, clock=FakeClock())
    [m] = await inf.get_metrics()
    assert (m.name, m.value, m.weight, m.valid) == ("pinqueue", "250000", -2, True)
    q.n = 99_999
    [m] = await inf.get_metrics()
    assert m.weight == 0
    inf0 = PinQueueInformer(PinQueueInformerConfig(weight_bucket_size=0), q, clock=FakeClock())
    [m] = await inf0.get_metrics()
    assert m.weight == -99_999


async def test_tags() -> None:
    clock = FakeClock()
    cfg = TagsInformerConfig(tags={"zone": "eu", "group": "a"})
    ms = await TagsInformer(cfg, clock=clock).get_metrics()
    assert [(m.name, m.value, m.valid, m.partitionable) for m in ms] == [
        ("tag:group", "a", True, True),
        ("tag:zone", "eu", True, True),
    ]
    assert all(m.expire == clock.now_ns() + 30 * NS for m in ms)
    [none] = await TagsInformer(TagsInformerConfig(tags={}), clock=clock).get_metrics()
    assert none.name == "tag:none" and not none.valid
