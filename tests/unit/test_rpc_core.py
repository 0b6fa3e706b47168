"""RPC: local fast path, remote calls over two in-process hosts, policies, errors, deadlines, streams."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import msgspec
import pytest

from pincluster.errors import InvalidInput, NotFound, Timeout
from pincluster.p2p.host import Host
from pincluster.p2p.keys import PrivateKey
from pincluster.rpc import POLICIES, RPC, MissingPolicy, Policy, RemoteError, RPCUnauthorized, rpc_method
from pincluster.rpc.errors import UnknownMethod
from pincluster.types.cid import CID
from pincluster.types.multiaddr import Multiaddr
from pincluster.types.peer import PeerID

pytestmark = pytest.mark.timeout(30)
PSK = os.urandom(32)
POL = {**POLICIES, "Test.Slow": Policy.OPEN, "Test.Gen": Policy.OPEN, "Test.Sum": Policy.OPEN,
       "Test.Fail": Policy.OPEN, "Test.Obj": Policy.OPEN}


class PinLike(msgspec.Struct):
    cid: CID
    name: str
    allocations: list[PeerID]


class Svc:
    def __init__(self) -> None:
        self.cancelled = asyncio.Event()
        self.gen_closed = asyncio.Event()
        self.produced = 0

    @rpc_method("ID")
    async def id(self, caller: PeerID) -> str:
        return str(caller)

    @rpc_method("Pin")
    async def pin(self, p: PinLike) -> PinLike:
        return PinLike(p.cid, p.name.upper(), p.allocations)

    @rpc_method("Peers")
    async def peers(self) -> AsyncIterator[str]:
        yield "trusted-ok"


class TestSvc:
    __test__ = False
    def __init__(self) -> None:
        self.cancelled = asyncio.Event()
        self.gen_closed = asyncio.Event()
        self.produced = 0

    @rpc_method("Slow")
    async def slow(self, s: float) -> str:
        try:
            await asyncio.sleep(s)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return "done"

    @rpc_method("Gen")
    async def gen(self, n: int) -> AsyncIterator[bytes]:
        try:
            for _ in range(n):
                self.produced += 1
                yield b"y" * 100_000
        finally:
            self.gen_closed.set()

    @rpc_method("Sum")
    async def sum(self, xs: AsyncIterator[int]) -> int:
        return sum([x async for x in xs])

    @rpc_method("Fail")
    async def fail(self, kind: str) -> None:
        if kind == "notfound":
            raise NotFound("pin QmX is not part of the pinset")
        if kind == "input":
            raise InvalidInput("bad cid")
        raise KeyError("boom")

    @rpc_method("Obj")
    async def obj(self, x: object) -> object:
        return x


def mkrpc(host: Host) -> tuple[RPC, Svc, TestSvc]:
    rpc = RPC(host, policies=POL)
    svc, tsvc = Svc(), TestSvc()
    rpc.register("Cluster", svc)
    rpc.register("Test", tsvc)
    return rpc, svc, tsvc


@pytest.fixture
async def two() -> AsyncIterator[tuple[RPC, RPC, TestSvc]]:
    ha = Host(PrivateKey.generate_ed25519(), PSK, "/pincluster/rpc/1.0", [Multiaddr("/ip4/127.0.0.1/tcp/0")])
    hb = Host(PrivateKey.generate_ed25519(), PSK, "/pincluster/rpc/1.0", [Multiaddr("/ip4/127.0.0.1/tcp/0")])
    await ha.start()
    await hb.start()
    a, _, _ = mkrpc(ha)
    b, _, tb = mkrpc(hb)
    await ha.connect(hb.addrs[0])
    yield a, b, tb
    await ha.close()
    await hb.close()


def test_register_requires_policy() -> None:
    rpc = RPC(None, PrivateKey.generate_ed25519().public_key().peer_id())

    class Bad:
        @rpc_method("NoSuchMethod")
        async def x(self) -> None: ...

    with pytest.raises(MissingPolicy, match=r"Cluster\.NoSuchMethod has no access policy"):
        rpc.register("Cluster", Bad())
    assert rpc.register("Cluster", Svc()) == ["Cluster.ID", "Cluster.Peers", "Cluster.Pin"]
    assert all(m in POLICIES for m in rpc.methods())


async def test_local_fast_path_skips_serialization() -> None:
    me = PrivateKey.generate_ed25519().public_key().peer_id()
    rpc = RPC(None, me, policies=POL)
    rpc.register("Test", TestSvc())
    rpc.register("Cluster", Svc())
    thing = object()  # not encodable: only a call without serialization can return it
    assert await rpc.call(me, "Test.Obj", thing) is thing
    assert await rpc.call(None, "Cluster.ID") == str(me)  # closed methods are fine locally
    assert [x async for x in rpc.stream(me, "Test.Sum", args=[1, 2, 3])] == [6]
    assert len([x async for x in rpc.stream(None, "Test.Gen", 3)]) == 3
    with pytest.raises(Timeout):
        await rpc.call(me, "Test.Slow", 5.0, timeout=0.05)
    with pytest.raises(UnknownMethod):
        await rpc.call(me, "Cluster.Nope")


async def test_remote_structs_and_policy(two: tuple[RPC, RPC, TestSvc]) -> None:
    a, b, _ = two
    cid = CID.decode("QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG")
    p = PinLike(cid, "x", [a.local_peer])
    with pytest.raises(RPCUnauthorized, match=r"Cluster\.Pin is closed"):
        await a.call(b.local_peer, "Cluster.Pin", p, result_type=PinLike)
    # open method, caller identity is the verified peer
    assert await a.call(b.local_peer, "Cluster.ID") == str(a.local_peer)
    # trusted method: refused until b trusts a
    with pytest.raises(RPCUnauthorized, match="trusted"):
        [x async for x in a.stream(b.local_peer, "Cluster.Peers")]
    b.set_trusted(lambda peer: peer == a.local_peer)
    assert [x async for x in a.stream(b.local_peer, "Cluster.Peers")] == ["trusted-ok"]
    # a Struct with CID and PeerID fields round-trips through the wire with types restored
    b.policies["Cluster.Pin"] = Policy.OPEN
    b.add_method("Cluster.Pin", b._methods["Cluster.Pin"].fn)
    got = await a.call(b.local_peer, "Cluster.Pin", p, result_type=PinLike)
    assert got == PinLike(cid, "X", [a.local_peer])


async def test_remote_errors_keep_their_type(two: tuple[RPC, RPC, TestSvc]) -> None:
    a, b, _ = two
    with pytest.raises(NotFound, match=f"Test.Fail on {b.local_peer}: pin QmX is not part of the pinset"):
        await a.call(b.local_peer, "Test.Fail", "notfound")
    with pytest.raises(InvalidInput, match="bad cid"):
        await a.call(b.local_peer, "Test.Fail", "input")
    with pytest.raises(RemoteError, match="boom"):
        await a.call(b.local_peer, "Test.Fail", "other")
    with pytest.raises(UnknownMethod):
        await a.call(b.local_peer, "Cluster.Nope")
    with pytest.raises(InvalidInput, match="bad argument"):
        await a.call(b.local_peer, "Test.Slow", "not a number")


async def test_deadline_cancels_remote_handler(two: tuple[RPC, RPC, TestSvc]) -> None:
    a, b, tb = two
    with pytest.raises(Timeout):
        await a.call(b.local_peer, "Test.Slow", 10.0, timeout=0.2)
    await asyncio.wait_for(tb.cancelled.wait(), 2)
    tb.cancelled.clear()
    task = asyncio.create_task(a.call(b.local_peer, "Test.Slow", 10.0))
    await asyncio.sleep(0.1)
    task.cancel()
    await asyncio.wait_for(tb.cancelled.wait(), 2)


async def test_stream_backpressure_and_early_exit(two: tuple[RPC, RPC, TestSvc]) -> None:
    a, b, tb = two
    agen = a.stream(b.local_peer, "Test.Gen", 10_000, result_type=bytes)
    first = await agen.__anext__()
    assert first == b"y" * 100_000
    await asyncio.sleep(0.2)
    # 100 kB items against a 1 MiB window: the producer is held back, not running ahead
    assert tb.produced < 20
    await agen.aclose()  # leaving early resets the stream and stops the remote generator
    await asyncio.wait_for(tb.gen_closed.wait(), 2)


async def test_streamed_args_and_call_many(two: tuple[RPC, RPC, TestSvc]) -> None:
    a, b, _ = two

    async def nums() -> AsyncIterator[int]:
        for i in range(1000):
            yield i

    assert [x async for x in a.stream(b.local_peer, "Test.Sum", args=nums())] == [sum(range(1000))]
    ghost = PrivateKey.generate_ed25519().public_key().peer_id()
    out = await a.call_many([b.local_peer, a.local_peer, ghost], "Test.Slow", args=[0.0, 0.0, 0.0], timeout=2)
    assert out[:2] == ["done", "done"] and isinstance(out[2], Exception)
    with pytest.raises(InvalidInput, match="2 arguments for 3 peers"):
        await a.call_many([b.local_peer, a.local_peer, ghost], "Test.Slow", args=[0.0, 0.0])


async def test_failed_streamed_call_frees_both_streams(two: tuple[RPC, RPC, TestSvc]) -> None:
    a, b, _ = two

    async def endless() -> AsyncIterator[int]:
        while True:
            yield 1
            await asyncio.sleep(0)

    with pytest.raises(UnknownMethod):  # refused while the arguments are still flowing
        [x async for x in a.stream(b.local_peer, "PinTracker.Track", args=endless())]
    with pytest.raises(InvalidInput, match="takes a single argument"):
        [x async for x in a.stream(b.local_peer, "Test.Slow", args=endless())]
    await asyncio.sleep(0.1)
    assert a.host is not None and b.host is not None
    assert not a.host._conns[b.local_peer][0]._streams
    assert not b.host._conns[a.local_peer][0]._streams
