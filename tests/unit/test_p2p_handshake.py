"""Handshake: protocol hello, Noise with PSK, identity proof; both ends over loopback in one process."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from pincluster.p2p.errors import HandshakeError, PeerIDMismatch, SecretMismatch, VersionMismatch
from pincluster.p2p.handshake import Handshaker, HandshakeResult, check_compatible, parse_protocol
from pincluster.p2p.keys import PrivateKey
from pincluster.types.peer import PeerID

pytestmark = pytest.mark.timeout(20)
PSK = bytes(range(32))


def test_parse_protocol() -> None:
    assert parse_protocol("/pincluster/rpc/1.0") == ("/pincluster/rpc", 1, 0)
    assert parse_protocol("/pincluster/ipfs/12.34") == ("/pincluster/ipfs", 12, 34)
    for bad in ("pincluster/rpc/1.0", "/pincluster/rpc/1", "/pincluster/rpc/x.y", "/1.0", ""):
        with pytest.raises(HandshakeError):
            parse_protocol(bad)


def test_compatibility_rules() -> None:
    check_compatible("/pincluster/rpc/1.0", "/pincluster/rpc/1.7", "x")
    with pytest.raises(VersionMismatch) as ei:
        check_compatible("/pincluster/rpc/1.0", "/pincluster/rpc/2.0", "x")
    assert "/pincluster/rpc/1.0" in str(ei.value) and "/pincluster/rpc/2.0" in str(ei.value)
    with pytest.raises(VersionMismatch):
        check_compatible("/pincluster/rpc/1.0", "/pincluster/ipfs/1.0", "x")
    with pytest.raises(VersionMismatch):
        check_compatible("/pincluster/rpc/1.0", "garbage", "x")


def test_psk_must_be_32_bytes() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        Handshaker(PrivateKey.generate_ed25519(), b"short", "/pincluster/rpc/1.0", "cluster.secret")


async def run_pair(
    resp: Handshaker, init_fn: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[Any]]
) -> tuple[Any, Any]:
    """Run a responder on a loopback server and ``init_fn`` as the dialler; return both outcomes."""
    done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    writers: list[asyncio.StreamWriter] = []

    async def on_conn(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        writers.append(w)
        try:
            done.set_result(await resp.respond(r, w, "remote", ["/ip4/127.0.0.1/tcp/1"]))
        except Exception as e:
            done.set_result(e)
            w.close()

    srv = await asyncio.start_server(on_conn, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    r, w = await asyncio.open_connection("127.0.0.1", port)
    try:
        try:
            out: Any = await init_fn(r, w)
        except Exception as e:
            out = e
        res = await asyncio.wait_for(done, 5)
        if isinstance(out, HandshakeResult) and isinstance(res, HandshakeResult):
            out.channel.send(b"ping")
            assert await res.channel.recv() == b"ping"
            res.channel.send(b"pong")
            assert await out.channel.recv() == b"pong"
        return out, res
    finally:
        w.close()
        for x in writers:
            x.close()
        srv.close()


def hs(psk: bytes = PSK, proto: str = "/pincluster/rpc/1.0", name: str = "cluster.secret",
       key: PrivateKey | None = None) -> Handshaker:
    return Handshaker(key or PrivateKey.generate_ed25519(), psk, proto, name)


async def test_success_verifies_both_identities() -> None:
    a, b = hs(), hs(key=PrivateKey.generate_rsa(2048))
    ia, rb = await run_pair(b, lambda r, w: a.initiate(r, w, "b", b.peer_id, ["/ip4/127.0.0.1/tcp/2"]))
    assert isinstance(ia, HandshakeResult) and isinstance(rb, HandshakeResult)
    assert ia.remote_peer == b.peer_id and str(b.peer_id).startswith("Qm")
    assert rb.remote_peer == a.peer_id
    assert rb.remote_addrs == ["/ip4/127.0.0.1/tcp/2"] and ia.remote_addrs == ["/ip4/127.0.0.1/tcp/1"]


async def test_wrong_psk_both_sides_name_the_key() -> None:
    a, b = hs(name="swarm.key"), hs(psk=os.urandom(32), name="swarm.key")
    ia, rb = await run_pair(b, lambda r, w: a.initiate(r, w, "b", None, []))
    assert isinstance(ia, SecretMismatch) and isinstance(rb, SecretMismatch)
    assert "do not share the same swarm.key" in str(ia) and "do not share the same swarm.key" in str(rb)


async def test_version_mismatch_both_sides() -> None:
    a, b = hs(proto="/pincluster/rpc/2.1"), hs()
    ia, rb = await run_pair(b, lambda r, w: a.initiate(r, w, "b", None, []))
    assert isinstance(ia, VersionMismatch) and isinstance(rb, VersionMismatch)
    for e in (ia, rb):
        assert "/pincluster/rpc/2.1" in str(e) and "/pincluster/rpc/1.0" in str(e)


async def test_misdial_both_sides_name_both_ids() -> None:
    a, b = hs(), hs()
    wanted = PrivateKey.generate_ed25519().public_key().peer_id()
    ia, rb = await run_pair(b, lambda r, w: a.initiate(r, w, "b", wanted, []))
    assert isinstance(ia, PeerIDMismatch) and isinstance(rb, PeerIDMismatch)
    for e in (ia, rb):
        assert str(wanted) in str(e) and str(b.peer_id) in str(e)


async def test_not_a_pincluster_peer() -> None:
    b = hs()

    async def http_client(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> bytes:
        w.write(b"GET / HTTP/1.1\r\n\r\n")
        await w.drain()
        return await r.read(100)

    _, rb = await run_pair(b, http_client)
    assert isinstance(rb, HandshakeError) and "not a pincluster peer" in str(rb)


async def test_forged_identity_rejected() -> None:
    """A peer that signs with a key other than the one it claims is refused."""
    real, other = PrivateKey.generate_ed25519(), PrivateKey.generate_ed25519()

    class Forger:
        def public_key(self) -> Any:
            return real.public_key()

        def sign(self, data: bytes) -> bytes:
            return other.sign(data)

    a, b = Handshaker(Forger(), PSK, "/pincluster/rpc/1.0", "cluster.secret"), hs()  # type: ignore[arg-type]
    ia, rb = await run_pair(b, lambda r, w: a.initiate(r, w, "b", None, []))
    assert isinstance(rb, HandshakeError) and "failed to prove its identity" in str(rb)
    assert isinstance(ia, HandshakeError)
    assert isinstance(a.peer_id, PeerID)
