"""The allocation cache (issue 6): answers are reused only while the metrics snapshot is unchanged, and any
change — a new metric, an expiry, a member leaving — changes the allocation at once. Also the other
per-request caches of the ingest path (request-log time, log line prefix, verified JWTs)."""

from __future__ import annotations

import logging
import random
import time
from datetime import datetime, timedelta

import pytest

from pincluster.allocator.allocate import Allocator, NotEnoughPeers
from pincluster.allocator.balanced import BalancedAllocator
from pincluster.api.common.accesslog import _clf_now, _clf_time
from pincluster.config.sections import BalancedAllocatorConfig, PubsubMonConfig
from pincluster.log import LineFormatter
from pincluster.monitor.monitor import Monitor
from pincluster.p2p.keys import PrivateKey
from pincluster.testing import FakeClock
from pincluster.types.cid import CID, RAW, sha256_multihash
from pincluster.types.models import Metric
from pincluster.types.peer import PeerID

NS = 1_000_000_000
P = sorted((PrivateKey.generate_ed25519().public_key().peer_id() for _ in range(5)), key=lambda p: p.bytes)
CID1 = CID.v1(RAW, sha256_multihash(b"cache"))


class Env:
    def __init__(self, by: tuple[str, ...] = ("freespace",)) -> None:
        self.clock = FakeClock()
        self.members = list(P)

        async def members() -> list[PeerID]:
            return list(self.members)

        async def broadcast(m: Metric) -> None:
            return None

        self.monitor = Monitor(PubsubMonConfig(), broadcast=broadcast, peers=members, clock=self.clock)
        self.alloc = Allocator(self.monitor, BalancedAllocator(BalancedAllocatorConfig(allocate_by=by)))

    async def free(self, peer: PeerID, space: int, ttl_s: float = 60) -> None:
        await self.monitor.log_metric(Metric(name="freespace", peer=peer, value=str(space), weight=space,
                                             valid=True, expire=self.clock.now_ns() + int(ttl_s * NS)))

    async def tag(self, peer: PeerID, group: str) -> None:
        await self.monitor.log_metric(Metric(name="tag:group", peer=peer, value=group, valid=True,
                                             partitionable=True, expire=self.clock.now_ns() + 60 * NS))


async def test_cache_is_used_and_a_new_metric_changes_the_answer_at_once() -> None:
    e = Env()
    for i, p in enumerate(P[:3]):
        await e.free(p, 100 + i)
    assert e.alloc._shared is not None
    assert await e.alloc.allocate(CID1, (), 1, 1) == (P[2],)
    assert len(e.alloc._memo) == 1
    assert await e.alloc.allocate(CID1, (), 1, 1) == (P[2],)  # served from the memo
    await e.free(P[0], 500)
    assert await e.alloc.allocate(CID1, (), 1, 1) == (P[0],)
    await e.free(P[0], 1, ttl_s=60)  # the same peer shrinks: its newest metric counts
    assert await e.alloc.allocate(CID1, (), 1, 1) == (P[2],)


async def test_expiry_changes_the_answer_at_once() -> None:
    e = Env()
    await e.free(P[0], 100, ttl_s=60)
    await e.free(P[1], 900, ttl_s=10)
    assert await e.alloc.allocate(CID1, (), 1, 1) == (P[1],)
    await e.clock.advance(10)  # expires at now+10 s exactly: still valid ("expired" is after expire)
    assert await e.alloc.allocate(CID1, (), 1, 1) == (P[1],)
    await e.clock.advance(0.001)
    assert await e.alloc.allocate(CID1, (), 1, 1) == (P[0],)
    await e.clock.advance(60)
    try:
        await e.alloc.allocate(CID1, (), 1, 1)
        raise AssertionError("every metric expired: allocation must fail")
    except NotEnoughPeers:
        pass


async def test_member_change_and_peer_pruning_change_the_answer_at_once() -> None:
    e = Env()
    for i, p in enumerate(P[:3]):
        await e.free(p, 100 + i)
    assert await e.alloc.allocate(CID1, (), 2, 2) == (P[2], P[1])
    e.members = [P[0], P[1]]  # P[2] left the peerset
    assert await e.alloc.allocate(CID1, (), 2, 2) == (P[1], P[0])
    await e.monitor.check_once()  # prunes P[2]'s metrics
    e.members = list(P)  # back, but its metrics are gone
    assert await e.alloc.allocate(CID1, (), 2, 2) == (P[1], P[0])


async def test_cached_answers_equal_uncached_ones() -> None:
    rnd = random.Random(7)
    e = Env(by=("tag:group", "freespace"))
    plain = Allocator(e.monitor, BalancedAllocator(BalancedAllocatorConfig(allocate_by=("tag:group", "freespace"))))
    plain._shared = None
    for p in P:
        await e.tag(p, rnd.choice("ab"))
        await e.free(p, rnd.randrange(1000))
    for _ in range(300):
        if rnd.random() < 0.1:
            await e.free(rnd.choice(P), rnd.randrange(1000))
        current = tuple(rnd.sample(P, rnd.randrange(3)))
        priority = tuple(rnd.sample(P, rnd.randrange(2)))
        blacklist = set(rnd.sample(P, rnd.randrange(2)))
        rmin = rnd.randrange(1, 4)
        rmax = rmin + rnd.randrange(2)
        outcomes: list[object] = []
        for a in (e.alloc, plain):
            try:
                outcomes.append(await a.allocate(CID1, current, rmin, rmax, blacklist=blacklist, priority=priority))
            except NotEnoughPeers as exc:
                outcomes.append(str(exc))
        assert outcomes[0] == outcomes[1], (current, priority, blacklist, rmin, rmax)


async def test_latest_metrics_stays_a_fresh_list() -> None:
    e = Env()
    await e.free(P[0], 1)
    first = await e.monitor.latest_metrics("freespace")
    first.clear()  # a caller mutating its list must not change the monitor's answer
    assert [m.peer for m in await e.monitor.latest_metrics("freespace")] == [P[0]]
    assert await e.monitor.shared_latest_metrics("freespace") is await e.monitor.shared_latest_metrics("freespace")


def test_request_log_time_cache_matches_the_full_formatting() -> None:
    for t in (1_700_000_000.2, 1_700_000_000.9, 1_700_000_001.0, 1_800_000_123.5, 1_700_000_000.1):
        assert _clf_now(t) == _clf_time(datetime.fromtimestamp(int(t)).astimezone())


def test_line_formatter_cache_follows_the_second_and_the_logger() -> None:
    fmt = LineFormatter()

    def line(name: str, level: int, created: float) -> str:
        rec = logging.LogRecord(name, level, "/x/file.py", 7, "hello %s", ("you",), None)
        rec.created = created
        rec.msecs = int((created - int(created)) * 1000)
        return fmt.format(rec)

    a = line("pincluster.restapilog", logging.INFO, 1_700_000_000.25)
    b = line("pincluster.raft", logging.WARNING, 1_700_000_001.5)
    c = line("pincluster.restapilog", logging.INFO, 1_700_000_000.25)
    assert a == c and a.endswith(".250 INFO restapilog: hello you file.py:7")
    assert b.endswith(".500 WARN raft: hello you file.py:7") and a[:8] != b[:8]


def test_verified_token_cache_rechecks_expiry_and_skips_other_claims(monkeypatch: pytest.MonkeyPatch) -> None:
    import jwt

    from pincluster.api.common.auth import TokenIssuer

    users = {"bob": "a-password-long-enough-for-hs256-x"}
    issuer = TokenIssuer(users, timedelta(seconds=100))
    token = issuer.issue("bob")
    assert issuer.verify(token) == "bob" and token in issuer._verified
    assert issuer.verify(token) == "bob"  # cached
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 101)  # PyJWT's rule: expired once exp <= now
    with pytest.raises(jwt.ExpiredSignatureError):
        issuer.verify(token)
    assert token not in issuer._verified
    monkeypatch.setattr(time, "time", real)
    stale = TokenIssuer(users, timedelta(seconds=10), clock=lambda: real() - 3600).issue("bob")
    with pytest.raises(jwt.ExpiredSignatureError):  # never cached when already expired
        issuer.verify(stale)
    assert stale not in issuer._verified
    with_nbf = jwt.encode({"iss": "bob", "nbf": int(real()) - 5}, users["bob"], algorithm="HS256")
    assert issuer.verify(with_nbf) == "bob" and with_nbf not in issuer._verified
    forged = jwt.encode({"iss": "bob"}, "wrong-password-wrong-password-xx", algorithm="HS256")
    for _ in range(2):  # failures are never cached
        with pytest.raises(jwt.InvalidSignatureError):
            issuer.verify(forged)
    assert forged not in issuer._verified
