"""Stream results travel many per message: fewer frames, same items, errors after the items sent before."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest

from pincluster.errors import NotFound, Timeout
from pincluster.p2p.host import Host
from pincluster.p2p.keys import PrivateKey
from pincluster.rpc import POLICIES, RPC, Policy, rpc_method
from pincluster.rpc.core import STREAM_BATCH_ITEMS, UNBOUNDED
from pincluster.types.multiaddr import Multiaddr

pytestmark = pytest.mark.timeout(30)
PSK = os.urandom(32)
POL = {**POLICIES, "B.Count": Policy.OPEN, "B.FailAfter": Policy.OPEN, "B.Trickle": Policy.OPEN}


class Svc:
    @rpc_method("Count")
    async def count(self, n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    @rpc_method("FailAfter")
    async def fail_after(self, n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i
        raise NotFound("item n is not part of the pinset")

    @rpc_method("Trickle")
    async def trickle(self, n: int) -> AsyncIterator[int]:
        for i in range(n):
            await asyncio.sleep(0.05)
            yield i


@pytest.fixture
async def pair() -> AsyncIterator[tuple[RPC, RPC]]:
    hosts = [Host(PrivateKey.generate_ed25519(), PSK, "/pincluster/rpc/1.0", [Multiaddr("/ip4/127.0.0.1/tcp/0")])
             for _ in range(2)]
    for h in hosts:
        await h.start()
    rpcs = [RPC(h, policies=POL) for h in hosts]
    for r in rpcs:
        r.register("B", Svc())
    await hosts[0].connect(hosts[1].addrs[0])
    yield rpcs[0], rpcs[1]
    for h in hosts:
        await h.close()


async def test_fast_stream_comes_in_batches(pair: tuple[RPC, RPC]) -> None:
    a, b = pair
    n = 5000
    batches = [x async for x in a.stream_batches(b.local_peer, "B.Count", n, result_type=int)]
    assert [i for batch in batches for i in batch] == list(range(n))
    assert len(batches) < n // 10 and max(len(x) for x in batches) <= STREAM_BATCH_ITEMS
    assert [i async for i in a.stream(b.local_peer, "B.Count", n, result_type=int)] == list(range(n))
    # the local peer: same items, no serialization
    assert [i async for i in a.stream(None, "B.Count", 10, result_type=int)] == list(range(10))


async def test_error_arrives_after_the_items_before_it(pair: tuple[RPC, RPC]) -> None:
    a, b = pair
    got: list[int] = []
    with pytest.raises(NotFound, match="not part of the pinset"):
        async for i in a.stream(b.local_peer, "B.FailAfter", 700, result_type=int):
            got.append(i)
    assert got == list(range(700))


async def test_slow_stream_items_are_not_held_back(pair: tuple[RPC, RPC]) -> None:
    a, b = pair
    agen = a.stream(b.local_peer, "B.Trickle", 100, result_type=int)
    first = await asyncio.wait_for(agen.__anext__(), 2)  # not waiting for a batch to fill
    assert first == 0
    await agen.aclose()


async def test_unbounded_stream_outlives_the_default_deadline(pair: tuple[RPC, RPC]) -> None:
    a, b = pair
    a.default_timeout = 0.2
    with pytest.raises(Timeout):
        [i async for i in a.stream(b.local_peer, "B.Trickle", 8, result_type=int)]
    got = [i async for i in a.stream(b.local_peer, "B.Trickle", 8, result_type=int, timeout=UNBOUNDED)]
    assert got == list(range(8))
