"""Block exchange over in-memory fake hosts: fetch, verification, idle timeout, retries, serving rules."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Sequence

import pytest

from pincluster.errors import NotFound, Timeout
from pincluster.ipfs.exchange import (
    MAX_WANT,
    PROTOCOL_NAME,
    BlockMsg,
    DontHave,
    Exchange,
    StreamLike,
    Want,
    decode_msg,
    encode_msg,
    verify_block,
)
from pincluster.p2p.keys import PrivateKey
from pincluster.types.cid import CID, RAW, sha256_multihash
from pincluster.types.peer import PeerID

_RESET = object()


class FakeStream:
    def __init__(self, remote: PeerID, inbox: asyncio.Queue[object], outbox: asyncio.Queue[object]) -> None:
        self.remote_peer = remote
        self._in = inbox
        self._out = outbox

    async def read_msg(self) -> bytes | None:
        item = await self._in.get()
        if item is _RESET:
            raise ConnectionResetError("stream reset")
        return item  # type: ignore[return-value]

    async def write_msg(self, data: bytes) -> None:
        await self._out.put(data)

    async def close(self) -> None:
        await self._out.put(None)

    def reset(self) -> None:
        self._out.put_nowait(_RESET)
        self._in.put_nowait(_RESET)


class FakeHost:
    def __init__(self, net: dict[PeerID, FakeHost]) -> None:
        self.peer_id = PrivateKey.generate_ed25519().public_key().peer_id()
        self.handlers: dict[str, Callable[[StreamLike], Awaitable[None]]] = {}
        self.net = net
        self.links: set[PeerID] = set()
        net[self.peer_id] = self
        self.tasks: list[asyncio.Task[None]] = []

    def set_stream_handler(self, name: str, handler: Callable[[StreamLike], Awaitable[None]]) -> None:
        self.handlers[name] = handler

    async def new_stream(self, peer: PeerID, name: str) -> StreamLike:
        q1: asyncio.Queue[object] = asyncio.Queue()
        q2: asyncio.Queue[object] = asyncio.Queue()
        mine = FakeStream(peer, q2, q1)
        theirs = FakeStream(self.peer_id, q1, q2)
        handler = self.net[peer].handlers[name]

        async def serve() -> None:
            await handler(theirs)

        self.tasks.append(asyncio.create_task(serve()))
        return mine

    def connected_peers(self) -> list[PeerID]:
        return sorted(self.links)


def connect(a: FakeHost, b: FakeHost) -> None:
    a.links.add(b.peer_id)
    b.links.add(a.peer_id)


class MemStore:
    def __init__(self, delay: float = 0.0) -> None:
        self.blocks: dict[bytes, bytes] = {}
        self.delay = delay
        self._slow = asyncio.Lock()  # a slow store serves one block at a time, like a slow link

    async def get(self, cid: CID) -> bytes:
        if self.delay:
            async with self._slow:
                await asyncio.sleep(self.delay)
        try:
            return self.blocks[cid.multihash]
        except KeyError:
            raise NotFound(f"ipld: could not find {cid}") from None

    async def has(self, cid: CID) -> bool:
        return cid.multihash in self.blocks

    async def put_many(self, blocks: Sequence[tuple[CID, bytes]]) -> None:
        for c, d in blocks:
            self.blocks[c.multihash] = d

    def add(self, data: bytes) -> CID:
        cid = CID.v1(RAW, sha256_multihash(data))
        self.blocks[cid.multihash] = data
        return cid


async def make(net: dict[PeerID, FakeHost], store: MemStore, **kw: float) -> tuple[FakeHost, Exchange]:
    host = FakeHost(net)
    ex = Exchange(host, store, retry_interval=kw.pop("retry_interval", 0.05), **kw)  # type: ignore[arg-type]
    await ex.start()
    return host, ex


def test_messages_round_trip_and_verify() -> None:
    cid = CID.v1(RAW, sha256_multihash(b"x"))
    for msg in (Want([cid.bytes]), BlockMsg(cid.bytes, b"x"), DontHave([])):
        assert decode_msg(encode_msg(msg)) == msg
    assert verify_block(cid, b"x") and not verify_block(cid, b"y")
    with pytest.raises(ValueError, match="malformed"):
        decode_msg(b"\xc1garbage")


async def test_fetch_from_peer_verifies_and_caches() -> None:
    net: dict[PeerID, FakeHost] = {}
    sa, sb = MemStore(), MemStore()
    ha, exa = await make(net, sa)
    hb, exb = await make(net, sb)
    connect(ha, hb)
    cids = [sb.add(f"block {i}".encode()) for i in range(50)]
    sess = exa.session(2.0)
    got = await asyncio.gather(*(sess.get(c) for c in cids))
    assert got == [f"block {i}".encode() for i in range(50)]
    await sess.flush()
    assert all(c.multihash in sa.blocks for c in cids)
    assert exa.stats.blocks_received == 50 and exb.stats.blocks_sent == 50
    assert exa.wantlist == []
    await exa.stop()
    await exb.stop()


async def test_a_lying_peer_is_ignored_and_the_honest_one_wins() -> None:
    net: dict[PeerID, FakeHost] = {}
    sa, sgood = MemStore(), MemStore()
    ha, exa = await make(net, sa)
    hgood, exgood = await make(net, sgood)
    liar = FakeHost(net)

    async def lie(stream: StreamLike) -> None:
        want = decode_msg(await stream.read_msg() or b"")
        assert isinstance(want, Want)
        for c in want.cids:
            await stream.write_msg(encode_msg(BlockMsg(c, b"not the data")))
        await stream.write_msg(encode_msg(DontHave([])))
        await stream.close()

    liar.set_stream_handler(PROTOCOL_NAME, lie)
    connect(ha, liar)
    cid = sgood.add(b"the real data")
    sess = exa.session(0.3)
    with pytest.raises(Timeout):
        await sess.get(cid)  # only the liar is connected: its bytes never verify
    assert exa.stats.bad_blocks >= 1
    connect(ha, hgood)
    assert await exa.session(2.0).get(cid) == b"the real data"
    await exa.stop()
    await exgood.stop()


async def test_timeout_restarts_at_each_block() -> None:
    net: dict[PeerID, FakeHost] = {}
    sa, slow = MemStore(), MemStore(delay=0.15)
    ha, exa = await make(net, sa)
    hb, exb = await make(net, slow)
    connect(ha, hb)
    cids = [slow.add(f"slow {i}".encode()) for i in range(6)]
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    # 6 blocks at 0.15 s each take ~0.9 s, far over the 0.4 s timeout, yet the transfer keeps moving.
    got = await asyncio.gather(*(exa.session(0.4).get(c) for c in cids))
    assert len(got) == 6 and loop.time() - t0 > 0.4
    await exa.stop()
    await exb.stop()


async def test_nobody_has_it_times_out_with_reason() -> None:
    net: dict[PeerID, FakeHost] = {}
    ha, exa = await make(net, MemStore())
    missing = CID.v1(RAW, sha256_multihash(b"nowhere"))
    with pytest.raises(Timeout, match="not connected to any peer"):
        await exa.session(0.2).get(missing)
    hb, exb = await make(net, MemStore())
    connect(ha, hb)
    with pytest.raises(Timeout, match="1 connected peer"):
        await exa.session(0.2).get(missing)
    assert exa.wantlist == []  # released after the timeout
    await exa.stop()
    await exb.stop()


async def test_wants_are_retried_when_a_peer_gets_the_block_later() -> None:
    net: dict[PeerID, FakeHost] = {}
    sb = MemStore()
    ha, exa = await make(net, MemStore(), retry_interval=0.05)
    hb, exb = await make(net, sb)
    connect(ha, hb)
    data = b"arrives later"
    cid = CID.v1(RAW, sha256_multihash(data))
    task = asyncio.create_task(exa.session(2.0).get(cid))
    await asyncio.sleep(0.15)
    assert not task.done() and cid in exa.wantlist
    sb.add(data)
    assert await asyncio.wait_for(task, 2.0) == data
    await exa.stop()
    await exb.stop()


async def test_serving_rules() -> None:
    net: dict[PeerID, FakeHost] = {}
    sb = MemStore()
    client = FakeHost(net)
    hb, exb = await make(net, sb)
    have = sb.add(b"have")
    missing = CID.v1(RAW, sha256_multihash(b"missing"))
    st = await client.new_stream(hb.peer_id, PROTOCOL_NAME)
    await st.write_msg(encode_msg(Want([have.bytes, missing.bytes, b"\x01junk"])))
    await st.close()
    msgs = []
    while (raw := await st.read_msg()) is not None:
        msgs.append(decode_msg(raw))
    assert msgs[0] == BlockMsg(have.bytes, b"have")
    assert msgs[-1] == DontHave([missing.bytes, b"\x01junk"])
    # An oversized want is refused with a reset, not served.
    st2 = await client.new_stream(hb.peer_id, PROTOCOL_NAME)
    await st2.write_msg(encode_msg(Want([have.bytes] * (MAX_WANT + 1))))
    with pytest.raises(ConnectionResetError):
        await st2.read_msg()
    await exb.stop()


async def test_stop_fails_pending_fetches() -> None:
    net: dict[PeerID, FakeHost] = {}
    _ha, exa = await make(net, MemStore())
    cid = CID.v1(RAW, sha256_multihash(hashlib.sha256(b"z").digest()))
    task = asyncio.create_task(exa.session(5.0).get(cid))
    await asyncio.sleep(0.05)
    await exa.stop()
    with pytest.raises(Exception, match="shutting down"):
        await asyncio.wait_for(task, 1.0)


async def test_a_silent_peer_does_not_hold_fetch_slots() -> None:
    net: dict[PeerID, FakeHost] = {}
    sgood = MemStore()
    ha = FakeHost(net)
    exa = Exchange(ha, MemStore(), concurrency=1, stall_timeout=0.2, retry_interval=0.05)
    await exa.start()
    hgood, exgood = await make(net, sgood)
    silent = FakeHost(net)
    never = asyncio.Event()

    async def hang(stream: StreamLike) -> None:
        await never.wait()

    silent.set_stream_handler(PROTOCOL_NAME, hang)
    connect(ha, silent)
    connect(ha, hgood)
    first, second = sgood.add(b"first"), sgood.add(b"second")
    assert await exa.session(1.0).get(first) == b"first"
    # The only fetch slot is still waiting on the silent peer; it is freed after the stall timeout.
    assert await exa.session(1.0).get(second) == b"second"
    never.set()
    await exa.stop()
    await exgood.stop()
