"""Streams over one connection: messages, flow control, half-close, reset, size limits, teardown."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pincluster.errors import InvalidInput, Unavailable
from pincluster.p2p.errors import ConnectionClosed, MessageTooLarge, StreamReset
from pincluster.p2p.host import Host, Stream
from pincluster.p2p.keys import PrivateKey
from pincluster.p2p.mux import INITIAL_WINDOW
from pincluster.types.multiaddr import Multiaddr

pytestmark = pytest.mark.timeout(30)
PSK = os.urandom(32)
LISTEN = [Multiaddr("/ip4/127.0.0.1/tcp/0")]


def mk(max_message_size: int = 4 << 20) -> Host:
    return Host(PrivateKey.generate_ed25519(), PSK, "/pincluster/test/1.0", LISTEN,
                max_message_size=max_message_size)


async def echo(st: Stream) -> None:
    while (m := await st.read_msg()) is not None:
        await st.write_msg(m)


@pytest.fixture
async def pair() -> AsyncIterator[tuple[Host, Host]]:
    a, b = mk(), mk(max_message_size=1 << 20)
    await a.start()
    await b.start()
    b.set_stream_handler("echo", echo)
    a.set_stream_handler("echo", echo)
    assert await a.connect(b.addrs[0]) == b.peer_id
    yield a, b
    await a.close()
    await b.close()


async def test_echo_and_half_close(pair: tuple[Host, Host]) -> None:
    a, b = pair
    st = await a.new_stream(b.peer_id, "echo")
    assert st.remote_peer == b.peer_id
    for m in (b"", b"x", os.urandom(70_000), os.urandom(INITIAL_WINDOW - 1000), os.urandom(3 * INITIAL_WINDOW // 4)):
        await st.write_msg(m)
        assert await st.read_msg() == m
    await st.close()
    assert await st.read_msg() is None
    with pytest.raises(StreamReset):
        await st.write_msg(b"after close")


async def test_reverse_direction_and_reuse(pair: tuple[Host, Host]) -> None:
    a, b = pair
    # b opens towards a over the connection a dialled
    st = await b.new_stream(a.peer_id, "echo")
    await st.write_msg(b"back")
    assert await st.read_msg() == b"back"
    assert await a.connect(b.addrs[0]) == b.peer_id  # reuses
    assert len(a._conns[b.peer_id]) == 1 and len(b._conns[a.peer_id]) == 1


async def test_many_concurrent_streams(pair: tuple[Host, Host]) -> None:
    a, b = pair

    async def one(i: int) -> bool:
        st = await a.new_stream(b.peer_id, "echo")
        data = i.to_bytes(4, "big") * (i % 50 + 1)
        await st.write_msg(data)
        ok = await st.read_msg() == data
        await st.close()
        return ok and await st.read_msg() is None

    assert all(await asyncio.gather(*(one(i) for i in range(300))))
    await asyncio.sleep(0.05)
    assert not a._conns[b.peer_id][0]._streams  # finished streams are forgotten


async def test_backpressure_blocks_writer_until_reader_reads(pair: tuple[Host, Host]) -> None:
    a, b = pair
    got: asyncio.Queue[Stream] = asyncio.Queue()

    async def sink(st: Stream) -> None:
        await got.put(st)
        await asyncio.sleep(3600)

    b.set_stream_handler("sink", sink)
    st = await a.new_stream(b.peer_id, "sink")
    remote = await got.get()
    chunk = b"z" * 60_000
    sent = 0

    async def writer() -> None:
        nonlocal sent
        while True:
            await st.write_msg(chunk)
            sent += 1

    w = asyncio.create_task(writer())
    await asyncio.sleep(0.3)
    assert sent * len(chunk) <= INITIAL_WINDOW  # stalled at the window
    stalled_at = sent
    for _ in range(40):
        assert await remote.read_msg() == chunk
    await asyncio.sleep(0.1)
    assert sent > stalled_at
    w.cancel()


async def test_oversize_outgoing_refused_stream_usable(pair: tuple[Host, Host]) -> None:
    a, b = pair
    st = await a.new_stream(b.peer_id, "echo")
    with pytest.raises(MessageTooLarge, match="outgoing message of 5242880 bytes exceeds the limit"):
        await st.write_msg(b"a" * (5 << 20))
    await st.write_msg(b"still fine")
    assert await st.read_msg() == b"still fine"


async def test_oversize_incoming_resets_stream_not_connection(pair: tuple[Host, Host]) -> None:
    a, b = pair  # b accepts at most 1 MiB, a may send 4 MiB
    st = await a.new_stream(b.peer_id, "echo")
    with pytest.raises(StreamReset, match="exceeds the receiver's limit"):
        await st.write_msg(b"b" * (2 << 20))  # the reset arrives while the sender waits for window
        await st.read_msg()
    st2 = await a.new_stream(b.peer_id, "echo")
    await st2.write_msg(b"ok")
    assert await st2.read_msg() == b"ok"


async def test_reset_and_missing_handler(pair: tuple[Host, Host]) -> None:
    a, b = pair
    st = await a.new_stream(b.peer_id, "nope")
    with pytest.raises(StreamReset, match="no handler for stream 'nope'"):
        await st.read_msg()
    got: asyncio.Queue[Stream] = asyncio.Queue()

    async def hold(s: Stream) -> None:
        await got.put(s)
        await s.read_msg()

    b.set_stream_handler("hold", hold)
    st = await a.new_stream(b.peer_id, "hold")
    remote = await got.get()
    seen: list[BaseException] = []
    remote.on_reset(seen.append)
    st.reset()
    await asyncio.sleep(0.05)
    assert remote.is_reset and len(seen) == 1 and isinstance(seen[0], StreamReset)


async def test_connection_close_fails_open_streams(pair: tuple[Host, Host]) -> None:
    a, b = pair
    st = await a.new_stream(b.peer_id, "echo")
    reader = asyncio.create_task(st.read_msg())
    await asyncio.sleep(0.05)
    await b.disconnect(a.peer_id)
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(reader, 2)
    for _ in range(50):
        if not a.connected_peers():
            break
        await asyncio.sleep(0.02)
    assert a.connected_peers() == [] and b.connected_peers() == []
    # a knows b's address from the handshake, so it redials on demand
    st = await a.new_stream(b.peer_id, "echo")
    await st.write_msg(b"redialled")
    assert await st.read_msg() == b"redialled"


async def test_new_stream_to_unknown_peer() -> None:
    h = mk()
    await h.start()
    try:
        ghost = PrivateKey.generate_ed25519().public_key().peer_id()
        with pytest.raises(Unavailable, match="no address"):
            await h.new_stream(ghost, "echo")
    finally:
        await h.close()


async def test_keepalive_drops_a_silent_peer() -> None:
    a = Host(PrivateKey.generate_ed25519(), PSK, "/pincluster/test/1.0", LISTEN, keepalive=0.1)
    b = Host(PrivateKey.generate_ed25519(), PSK, "/pincluster/test/1.0", LISTEN, keepalive=None)
    await a.start()
    await b.start()
    try:
        await a.connect(b.addrs[0])
        await asyncio.sleep(0.35)
        assert a.connected_peers() == [b.peer_id]  # pings are answered: stays up while idle
        for _ in range(50):
            if b.is_connected(a.peer_id):
                break
            await asyncio.sleep(0.01)
        transport: Any = b._conns[a.peer_id][0]._chan.writer.transport
        transport.pause_reading()  # b goes silent, the TCP connection stays open
        await asyncio.sleep(0.6)
        assert a.connected_peers() == []
    finally:
        await a.close()
        await b.close()


async def test_empty_secret_means_no_private_network() -> None:
    from pincluster.p2p.errors import SecretMismatch

    hosts = [Host(PrivateKey.generate_ed25519(), psk, "/pincluster/test/1.0", LISTEN) for psk in (b"", b"", PSK)]
    for h in hosts:
        await h.start()
    try:
        assert await hosts[0].connect(hosts[1].addrs[0]) == hosts[1].peer_id
        with pytest.raises(SecretMismatch):
            await hosts[0].connect(hosts[2].addrs[0])
        with pytest.raises(InvalidInput, match="must be 32 bytes"):
            Host(PrivateKey.generate_ed25519(), b"x" * 31, "/pincluster/test/1.0", LISTEN)
    finally:
        for h in hosts:
            await h.close()
