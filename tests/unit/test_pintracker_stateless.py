"""Unit tests of the stateless pin tracker with in-process fakes for IPFS and the pinset (no sleeps)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta

import pytest

from pincluster.config.sections import StatelessTrackerConfig
from pincluster.errors import NotFound, Unavailable
from pincluster.ipfsconn.interface import IPFSError, PinPage, ProgressCallback, pages_of
from pincluster.p2p.keys import PrivateKey
from pincluster.pintracker.interface import QUEUE_FULL_ERROR, PinsetReader, PinTracker, TrackerIPFS
from pincluster.pintracker.stateless import StatelessPinTracker
from pincluster.testing import FakeClock
from pincluster.types.cid import CID, RAW, sha256_multihash
from pincluster.types.gotime import from_unix_nano
from pincluster.types.models import Pin
from pincluster.types.multiaddr import Multiaddr
from pincluster.types.peer import PeerID
from pincluster.types.status import UNEXPECTEDLY_UNPINNED_ERROR, IPFSPinStatus, PinMode, PinType, TrackerStatus

S = TrackerStatus


def new_peer() -> PeerID:
    return PeerID.from_public_key(PrivateKey.generate_ed25519().public_key())


def cid_of(i: int) -> CID:
    return CID.v1(RAW, sha256_multihash(f"block {i}".encode()))


class FakeIPFS:
    """Pins in a dict; per-CID gates hold calls open; per-CID errors make calls fail."""

    def __init__(self) -> None:
        self.pins: dict[bytes, IPFSPinStatus] = {}
        self.gates: dict[bytes, asyncio.Event] = {}
        self.pin_errors: dict[bytes, Exception] = {}
        self.unpin_errors: dict[bytes, Exception] = {}
        self.ls_error: Exception | None = None
        self.calls: list[tuple[str, CID]] = []
        self.started: list[tuple[str, CID]] = []

    async def _gate(self, cid: CID) -> None:
        gate = self.gates.get(cid.bytes)
        if gate is not None:
            await gate.wait()

    async def pin(
        self,
        cid: CID,
        max_depth: int = -1,
        *,
        pin_update: CID | None = None,
        origins: Sequence[Multiaddr] = (),
        progress_cb: ProgressCallback | None = None,
    ) -> None:
        self.started.append(("pin", cid))
        await self._gate(cid)
        self.calls.append(("pin", cid))
        if (err := self.pin_errors.get(cid.bytes)) is not None:
            raise err
        self.pins[cid.bytes] = IPFSPinStatus.DIRECT if max_depth == 0 else IPFSPinStatus.RECURSIVE

    async def unpin(self, cid: CID) -> None:
        self.started.append(("unpin", cid))
        await self._gate(cid)
        self.calls.append(("unpin", cid))
        if (err := self.unpin_errors.get(cid.bytes)) is not None:
            raise err
        if cid.bytes not in self.pins:
            raise IPFSError("/api/v0/pin/rm", 500, "not pinned or pinned indirectly")
        del self.pins[cid.bytes]

    async def pin_ls_cid(self, cid: CID, max_depth: int = -1) -> IPFSPinStatus:
        if self.ls_error is not None:
            raise self.ls_error
        return self.pins.get(cid.bytes, IPFSPinStatus.UNPINNED)

    async def pin_ls(self, types: Sequence[str] = ("recursive", "direct")) -> AsyncIterator[tuple[CID, IPFSPinStatus]]:
        self.calls.append(("pin_ls", CID.from_bytes(b"\x01\x55\x00\x00")))
        if self.ls_error is not None:
            raise self.ls_error
        for raw, st in list(self.pins.items()):
            if st.value in types:
                yield CID.from_bytes(raw), st

    def pin_pages(self, types: Sequence[str] = ("recursive", "direct")) -> AsyncIterator[PinPage]:
        return pages_of(self.pin_ls(types))

    def pins_generation(self) -> int | None:
        return None


class FakePinset:
    def __init__(self) -> None:
        self.pins: dict[bytes, Pin] = {}

    def add(self, pin: Pin) -> Pin:
        self.pins[pin.cid.bytes] = pin
        return pin

    async def get(self, cid: CID) -> Pin | None:
        return self.pins.get(cid.bytes)

    async def list(self) -> AsyncIterator[Pin]:
        for p in list(self.pins.values()):
            yield p


class Env:
    def __init__(self, **cfg: object) -> None:
        self.clock = FakeClock()
        self.me = new_peer()
        self.other = new_peer()
        self.ipfs = FakeIPFS()
        self.pinset = FakePinset()
        self.tracker = StatelessPinTracker(
            StatelessTrackerConfig(**cfg),  # type: ignore[arg-type]
            self.me,
            self.ipfs,
            self.pinset,
            peername="me",
            clock=self.clock,
        )

    def pin(self, i: int, *, allocations: tuple[PeerID, ...] | None = None, mode: PinMode = PinMode.RECURSIVE,
            age_s: float = 0, type: PinType = PinType.DATA) -> Pin:
        rf = -1 if allocations is None else len(allocations)
        p = Pin(
            cid=cid_of(i),
            name=f"pin{i}",
            mode=mode,
            type=type,
            allocations=allocations or (),
            replication_factor_min=rf,
            replication_factor_max=rf,
            timestamp=from_unix_nano(self.clock.now_ns() - int(age_s * 1e9)),
        )
        return self.pinset.add(p)

    async def status(self, i: int) -> TrackerStatus:
        return (await self.tracker.status(cid_of(i))).status


async def settle(n: int = 20) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    e = Env()
    yield e
    await e.tracker.shutdown()


def test_protocols() -> None:
    e = Env()
    tracker: PinTracker = e.tracker  # checked statically by mypy
    ipfs: TrackerIPFS = e.ipfs
    pinset: PinsetReader = e.pinset
    assert tracker is e.tracker and ipfs is e.ipfs and pinset is e.pinset
    assert isinstance(e.tracker, PinTracker)
    assert isinstance(e.ipfs, TrackerIPFS)
    assert isinstance(e.pinset, PinsetReader)


async def test_pin_queued_pinning_pinned(env: Env) -> None:
    p = env.pin(1)
    await env.tracker.track(p)
    assert await env.status(1) is S.PIN_QUEUED
    assert env.tracker.pin_queue_size() == 1
    env.ipfs.gates[p.cid.bytes] = asyncio.Event()
    await env.tracker.start()
    await settle()
    info = await env.tracker.status(p.cid)
    assert info.status is S.PINNING and info.attempt_count == 1 and info.priority_pin
    assert env.tracker.pin_queue_size() == 0
    env.ipfs.gates[p.cid.bytes].set()
    await settle()
    info = await env.tracker.status(p.cid)
    assert info.status is S.PINNED and info.name == "pin1" and info.peername == "me" and info.peer == env.me
    assert len(env.tracker._ops) == 0  # success is forgotten: bounded memory


async def test_pin_error_carries_reason_and_attempts_then_recover(env: Env) -> None:
    p = env.pin(2)
    env.ipfs.pin_errors[p.cid.bytes] = RuntimeError("context deadline exceeded")
    await env.tracker.start()
    await env.tracker.track(p)
    await settle()
    info = await env.tracker.status(p.cid)
    assert info.status is S.PIN_ERROR and info.error == "context deadline exceeded" and info.attempt_count == 1
    info = await env.tracker.recover(p.cid)
    await settle()
    info = await env.tracker.status(p.cid)
    assert info.status is S.PIN_ERROR and info.attempt_count == 2  # attempts carry over
    del env.ipfs.pin_errors[p.cid.bytes]
    await env.tracker.recover(p.cid)
    await settle()
    assert await env.status(2) is S.PINNED


async def test_unpin_queued_unpinning_unpinned(env: Env) -> None:
    p = env.pin(3)
    env.ipfs.pins[p.cid.bytes] = IPFSPinStatus.RECURSIVE
    del env.pinset.pins[p.cid.bytes]
    await env.tracker.untrack(p.cid)
    assert await env.status(3) is S.UNPIN_QUEUED
    env.ipfs.gates[p.cid.bytes] = asyncio.Event()
    await env.tracker.start()
    await settle()
    assert await env.status(3) is S.UNPINNING
    env.ipfs.gates[p.cid.bytes].set()
    await settle()
    assert await env.status(3) is S.UNPINNED
    assert p.cid.bytes not in env.ipfs.pins


async def test_unpin_of_not_pinned_is_success(env: Env) -> None:
    await env.tracker.start()
    await env.tracker.untrack(cid_of(4))
    await settle()
    assert await env.status(4) is S.UNPINNED


async def test_unpin_error_and_recover(env: Env) -> None:
    c = cid_of(5)
    env.ipfs.pins[c.bytes] = IPFSPinStatus.RECURSIVE
    env.ipfs.unpin_errors[c.bytes] = RuntimeError("ipfs busy")
    await env.tracker.start()
    await env.tracker.untrack(c)
    await settle()
    info = await env.tracker.status(c)
    assert info.status is S.UNPIN_ERROR and info.error == "ipfs busy" and info.attempt_count == 1
    # not in the pinset, but failed operations are still listed and recoverable
    listed = [i async for i in env.tracker.status_all()]
    assert [(i.cid, i.status) for i in listed] == [(c, S.UNPIN_ERROR)]
    del env.ipfs.unpin_errors[c.bytes]
    await env.tracker.recover(c)
    await settle()
    assert await env.status(5) is S.UNPINNED


async def test_remote_pin_is_unpinned_and_shows_remote(env: Env) -> None:
    p = env.pin(6, allocations=(env.other,))
    env.ipfs.pins[p.cid.bytes] = IPFSPinStatus.RECURSIVE
    gate = env.ipfs.gates[p.cid.bytes] = asyncio.Event()
    task = asyncio.create_task(env.tracker.track(p))
    await settle()
    assert await env.status(6) is S.REMOTE  # while the unpin runs
    gate.set()
    await task
    assert p.cid.bytes not in env.ipfs.pins
    assert await env.status(6) is S.REMOTE
    assert len(env.tracker._ops) == 0


async def test_remote_unpin_failure_is_unpin_error_and_recoverable(env: Env) -> None:
    p = env.pin(7, allocations=(env.other,))
    env.ipfs.pins[p.cid.bytes] = IPFSPinStatus.RECURSIVE
    env.ipfs.unpin_errors[p.cid.bytes] = RuntimeError("nope")
    await env.tracker.track(p)
    info = await env.tracker.status(p.cid)
    assert info.status is S.UNPIN_ERROR and info.error == "nope"
    del env.ipfs.unpin_errors[p.cid.bytes]
    await env.tracker.start()
    await env.tracker.recover(p.cid)
    await settle()
    assert await env.status(7) is S.REMOTE and p.cid.bytes not in env.ipfs.pins


async def test_direct_pins_show_pinned(env: Env) -> None:
    p = env.pin(8, mode=PinMode.DIRECT)
    await env.tracker.start()
    await env.tracker.track(p)
    await settle()
    assert env.ipfs.pins[p.cid.bytes] is IPFSPinStatus.DIRECT
    assert await env.status(8) is S.PINNED
    listed = [i async for i in env.tracker.status_all()]
    assert [i.status for i in listed] == [S.PINNED]  # Go would say unexpectedly_unpinned


async def test_unexpectedly_unpinned_recover_and_recover_all(env: Env) -> None:
    a, b, c = env.pin(9), env.pin(10), env.pin(11)
    env.ipfs.pins[c.cid.bytes] = IPFSPinStatus.RECURSIVE
    env.ipfs.pins[b.cid.bytes] = IPFSPinStatus.INDIRECT
    info = await env.tracker.status(a.cid)
    assert info.status is S.UNEXPECTEDLY_UNPINNED and info.error == UNEXPECTEDLY_UNPINNED_ERROR
    statuses = {i.cid: i.status async for i in env.tracker.status_all()}
    assert statuses == {a.cid: S.UNEXPECTEDLY_UNPINNED, b.cid: S.UNEXPECTEDLY_UNPINNED, c.cid: S.PINNED}
    info = await env.tracker.recover(a.cid)
    assert info.status is S.PIN_QUEUED
    requeued = [i async for i in env.tracker.recover_all()]
    assert {i.cid for i in requeued} == {b.cid}  # a is already queued, c is fine
    await env.tracker.start()
    await settle()
    statuses = {i.cid: i.status async for i in env.tracker.status_all()}
    assert set(statuses.values()) == {S.PINNED}


async def test_recover_pinned_is_noop_and_unknown_is_not_found(env: Env) -> None:
    p = env.pin(12)
    env.ipfs.pins[p.cid.bytes] = IPFSPinStatus.RECURSIVE
    assert (await env.tracker.recover(p.cid)).status is S.PINNED
    assert len(env.tracker._ops) == 0
    with pytest.raises(NotFound, match=r"^pin is not part of the pinset$"):  # Go's text, exactly
        await env.tracker.recover(cid_of(999))


async def test_meta_pin_is_sharded_and_never_pinned(env: Env) -> None:
    p = env.pin(13, type=PinType.META)
    await env.tracker.start()
    await env.tracker.track(p)
    await settle()
    assert env.ipfs.calls == []
    assert await env.status(13) is S.SHARDED
    assert [i.status async for i in env.tracker.status_all()] == [S.SHARDED]


async def test_unknown_cid_is_unpinned(env: Env) -> None:
    info = await env.tracker.status(cid_of(14))
    assert info.status is S.UNPINNED and info.allocations is None


async def test_ipfs_error_is_cluster_error(env: Env) -> None:
    env.pin(15)
    env.ipfs.ls_error = RuntimeError("connection refused")
    info = await env.tracker.status(cid_of(15))
    assert info.status is S.CLUSTER_ERROR and "connection refused" in info.error
    with pytest.raises(Unavailable, match="connection refused"):
        [i async for i in env.tracker.status_all()]


async def test_queue_full_leaves_error() -> None:
    e = Env(max_pin_queue_size=2)
    for i in range(3):
        await e.tracker.track(e.pin(100 + i))
    assert [await e.status(100 + i) for i in range(3)] == [S.PIN_QUEUED, S.PIN_QUEUED, S.PIN_ERROR]
    info = await e.tracker.status(cid_of(102))
    assert info.error == QUEUE_FULL_ERROR
    await e.tracker.start()
    await settle()
    assert await e.status(100) is S.PINNED
    await e.tracker.recover(cid_of(102))  # room again: recover works
    await settle()
    assert await e.status(102) is S.PINNED
    await e.tracker.shutdown()


async def test_cancelled_entries_do_not_fill_the_queue() -> None:
    e = Env(max_pin_queue_size=2)
    a = e.pin(110)
    await e.tracker.track(a)
    del e.pinset.pins[a.cid.bytes]
    await e.tracker.untrack(a.cid)  # cancels the queued pin: its entry stays in the heap but is not live
    await e.tracker.track(e.pin(111))
    await e.tracker.track(e.pin(112))
    assert [await e.status(i) for i in (110, 111, 112)] == [S.UNPIN_QUEUED, S.PIN_QUEUED, S.PIN_QUEUED]
    assert e.tracker.pin_queue_size() == 2
    await e.tracker.start()
    await settle()
    assert e.tracker.pin_queue_size() == 0
    assert [await e.status(i) for i in (110, 111, 112)] == [S.UNPINNED, S.PINNED, S.PINNED]
    assert ("pin", a.cid) not in e.ipfs.started
    await e.tracker.shutdown()


async def test_priority_lane_and_demotion() -> None:
    e = Env(concurrent_pins=1, priority_pin_max_retries=1)
    blocker = e.pin(200)
    gate = e.ipfs.gates[blocker.cid.bytes] = asyncio.Event()
    await e.tracker.start()
    await e.tracker.track(blocker)
    await settle()
    old = e.pin(201, age_s=2 * 86400)  # older than priority_pin_max_age (24h)
    young = e.pin(202)
    await e.tracker.track(old)
    await e.tracker.track(young)
    assert not (await e.tracker.status(old.cid)).priority_pin
    assert (await e.tracker.status(young.cid)).priority_pin
    gate.set()
    await settle()
    order = [c for kind, c in e.ipfs.calls if kind == "pin"]
    assert order == [blocker.cid, young.cid, old.cid]
    # demotion: after more than priority_pin_max_retries attempts a young pin leaves the priority lane
    flaky = e.pin(203)
    e.ipfs.pin_errors[flaky.cid.bytes] = RuntimeError("fail")
    await e.tracker.track(flaky)
    await settle()
    await e.tracker.recover(flaky.cid)
    await settle()
    info = await e.tracker.status(flaky.cid)
    assert info.attempt_count == 2 and info.status is S.PIN_ERROR
    info = await e.tracker.recover(flaky.cid)
    assert info.status is S.PIN_QUEUED and not info.priority_pin
    await e.tracker.shutdown()


async def test_opposite_operation_cancels_running_one(env: Env) -> None:
    p = env.pin(300)
    gate = env.ipfs.gates[p.cid.bytes] = asyncio.Event()
    await env.tracker.start()
    await env.tracker.track(p)
    await settle()
    assert await env.status(300) is S.PINNING
    del env.pinset.pins[p.cid.bytes]
    await env.tracker.untrack(p.cid)
    await settle()
    assert ("pin", p.cid) not in env.ipfs.calls  # the running pin call was cancelled
    gate.set()
    await settle()
    assert await env.status(300) is S.UNPINNED
    assert p.cid.bytes not in env.ipfs.pins


async def test_same_operation_is_not_duplicated(env: Env) -> None:
    p = env.pin(301)
    await env.tracker.track(p)
    await env.tracker.track(p)
    assert env.tracker.pin_queue_size() == 1
    await env.tracker.start()
    await settle()
    assert [c for k, c in env.ipfs.calls if k == "pin"] == [p.cid]


async def test_status_all_filters(env: Env) -> None:
    a = env.pin(400)
    b = env.pin(401, allocations=(env.other,))
    env.ipfs.pins[a.cid.bytes] = IPFSPinStatus.RECURSIVE
    c = env.pin(402)
    env.ipfs.pin_errors[c.cid.bytes] = RuntimeError("x")
    await env.tracker.start()
    await env.tracker.track(c)
    await settle()
    assert [i.cid async for i in env.tracker.status_all(S.PINNED)] == [a.cid]
    assert [i.cid async for i in env.tracker.status_all(S.REMOTE)] == [b.cid]
    n_ls = sum(1 for k, _ in env.ipfs.calls if k == "pin_ls")
    assert [i.cid async for i in env.tracker.status_all(S.ERROR)] == [c.cid]
    assert [i.cid async for i in env.tracker.status_all(S.PIN_ERROR)] == [c.cid]
    assert sum(1 for k, _ in env.ipfs.calls if k == "pin_ls") == n_ls + 1  # PIN_ERROR alone needs no pin/ls
    assert len([i async for i in env.tracker.status_all()]) == 3


async def test_periodic_recover_loop() -> None:
    e = Env()
    e.tracker = StatelessPinTracker(StatelessTrackerConfig(), e.me, e.ipfs, e.pinset, clock=e.clock,
                                    recover_interval=timedelta(minutes=12))
    p = e.pin(500)
    await e.tracker.start()
    await settle()
    assert await e.status(500) is S.UNEXPECTEDLY_UNPINNED
    await e.clock.advance(11 * 60)
    assert await e.status(500) is S.UNEXPECTEDLY_UNPINNED
    await e.clock.advance(60)
    await settle()
    assert await e.status(500) is S.PINNED and p.cid.bytes in e.ipfs.pins
    await e.tracker.shutdown()


async def test_ipfs_info_in_pininfo() -> None:
    e = Env()
    ipfs_peer = new_peer()
    addr = Multiaddr("/ip4/1.2.3.4/tcp/4001")
    e.tracker = StatelessPinTracker(StatelessTrackerConfig(), e.me, e.ipfs, e.pinset, clock=e.clock,
                                    ipfs_info=lambda: (ipfs_peer, (addr,)))
    info = await e.tracker.status(cid_of(600))
    assert info.ipfs_peer_id == ipfs_peer and info.ipfs_peer_addresses == (addr,)
