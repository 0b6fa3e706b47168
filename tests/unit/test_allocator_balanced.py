"""Unit tests of allocation (spec §4.4), the balanced allocator and the closest-peer rule (§13.6)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import pytest

from pincluster.allocator.allocate import (
    Allocator,
    BadReplicationFactors,
    NotEnoughPeers,
    is_closest_peer,
    pins_to_repin,
    repin_after_alert,
    xor_distance,
)
from pincluster.allocator.balanced import BalancedAllocator
from pincluster.config.sections import BalancedAllocatorConfig
from pincluster.p2p.keys import PrivateKey
from pincluster.types.cid import CID, RAW, sha256_multihash
from pincluster.types.gotime import from_unix_nano
from pincluster.types.models import Alert, Metric, Pin
from pincluster.types.peer import PeerID

FAR = 2**62


def new_peer() -> PeerID:
    return PeerID.from_public_key(PrivateKey.generate_ed25519().public_key())


P = sorted((new_peer() for _ in range(6)), key=lambda p: p.bytes)
CID1 = CID.v1(RAW, sha256_multihash(b"x"))


class FakeMonitor:
    def __init__(self) -> None:
        self.metrics: dict[str, list[Metric]] = {}

    def put(self, name: str, peer: PeerID, value: str, weight: int = 0, partitionable: bool = False) -> None:
        self.metrics.setdefault(name, []).append(
            Metric(name=name, peer=peer, value=value, weight=weight, valid=True, partitionable=partitionable,
                   expire=FAR)
        )

    def free(self, peer: PeerID, space: int) -> None:
        self.put("freespace", peer, str(space), space)

    def tag(self, peer: PeerID, group: str) -> None:
        self.put("tag:group", peer, group, 0, True)

    async def latest_metrics(self, name: str) -> list[Metric]:
        return list(self.metrics.get(name, []))


def allocator(mon: FakeMonitor, by: tuple[str, ...] = ("freespace",), **kw: object) -> Allocator:
    return Allocator(mon, BalancedAllocator(BalancedAllocatorConfig(allocate_by=by)), **kw)  # type: ignore[arg-type]


async def test_everywhere_and_bad_factors() -> None:
    alloc = allocator(FakeMonitor())
    assert await alloc.allocate(CID1, (), -1, -1) == ()
    with pytest.raises(BadReplicationFactors, match="bad replication factors: 1/-1"):
        await alloc.allocate(CID1, (), 1, -1)


async def test_freespace_order_and_max() -> None:
    mon = FakeMonitor()
    for i, space in enumerate([10, 50, 30, 40]):
        mon.free(P[i], space)
    assert await allocator(mon).allocate(CID1, (), 2, 3) == (P[1], P[3], P[2])


async def test_not_enough_peers_error_text() -> None:
    mon = FakeMonitor()
    mon.free(P[0], 10)
    mon.free(P[1], 10)
    with pytest.raises(NotEnoughPeers) as err:
        await allocator(mon).allocate(CID1, (), 3, 4)
    assert str(err.value) == (
        "not enough peers to allocate CID. Needed at least: 3. Wanted at most: 4. Available candidates: 2. "
        "See logs for more info."
    )


async def test_keep_current_when_enough() -> None:
    mon = FakeMonitor()
    for i, space in enumerate([10, 20, 1000]):
        mon.free(P[i], space)
    assert await allocator(mon).allocate(CID1, (P[0], P[1]), 2, 3) == (P[0], P[1])


async def test_keep_current_never_exceeds_max() -> None:
    mon = FakeMonitor()
    mon.free(P[1], 10)
    mon.free(P[2], 10)
    # P[0] has no metrics (down); P[1], P[2] meet min and max: the down one goes
    assert await allocator(mon).allocate(CID1, (P[0], P[1], P[2]), 2, 2) == (P[1], P[2])


async def test_drop_extras_over_max() -> None:
    mon = FakeMonitor()
    for i in range(3):
        mon.free(P[i], 10)
    assert await allocator(mon).allocate(CID1, (P[2], P[0], P[1]), 1, 2) == (P[2], P[0])


async def test_current_plus_new_when_below_min() -> None:
    mon = FakeMonitor()
    for i, space in enumerate([10, 20, 30, 5]):
        mon.free(P[i], space)
    # P[4] is allocated but has no metrics (down): it is dropped, the valid current peer kept
    assert await allocator(mon).allocate(CID1, (P[0], P[4]), 2, 3) == (P[0], P[2], P[1])


async def test_repin_blacklists_failed_peer() -> None:
    mon = FakeMonitor()
    for i, space in enumerate([10, 20, 30]):
        mon.free(P[i], space)
    got = await allocator(mon).allocate(CID1, (P[2], P[1]), 2, 2, blacklist={P[2]})
    assert got == (P[1], P[0])
    # enough valid peers left: keep them, but never the blacklisted one
    got = await allocator(mon).allocate(CID1, (P[2], P[1], P[0]), 2, 3, blacklist={P[2]})
    assert got == (P[1], P[0])


async def test_priority_peers_first() -> None:
    mon = FakeMonitor()
    for i, space in enumerate([100, 200, 1]):
        mon.free(P[i], space)
    got = await allocator(mon).allocate(CID1, (), 2, 2, priority=(P[2], P[5]))
    assert got == (P[2], P[1])  # P[5] has no metrics: ignored


async def test_peer_needs_every_metric() -> None:
    mon = FakeMonitor()
    mon.free(P[0], 10)
    mon.free(P[1], 20)
    mon.tag(P[0], "a")
    got = await allocator(mon, ("tag:group", "freespace")).allocate(CID1, (), 1, 2)
    assert got == (P[0],)


async def test_tag_partitions_spread_copies() -> None:
    mon = FakeMonitor()
    groups = {P[0]: "eu", P[1]: "eu", P[2]: "us", P[3]: "us", P[4]: "asia"}
    spaces = {P[0]: 100, P[1]: 90, P[2]: 50, P[3]: 60, P[4]: 10}
    for p, g in groups.items():
        mon.tag(p, g)
        mon.free(p, spaces[p])
    alloc = allocator(mon, ("tag:group", "freespace"))
    # groups by aggregated free space: eu (190) > us (110) > asia (10); best peer of each group in turn
    assert await alloc.allocate(CID1, (), 3, 3) == (P[0], P[3], P[4])
    assert await alloc.allocate(CID1, (), 5, 5) == (P[0], P[3], P[4], P[1], P[2])


def test_balanced_partition_ties_by_value() -> None:
    b = BalancedAllocator(BalancedAllocatorConfig(allocate_by=("tag:group",)))
    ms = [Metric(name="tag:group", peer=P[i], value=v, valid=True, partitionable=True)
          for i, v in enumerate(["b", "a", "b", "a"])]
    order = b.allocate(CID1, {}, {"tag:group": ms}, {})
    assert order == [P[1], P[0], P[3], P[2]]  # "a" before "b", alternating


async def test_trusted_filters() -> None:
    mon = FakeMonitor()
    for i in range(3):
        mon.free(P[i], 10 * (i + 1))
    trusted = {P[0]}
    only_trusted = allocator(mon, is_trusted=lambda p: p in trusted, pin_only_on_trusted_peers=True)
    assert await only_trusted.allocate(CID1, (), 1, 3) == (P[0],)
    only_untrusted = allocator(mon, is_trusted=lambda p: p in trusted, pin_only_on_untrusted_peers=True)
    assert await only_untrusted.allocate(CID1, (), 1, 3) == (P[2], P[1])


async def test_block_allocate_everywhere_uses_ping() -> None:
    mon = FakeMonitor()
    mon.put("ping", P[0], "{}")
    mon.put("ping", P[1], "{}")
    mon.free(P[0], 5)
    alloc = allocator(mon)
    assert await alloc.block_allocate(CID1, -1, -1) == (P[0], P[1])
    assert await alloc.block_allocate(CID1, 1, 1) == (P[0],)
    with pytest.raises(NotEnoughPeers):
        await allocator(FakeMonitor()).block_allocate(CID1, -1, -1)


def test_xor_distance_and_closest_peer() -> None:
    d = xor_distance(P[0], CID1)
    a = hashlib.blake2b(P[0].bytes, digest_size=32).digest()
    b = hashlib.blake2b(CID1.bytes, digest_size=32).digest()
    assert d == bytes(x ^ y for x, y in zip(a, b, strict=True))
    for n in range(20):
        c = CID.v1(RAW, sha256_multihash(str(n).encode()))
        closest = [p for p in P if is_closest_peer(p, c, P)]
        assert len(closest) == 1
        assert closest[0] == min(P, key=lambda p: xor_distance(p, c))
        # excluding the closest one hands the role to the next closest
        nxt = [p for p in P if p != closest[0] and is_closest_peer(p, c, P, exclude=(closest[0],))]
        assert nxt == [sorted(P, key=lambda p: xor_distance(p, c))[1]]


async def test_pins_to_repin_only_one_peer_acts() -> None:
    failed = P[0]
    pins = [Pin(cid=CID.v1(RAW, sha256_multihash(str(i).encode())), allocations=(failed, P[1]),
                replication_factor_min=2, replication_factor_max=2) for i in range(30)]
    pins.append(Pin(cid=CID1, allocations=(P[1], P[2]), replication_factor_min=2, replication_factor_max=2))

    async def pinset() -> AsyncIterator[Pin]:
        for p in pins:
            yield p

    alert = Alert(name="ping", peer=failed, valid=True, triggered_at=from_unix_nano(1))
    chosen: dict[bytes, int] = {}
    for me in P[1:]:
        async for pin in pins_to_repin(alert, pinset(), me, P):
            chosen[pin.cid.bytes] = chosen.get(pin.cid.bytes, 0) + 1
    assert len(chosen) == 30 and set(chosen.values()) == {1}  # each affected pin re-pinned by exactly one peer
    other = Alert(name="freespace", peer=failed, triggered_at=from_unix_nano(1))
    assert [p async for p in pins_to_repin(other, pinset(), P[1], P)] == []


async def test_repin_after_alert_end_to_end() -> None:
    """Alert → closest peer → allocate with the failed peer blacklisted; failures do not stop the rest."""
    failed = P[0]
    mon = FakeMonitor()
    for i, p in enumerate(P[1:]):
        mon.free(p, 100 + i)
    alloc = allocator(mon)
    pins = [Pin(cid=CID.v1(RAW, sha256_multihash(str(i).encode())), allocations=(failed, P[1]),
                replication_factor_min=2, replication_factor_max=2) for i in range(40)]

    async def pinset() -> AsyncIterator[Pin]:
        for p in pins:
            yield p

    new_allocs: dict[bytes, tuple[PeerID, ...]] = {}

    async def repin(pin: Pin, bad: PeerID) -> None:
        if len(new_allocs) == 3:
            new_allocs[b"boom"] = ()
            raise RuntimeError("consensus unavailable")
        got = await alloc.allocate(pin.cid, pin.allocations, pin.replication_factor_min,
                                   pin.replication_factor_max, blacklist={bad})
        new_allocs[pin.cid.bytes] = got

    alert = Alert(name="ping", peer=failed, valid=True, triggered_at=from_unix_nano(1))
    total_done = total_failed = 0
    for me in P[1:]:
        d, f = await repin_after_alert(alert, pinset(), me, P, repin, disable_repinning=False)
        total_done, total_failed = total_done + d, total_failed + f
    assert (total_done, total_failed) == (39, 1)
    for cid, allocs in new_allocs.items():
        if cid != b"boom":
            assert failed not in allocs and len(allocs) == 2 and allocs[0] == P[1]
    assert await repin_after_alert(alert, pinset(), P[1], P, repin, disable_repinning=True) == (0, 0)
