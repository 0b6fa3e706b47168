"""Status listings from compact rows (``status_pages``/``StatusAllRows`` + ``pintracker.listing``) must give the
same NDJSON, byte for byte, as the object path: each tracker's ``status_all`` PinInfos merged per CID with
``GlobalPinInfo.from_pin_infos`` (in member order) and written with ``to_json``."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from test_pintracker_stateless import FakeIPFS, new_peer, settle

from pincluster.config.sections import StatelessTrackerConfig
from pincluster.errors import Unavailable
from pincluster.pintracker.heads import HeadCache
from pincluster.pintracker.listing import PeerEntries, local_lines, merged_lines, sparse_lines
from pincluster.pintracker.rows import StatusRows
from pincluster.pintracker.stateless import IPFSInfo, StatelessPinTracker, _MultihashIndex
from pincluster.rpc.core import decoder_for, encode
from pincluster.testing import FakeClock
from pincluster.types.cid import CID, DAG_PB, RAW, sha256_multihash
from pincluster.types.codec import StoredPin, decode_state, pin_to_state, to_json
from pincluster.types.gotime import from_unix_nano
from pincluster.types.models import GlobalPinInfo, Pin, PinInfo
from pincluster.types.multiaddr import Multiaddr
from pincluster.types.peer import PeerID
from pincluster.types.status import IPFSPinStatus, PinMode, PinType, TrackerStatus

S = TrackerStatus
NAMES = ["", "plain", "<b>&amp;", "ünï ☃", 'q"\\', "sep\u2028"]


class SortedPinset:
    """The shared pinset, listed in CID-bytes order as the state store lists it."""

    def __init__(self) -> None:
        self.pins: dict[bytes, Pin] = {}

    async def get(self, cid: CID) -> Pin | None:
        return self.pins.get(cid.bytes)

    async def list(self) -> AsyncIterator[Pin]:
        for key in sorted(self.pins):
            yield self.pins[key]


def make_pins(rnd: random.Random, peers: list[PeerID], n: int) -> list[Pin]:
    pins = []
    for i in range(n):
        mh = sha256_multihash(b"pin %d" % i)
        cid = rnd.choice([CID(mh), CID.v1(RAW, mh), CID.v1(DAG_PB, mh)])
        everywhere = rnd.random() < 0.2
        allocs = () if everywhere else tuple(rnd.sample(peers, rnd.randint(1, 3)))
        rf = -1 if everywhere else len(allocs)
        pins.append(Pin(
            cid=cid, name=rnd.choice(NAMES), mode=rnd.choice([PinMode.RECURSIVE, PinMode.DIRECT]),
            type=PinType.META if rnd.random() < 0.05 else PinType.DATA, allocations=allocs,
            replication_factor_min=rf, replication_factor_max=rf,
            metadata=rnd.choice([None, {"k": "v<&>"}]),
            origins=rnd.choice([(), (Multiaddr("/ip4/1.2.3.4/tcp/4001"),)]),
            timestamp=from_unix_nano(1_700_000_000_000_000_000 + i * 1_000_123_000),  # µs, as stored
        ))
    return pins


class Cluster3:
    def __init__(self, seed: int, n: int = 300) -> None:
        rnd = random.Random(seed)
        self.clock = FakeClock()
        self.peers = [new_peer() for _ in range(3)]
        self.pinset = SortedPinset()
        self.pins = make_pins(rnd, self.peers, n)
        for p in self.pins:
            self.pinset.pins[p.cid.bytes] = p
        self.ipfs = [FakeIPFS() for _ in self.peers]
        self.arrived: dict[bytes, Pin] | None = None  # pins this peer's pinset gets during a listing
        addrs = (Multiaddr("/ip4/127.0.0.1/tcp/4001"),)
        def info_of(peer: PeerID) -> IPFSInfo:
            return lambda: (peer, addrs)

        self.trackers = [
            StatelessPinTracker(StatelessTrackerConfig(), peer, ipfs, self.pinset, peername=f"peer<{i}>",
                                clock=self.clock, ipfs_info=info_of(peer) if i == 1 else None)
            for i, (peer, ipfs) in enumerate(zip(self.peers, self.ipfs, strict=True))
        ]
        for p in self.pins:  # most allocated pins are pinned; some are not (unexpectedly_unpinned)
            for i, peer in enumerate(self.peers):
                if (p.is_pin_everywhere or peer in p.allocations) and rnd.random() < 0.85:
                    st = IPFSPinStatus.DIRECT if p.max_depth == 0 and rnd.random() < 0.5 else IPFSPinStatus.RECURSIVE
                    self.ipfs[i].pins[p.cid.bytes] = st

    async def add_operations(self) -> None:
        """A failed pin on peer 0, a queued pin on peer 2, an unpin in progress outside the pinset on 1 and 2."""
        t0, _, t2 = self.trackers
        bad = self.pins[5].replace(allocations=tuple(self.peers), replication_factor_min=3,
                                   replication_factor_max=3)
        self.pinset.pins[bad.cid.bytes] = bad
        self.ipfs[0].pin_errors[bad.cid.bytes] = RuntimeError("boom <&>")
        await t0.start()
        await t0.track(bad)
        await settle()
        await t2.track(self.pins[7].replace(allocations=(self.peers[2],), replication_factor_min=1,
                                            replication_factor_max=1))
        gone = CID.v1(RAW, sha256_multihash(b"unpinned"))
        for i in (1, 2):
            self.ipfs[i].pins[gone.bytes] = IPFSPinStatus.RECURSIVE
            self.ipfs[i].gates[gone.bytes] = asyncio.Event()
            await self.trackers[i].start()
            await self.trackers[i].untrack(gone)
        await settle()

    async def shutdown(self) -> None:
        for i in (1, 2):
            for g in self.ipfs[i].gates.values():
                g.set()
        for t in self.trackers:
            await t.shutdown()


def lag(c: Cluster3) -> tuple[dict[bytes, Pin], SortedPinset]:
    """Pinsets as Raft lag makes them: member 1 lacks every 97th pin, member 0 (this peer) every 211th, which
    arrive in its pinset during the listing. Returns the whole pinset and member 1's."""
    full = dict(c.pinset.pins)
    keys = sorted(full)
    lagging = SortedPinset()
    lagging.pins = {k: full[k] for i, k in enumerate(keys) if i % 97 != 5}
    c.trackers[1]._pinset = lagging
    c.pinset.pins = {k: full[k] for i, k in enumerate(keys) if i % 211 != 9}
    c.arrived = full
    return full, lagging


async def old_merged(c: Cluster3, flt: TrackerStatus) -> bytes:
    by_cid: dict[bytes, list[PinInfo]] = {}
    for t in c.trackers:
        async for info in t.status_all(flt):
            by_cid.setdefault(info.cid.bytes, []).append(info)
    return b"".join(to_json(GlobalPinInfo.from_pin_infos(by_cid[k])) + b"\n" for k in sorted(by_cid))


async def wire(gen: AsyncIterator[StatusRows]) -> AsyncIterator[list[Any]]:
    """What RPC.stream_batches gives the merging peer: the batches after a msgpack round trip."""
    dec = decoder_for(StatusRows)
    async for batch in gen:
        yield [dec.decode(encode(batch))]


def entries(t: StatelessPinTracker) -> PeerEntries:
    name, ipfs_id, addrs = t.identity()
    return PeerEntries(t.peer, name, ipfs_id, addrs)


def lookups(c: Cluster3) -> tuple[Callable[[PeerID], Awaitable[PeerEntries]],
                                   Callable[[bytes], Awaitable[StoredPin | None]]]:
    """What the merge asks the cluster: a member's identity, and a pin from the pinset (or one that arrived)."""
    by_peer = {t.peer: t for t in c.trackers}

    async def entries_of(peer: PeerID) -> PeerEntries:
        return entries(by_peer[peer])

    async def stored_of(key: bytes) -> StoredPin | None:
        pin = c.pinset.pins.get(key) or (c.arrived or {}).get(key)
        return None if pin is None else decode_state(pin_to_state(pin))

    return entries_of, stored_of


async def new_merged(c: Cluster3, flt: TrackerStatus, remotes: dict[PeerID, AsyncIterator[list[Any]]] | None = None,
                     compact: bool = True) -> bytes:
    t0 = c.trackers[0]
    entries_of, stored_of = lookups(c)
    if remotes is None:
        remotes = {t.peer: wire(t.status_rows(flt, compact=compact)) for t in c.trackers[1:]}
    out = b""
    every = not t0.only_operations(flt)  # as the Cluster does: op-only filters read the few pins one by one
    async for chunk in merged_lines(c.peers, t0.peer, t0.status_pages(flt, every=every), entries(t0), remotes,
                                    entries_of, stored_of, c.clock.now_ns):
        out += chunk
    return out


FILTERS = [S.UNDEFINED, S.PINNED, S.REMOTE, S.UNEXPECTEDLY_UNPINNED, S.PIN_ERROR | S.UNPINNING,
           S.PIN_QUEUED, S.SHARDED | S.PINNED]


@pytest.mark.parametrize("compact", [True, False], ids=["compact", "rows"])
@pytest.mark.parametrize("ops", [False, True])
async def test_merged_listing_is_byte_identical(ops: bool, compact: bool) -> None:
    """Remote members answering in compact form (StatusAllCompact) or in rows only (StatusAllRows, older
    peers) give the same lines as the object path."""
    c = Cluster3(seed=1 + ops)
    try:
        if ops:
            await c.add_operations()
        for flt in FILTERS:
            old = await old_merged(c, flt)
            new = await new_merged(c, flt, compact=compact)
            if ops:  # operations outside the pinset come after a peer's pinset rows: the order may differ
                assert sorted(new.splitlines()) == sorted(old.splitlines()), flt
            else:
                assert new == old, flt
            if flt == S.UNDEFINED:
                assert new.count(b"\n") == len(c.pinset.pins) + (1 if ops else 0)
    finally:
        await c.shutdown()


@pytest.mark.parametrize("compact", [True, False], ids=["compact", "rows"])
async def test_merged_listing_of_a_large_pinset_when_peers_lag(compact: bool) -> None:
    """Past the batch sizes, and with pinsets that differ as Raft lag makes them: a member without some pins,
    and this peer without others (they arrive during the listing). Aligned stretches take the fast path and
    the rest the per-CID merge; the lines are still those of the object path."""
    c = Cluster3(seed=7, n=1500)
    try:
        lag(c)
        for flt in (S.UNDEFINED, S.PINNED, S.REMOTE | S.UNEXPECTEDLY_UNPINNED):
            old = await old_merged(c, flt)
            new = await new_merged(c, flt, compact=compact)
            assert new == old, flt
            if flt == S.UNDEFINED:
                assert new.count(b"\n") == 1500
    finally:
        await c.shutdown()


async def test_local_listing_is_byte_identical() -> None:
    c = Cluster3(seed=3)
    try:
        await c.add_operations()
        for t in c.trackers:
            for flt in FILTERS:
                old = b"".join([to_json(i.to_global()) + b"\n" async for i in t.status_all(flt)])
                new = b"".join([chunk async for chunk in local_lines(t.status_pages(flt), entries(t))])
                assert new == old, (t.peername, flt)
    finally:
        await c.shutdown()


async def _failing() -> AsyncIterator[list[Any]]:
    raise Unavailable("connection refused")
    yield []  # pragma: no cover


async def test_failed_member_shows_cluster_error() -> None:
    c = Cluster3(seed=4)
    try:
        t1 = c.trackers[1]
        remotes = {t1.peer: wire(t1.status_rows(S.UNDEFINED)), c.peers[2]: _failing()}
        out = await new_merged(c, S.UNDEFINED, remotes)
        lines = out.splitlines()
        assert len(lines) == len(c.pinset.pins)
        for line in lines:
            assert f'"{c.peers[2]}":'.encode() in line
            assert b'"status":"cluster_error"' in line and b"connection refused" in line
    finally:
        await c.shutdown()


async def test_every_member_failing_is_unavailable() -> None:
    c = Cluster3(seed=5)
    try:
        c.ipfs[0].ls_error = RuntimeError("ipfs down")
        remotes = {c.peers[1]: _failing(), c.peers[2]: _failing()}
        with pytest.raises(Unavailable):
            await new_merged(c, S.UNDEFINED, remotes)
    finally:
        await c.shutdown()


@pytest.mark.parametrize("n", [1, 17, 1000, 40_000])
def test_multihash_index(n: int) -> None:
    idx = _MultihashIndex()
    mhs = [sha256_multihash(b"%d" % i) for i in range(2 * n)]
    # CIDv0 is the multihash itself; a CIDv1 of any codec holds the same multihash
    idx.add_cids([mh if i % 4 == 0 else b"\x01\x70" + mh for i, mh in enumerate(mhs) if i % 2 == 0])
    idx.freeze()
    assert len(idx) == n
    assert all(mh in idx for mh in mhs[::2])
    assert not any(mh in idx for mh in mhs[1::2])
    assert sha256_multihash(b"x") not in _MultihashIndex()
    assert idx.holds(mhs) == [i % 2 == 0 for i in range(2 * n)]  # by columns, as a listing page asks
    assert _MultihashIndex().holds(mhs[:3]) == [False] * len(mhs[:3]) and idx.holds([]) == []


async def test_ipfs_pin_index_is_kept_while_the_node_pins_do_not_change() -> None:
    """With a connector that knows when its node's pins change (the embedded node), a listing reuses the
    last listing's index of them; a change makes the next listing read them again, and its statuses show it."""
    c = Cluster3(seed=9)
    try:
        t0, ipfs = c.trackers[0], c.ipfs[0]
        generation = [5]
        reads: list[int] = []
        real_pages = ipfs.pin_pages

        def pin_pages(types: Any = ("recursive", "direct")) -> Any:
            reads.append(generation[0])
            return real_pages(types)

        ipfs.pins_generation = lambda: generation[0]  # type: ignore[method-assign]
        ipfs.pin_pages = pin_pages  # type: ignore[method-assign]
        first = b"".join([chunk async for chunk in local_lines(t0.status_pages(), entries(t0))])
        again = b"".join([chunk async for chunk in local_lines(t0.status_pages(), entries(t0))])
        assert reads == [5] and again == first
        mine = next(k for k, st in ipfs.pins.items() if st is IPFSPinStatus.RECURSIVE)
        del ipfs.pins[mine]  # the node loses a pin: its pins change, and so does the generation
        generation[0] += 1
        after = b"".join([chunk async for chunk in local_lines(t0.status_pages(), entries(t0))])
        assert reads == [5, 6] and after != first
        assert after.count(b"unexpectedly_unpinned") == first.count(b"unexpectedly_unpinned") + 1
    finally:
        await c.shutdown()


async def test_rows_of_an_older_peer_come_from_status_all_rows() -> None:
    """A peer without ``StatusAllCompact`` (an older version) is asked ``StatusAllRows``; a peer that has it
    is asked nothing else, and errors other than an unknown method are not retried."""
    from types import SimpleNamespace

    from pincluster.cluster import Cluster
    from pincluster.rpc.errors import UnknownMethod

    asked: list[str] = []
    batch = StatusRows(ts_ns=1, rows=[(b"k", int(S.PINNED), None, "", 0, False, True)])

    def rpc_for(has_compact: bool, error: Exception | None = None) -> Any:
        def stream_batches(peer: PeerID, method: str, arg: int, **_: Any) -> AsyncIterator[list[StatusRows]]:
            async def gen() -> AsyncIterator[list[StatusRows]]:
                asked.append(method)
                if error is not None:
                    raise error
                if method.endswith("Compact") and not has_compact:
                    raise UnknownMethod(f"peer {peer} has no RPC method {method}")
                yield [batch]
            return gen()
        return SimpleNamespace(stream_batches=stream_batches)

    peer = new_peer()
    got = [b async for b in Cluster._status_rows_of(SimpleNamespace(rpc=rpc_for(False)), peer, S.UNDEFINED)]
    assert got == [[batch]] and asked == ["PinTracker.StatusAllCompact", "PinTracker.StatusAllRows"]
    asked.clear()
    got = [b async for b in Cluster._status_rows_of(SimpleNamespace(rpc=rpc_for(True)), peer, S.UNDEFINED)]
    assert got == [[batch]] and asked == ["PinTracker.StatusAllCompact"]
    asked.clear()
    with pytest.raises(Unavailable):
        _ = [b async for b in Cluster._status_rows_of(
            SimpleNamespace(rpc=rpc_for(True, Unavailable("down"))), peer, S.UNDEFINED)]
    assert asked == ["PinTracker.StatusAllCompact"]


# --- unfiltered merged listings from sparse rows (StatusAllSparse + sparse_lines) ------------------------------
async def sparse_wire(gen: AsyncIterator[StatusRows], sparse: bool = True) -> AsyncIterator[tuple[bool, list[Any]]]:
    async for batches in wire(gen):
        yield sparse, batches


async def new_sparse(c: Cluster3, remotes: dict[PeerID, AsyncIterator[tuple[bool, list[Any]]]] | None = None,
                     ) -> bytes:
    t0 = c.trackers[0]
    entries_of, stored_of = lookups(c)
    if remotes is None:
        remotes = {t.peer: sparse_wire(t.status_rows_sparse()) for t in c.trackers[1:]}
    chunks = [chunk async for chunk in sparse_lines(c.peers, t0.peer, t0.listing_pages(), entries(t0), remotes,
                                                    entries_of, stored_of, c.clock.now_ns)]
    return b"".join(chunks)


@pytest.mark.parametrize("n", [300, 2600])
@pytest.mark.parametrize("ops", [False, True])
async def test_sparse_listing_is_byte_identical(ops: bool, n: int) -> None:
    """The other members send only the pins they hold and their operations; this peer writes their remote
    and sharded entries itself. The lines are those of the object path (random allocations, everywhere and
    metadata pins, pinned and unexpectedly unpinned, failed and queued operations, an unpin outside the
    pinset), past the page and batch sizes."""
    c = Cluster3(seed=11 + ops, n=n)
    try:
        if ops:
            await c.add_operations()
        old = await old_merged(c, S.UNDEFINED)
        new = await new_sparse(c)
        if ops:  # an operation outside the pinset comes after the pinset's lines: the order may differ
            assert sorted(new.splitlines()) == sorted(old.splitlines())
        else:
            assert new == old
        assert new.count(b"\n") == n + (1 if ops else 0)
        # the members sent fewer rows than there are pins: those they hold, and their operations
        for t in c.trackers[1:]:
            sent = sum([len(b.keys) + len(b.rows) async for b in t.status_rows_sparse()])
            held = sum(1 for p in c.pins if p.type is not PinType.META
                       and (p.is_pin_everywhere or t.peer in p.allocations))
            assert sent <= held + len(t._ops) and sent < n
    finally:
        await c.shutdown()


async def test_sparse_listing_with_the_head_cache(tmp_path: Path) -> None:
    """Line heads kept between listings (``pintracker.heads``) give the same bytes; after a pin is renamed, one
    removed and two added, only the renamed and added pins' heads are formatted again."""
    c = Cluster3(seed=5, n=2600)
    cache = HeadCache(tmp_path / "listing-cache.sqlite")
    await cache.open()
    c.trackers[0].heads = cache
    try:
        assert await new_sparse(c) == await old_merged(c, S.UNDEFINED)
        assert cache.last_counts == (0, 2600, 0)
        assert await new_sparse(c) == await old_merged(c, S.UNDEFINED)
        assert cache.last_counts == (2600, 0, 0)
        keys = sorted(c.pinset.pins)
        c.pinset.pins[keys[100]] = c.pinset.pins[keys[100]].replace(name="renamed")
        del c.pinset.pins[keys[2000]]
        for i in (1, 2):
            new = c.pins[i].replace(cid=CID.v1(RAW, sha256_multihash(b"added %d" % i)))
            c.pinset.pins[new.cid.bytes] = new
        listed = await new_sparse(c)
        assert listed == await old_merged(c, S.UNDEFINED) and b'"name":"renamed"' in listed
        assert cache.last_counts == (2598, 3, 0)
    finally:
        await cache.close()
        await c.shutdown()


async def test_sparse_listing_of_a_member_sending_every_row() -> None:
    """A member without ``StatusAllSparse`` (an older version) sends every row: missing rows then mean it does
    not have the pin, as in ``merged_lines``."""
    c = Cluster3(seed=13)
    try:
        await c.add_operations()
        remotes = {t.peer: sparse_wire(t.status_rows(S.UNDEFINED, compact=True), sparse=False)
                   for t in c.trackers[1:]}
        new = await new_sparse(c, remotes)
        assert sorted(new.splitlines()) == sorted((await old_merged(c, S.UNDEFINED)).splitlines())
    finally:
        await c.shutdown()


async def test_sparse_listing_when_peers_lag() -> None:
    """Pinsets that differ as Raft lag makes them: member 1 lacks some pins, this peer lacks others (they arrive
    during the listing: written from the pinset when read, in CID order). A pin member 1 lacks shows the
    status this peer derives for it there (remote, sharded) where the object path shows no entry; every other
    entry is the object path's."""
    c = Cluster3(seed=7, n=1500)
    try:
        full, lagging = lag(c)
        old = {json.loads(line)["cid"]: line for line in (await old_merged(c, S.UNDEFINED)).splitlines()}
        listed = (await new_sparse(c)).splitlines()
        new = {json.loads(line)["cid"]: line for line in listed}
        assert list(new) == sorted(new, key=lambda text: CID.decode(text).bytes)  # in CID order
        # A pin this peer lacks is listed when another member holds it: one no other member holds is not
        # (they send nothing for it), where the object path lists the others' "remote".
        for text in old.keys() - new.keys():
            key = CID.decode(text).bytes
            pin = full[key]
            assert key not in c.pinset.pins
            assert pin.type is PinType.META or not (pin.is_pin_everywhere or set(pin.allocations) - {c.peers[0]})
        assert 0 < len(old) - len(new) <= 1500 // 211 + 1
        lag_peer = str(c.peers[1])
        differ = 0
        for text, n in new.items():
            o = old[text]
            if o == n:
                continue
            differ += 1
            jo, jn = json.loads(o), json.loads(n)
            assert CID.decode(text).bytes not in lagging.pins
            extra = jn["peer_map"].pop(lag_peer)
            assert lag_peer not in jo["peer_map"] and extra["status"] in ("remote", "sharded")
            assert jn == jo
        assert 0 < differ <= 1500 // 97 + 1
    finally:
        await c.shutdown()


async def test_sparse_listing_with_a_failed_member_and_local_ipfs_down() -> None:
    """A member whose stream fails shows cluster_error on every line. With this peer's IPFS down, its pins show
    cluster_error with the reason, and what it derives without IPFS (remote, sharded) still shows."""
    c = Cluster3(seed=4)
    try:
        t1 = c.trackers[1]
        remotes = {t1.peer: sparse_wire(t1.status_rows_sparse()), c.peers[2]: _failing_sparse()}
        lines = (await new_sparse(c, remotes)).splitlines()
        assert len(lines) == len(c.pinset.pins)
        for line in lines:
            entry = json.loads(line)["peer_map"][str(c.peers[2])]
            assert entry["status"] == "cluster_error" and entry["error"] == "connection refused"
        c.ipfs[0].ls_error = RuntimeError("ipfs down")
        statuses = set()
        for line in (await new_sparse(c)).splitlines():
            pin = c.pinset.pins[CID.decode(json.loads(line)["cid"]).bytes]
            mine = json.loads(line)["peer_map"][str(c.peers[0])]
            statuses.add(mine["status"])
            if pin.type is PinType.META:
                assert mine["status"] == "sharded"
            elif pin.is_pin_everywhere or c.peers[0] in pin.allocations:
                assert mine["status"] == "cluster_error" and "ipfs down" in mine["error"]
            else:
                assert mine["status"] == "remote"
        assert {"sharded", "cluster_error", "remote"} <= statuses
    finally:
        await c.shutdown()


async def _failing_sparse() -> AsyncIterator[tuple[bool, list[Any]]]:
    raise Unavailable("connection refused")
    yield True, []  # pragma: no cover


async def test_sparse_rows_of_an_older_peer_come_from_every_row() -> None:
    """A peer without ``StatusAllSparse`` is asked ``StatusAllCompact`` (its rows marked not sparse)."""
    from types import SimpleNamespace

    from pincluster.cluster import Cluster
    from pincluster.rpc.errors import UnknownMethod

    asked: list[str] = []
    batch = StatusRows(ts_ns=1, rows=[(b"k", int(S.PINNED), None, "", 0, False, True)])

    def stream_batches(peer: PeerID, method: str, arg: Any, **_: Any) -> AsyncIterator[list[StatusRows]]:
        async def gen() -> AsyncIterator[list[StatusRows]]:
            asked.append(method)
            if method.endswith("Sparse"):
                raise UnknownMethod(f"peer {peer} has no RPC method {method}")
            yield [batch]
        return gen()

    fake = SimpleNamespace(rpc=SimpleNamespace(stream_batches=stream_batches))
    fake._status_rows_of = lambda peer, flt: Cluster._status_rows_of(fake, peer, flt)  # type: ignore[attr-defined]
    got = [b async for b in Cluster._sparse_rows_of(fake, new_peer())]  # type: ignore[arg-type]
    assert got == [(False, [batch])]
    assert asked == ["PinTracker.StatusAllSparse", "PinTracker.StatusAllCompact"]
