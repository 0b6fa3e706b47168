"""End to end: the peer layer and RPC between separate processes over real 127.0.0.1 sockets."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pincluster.errors import PinclusterError, Unavailable
from pincluster.p2p.errors import ConnectFailed, PeerIDMismatch, SecretMismatch, VersionMismatch
from pincluster.p2p.host import Host
from pincluster.p2p.keys import PrivateKey
from pincluster.rpc import RPC, RPCUnauthorized, rpc_method
from pincluster.types.multiaddr import Multiaddr
from pincluster.types.peer import PeerID

pytestmark = pytest.mark.timeout(60)

PEER = str(Path(__file__).with_name("p2p_peer.py"))
SECRET = "ab" * 32


def blob_chunk(i: int, size: int) -> bytes:
    """Same deterministic data as p2p_peer.blob_chunk, computed independently here."""
    seed = hashlib.sha256(i.to_bytes(8, "big")).digest()
    return (seed * (size // 32 + 1))[:size]


class PeerProc:
    """A p2p_peer.py subprocess; stderr lines are collected so tests can check what it logged."""

    def __init__(self, proc: asyncio.subprocess.Process, info: dict[str, Any]) -> None:
        self.proc = proc
        self.id = PeerID.decode(info["id"])
        self.addr = Multiaddr(info["addrs"][0])
        self.log: list[str] = []
        assert proc.stderr is not None
        self._task = asyncio.get_running_loop().create_task(self._collect(proc.stderr))

    async def _collect(self, stream: asyncio.StreamReader) -> None:
        async for line in stream:
            self.log.append(line.decode(errors="replace"))

    async def wait_log(self, text: str, timeout: float = 2.0) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for line in self.log:
                if text in line:
                    return line
            await asyncio.sleep(0.02)
        raise AssertionError(f"{text!r} not logged; log was:\n{''.join(self.log)}")

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()
        self._task.cancel()


async def spawn(*args: str) -> PeerProc:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, PEER, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 20)
    if not line:
        err = await proc.stderr.read() if proc.stderr else b""
        raise RuntimeError(f"test peer failed to start: {err.decode()}")
    return PeerProc(proc, json.loads(line))


@pytest.fixture
async def remote() -> AsyncIterator[PeerProc]:
    p = await spawn("--secret", SECRET, "--trust-all")
    yield p
    await p.stop()


class LocalCluster:
    @rpc_method("ID")
    async def id(self, caller: PeerID) -> dict[str, str]:
        return {"id": "local", "caller": str(caller)}


@pytest.fixture
async def local() -> AsyncIterator[tuple[Host, RPC]]:
    h = Host(PrivateKey.generate_ed25519(), bytes.fromhex(SECRET), "/pincluster/rpc/1.0",
             [Multiaddr("/ip4/127.0.0.1/tcp/0")])
    rpc = RPC(h)
    rpc.register("Cluster", LocalCluster())
    await h.start()
    yield h, rpc
    await h.close()


async def test_unary_and_streaming_both_ways(remote: PeerProc, local: tuple[Host, RPC]) -> None:
    h, rpc = local
    assert await h.connect(remote.addr) == remote.id
    res = await rpc.call(remote.id, "Cluster.ID", timeout=5)
    assert res == {"id": str(remote.id), "caller": str(h.peer_id)}
    items = [x async for x in rpc.stream(remote.id, "Cluster.IDStream", 50, timeout=5)]
    assert [x["i"] for x in items] == list(range(50))
    # the remote calls us back over the same connection
    back = await rpc.call(remote.id, "Test.CallBack", timeout=5)
    assert back == {"id": "local", "caller": str(remote.id)}
    # streamed arguments (upload)
    chunks = [os.urandom(100_000) for _ in range(20)]
    up = [x async for x in rpc.stream(remote.id, "Test.Upload", args=chunks, timeout=10)]
    assert up == [[sum(map(len, chunks)), hashlib.sha256(b"".join(chunks)).hexdigest()]]
    assert h.connected_peers() == [remote.id]


async def test_policy_enforced_remotely(remote: PeerProc, local: tuple[Host, RPC]) -> None:
    h, rpc = local
    await h.connect(remote.addr)
    with pytest.raises(RPCUnauthorized, match="closed"):
        [x async for x in rpc.stream(remote.id, "Cluster.Pins", timeout=5)]
    # trusted method: the test peer trusts everyone (--trust-all)
    assert [x async for x in rpc.stream(remote.id, "PinTracker.StatusAll", timeout=5)] == ["pinned"]


async def test_wrong_secret_refused_both_sides_log(
    local: tuple[Host, RPC], caplog: pytest.LogCaptureFixture
) -> None:
    h, _ = local
    other = await spawn("--secret", "cd" * 32)
    try:
        t0 = time.monotonic()
        with caplog.at_level(logging.WARNING, "pincluster.p2p"), pytest.raises(SecretMismatch) as ei:
            await h.connect(other.addr)
        assert time.monotonic() - t0 < 1.0
        assert "do not share the same cluster.secret" in str(ei.value)
        assert any("do not share the same cluster.secret" in r.getMessage() for r in caplog.records)
        await other.wait_log("do not share the same cluster.secret")
        assert h.connected_peers() == []
    finally:
        await other.stop()


async def test_newer_major_version_refused(local: tuple[Host, RPC]) -> None:
    h, _ = local
    newer = await spawn("--secret", SECRET, "--protocol", "/pincluster/rpc/2.0")
    try:
        t0 = time.monotonic()
        with pytest.raises(VersionMismatch) as ei:
            await h.connect(newer.addr)
        assert time.monotonic() - t0 < 1.0
        assert "/pincluster/rpc/1.0" in str(ei.value) and "/pincluster/rpc/2.0" in str(ei.value)
        line = await newer.wait_log("incompatible protocol")
        assert "/pincluster/rpc/1.0" in line and "/pincluster/rpc/2.0" in line
    finally:
        await newer.stop()


async def test_misdial_names_both_ids(remote: PeerProc, local: tuple[Host, RPC]) -> None:
    h, _ = local
    wrong = PrivateKey.generate_ed25519().public_key().peer_id()
    with pytest.raises(PeerIDMismatch) as ei:
        await h.connect(remote.addr.without_p2p().with_p2p(wrong))
    assert str(wrong) in str(ei.value) and str(remote.id) in str(ei.value)
    line = await remote.wait_log("peer ID mismatch")
    assert str(wrong) in line and str(remote.id) in line


async def test_connection_refused_names_address(local: tuple[Host, RPC]) -> None:
    h, _ = local
    from pincluster.cli.service import free_port

    port = free_port()
    addr = Multiaddr(f"/ip4/127.0.0.1/tcp/{port}")
    t0 = time.monotonic()
    with pytest.raises(ConnectFailed, match=f"refused by /ip4/127.0.0.1/tcp/{port}"):
        await h.connect(addr)
    assert time.monotonic() - t0 < 1.0


async def test_1000_concurrent_calls_one_connection(remote: PeerProc, local: tuple[Host, RPC]) -> None:
    h, rpc = local
    await h.connect(remote.addr)
    results = await asyncio.gather(*(rpc.call(remote.id, "Cluster.ID", timeout=30) for _ in range(1000)))
    assert len(results) == 1000 and all(r["id"] == str(remote.id) for r in results)
    assert len(h._conns[remote.id]) == 1
    await asyncio.sleep(0.05)
    assert not h._conns[remote.id][0]._streams  # every call's stream was closed and forgotten


async def test_64mib_stream_intact(remote: PeerProc, local: tuple[Host, RPC]) -> None:
    h, rpc = local
    await h.connect(remote.addr)
    count, size = 256, 256 * 1024
    got = hashlib.sha256()
    want = hashlib.sha256()
    n = 0
    async for chunk in rpc.stream(remote.id, "Test.Blob", (count, size), result_type=bytes, timeout=30):
        got.update(chunk)
        want.update(blob_chunk(n, size))
        n += 1
    assert n == count and got.digest() == want.digest()


async def test_kill_server_mid_stream_errors(local: tuple[Host, RPC]) -> None:
    h, rpc = local
    victim = await spawn("--secret", SECRET)
    try:
        await h.connect(victim.addr)
        n = 0
        t_kill = 0.0
        with pytest.raises(Unavailable):
            async for _ in rpc.stream(victim.id, "Test.Blob", (-1, 65536), result_type=bytes, timeout=20):
                n += 1
                if n == 10:
                    victim.proc.send_signal(signal.SIGKILL)
                    t_kill = time.monotonic()
        assert time.monotonic() - t_kill < 2.0
        assert h.connected_peers() == []
    finally:
        await victim.stop()


class InfiniteBlob:
    def __init__(self) -> None:
        self.ended = asyncio.Event()
        self.sent = 0

    @rpc_method("Blob")
    async def blob(self, spec: tuple[int, int]) -> AsyncIterator[bytes]:
        try:
            while True:
                yield b"x" * spec[1]
                self.sent += 1
        finally:
            self.ended.set()


async def test_kill_client_mid_stream_ends_server_handler() -> None:
    from pincluster.rpc import POLICIES, Policy

    h = Host(PrivateKey.generate_ed25519(), bytes.fromhex(SECRET), "/pincluster/rpc/1.0",
             [Multiaddr("/ip4/127.0.0.1/tcp/0")])
    rpc = RPC(h, policies={**POLICIES, "Test.Blob": Policy.OPEN})
    svc = InfiniteBlob()
    rpc.register("Test", svc)
    await h.start()
    try:
        client = await spawn("--secret", SECRET, "--stream-from", str(h.addrs[0]))
        try:
            assert client.proc.stdout is not None
            assert (await asyncio.wait_for(client.proc.stdout.readline(), 10)).strip() == b"started"
            client.proc.send_signal(signal.SIGKILL)
            await asyncio.wait_for(svc.ended.wait(), 2.0)
            for _ in range(100):
                if not h.connected_peers():
                    break
                await asyncio.sleep(0.02)
            assert h.connected_peers() == []
        finally:
            await client.stop()
    finally:
        await h.close()


async def test_deadline_and_call_many(remote: PeerProc, local: tuple[Host, RPC]) -> None:
    h, rpc = local
    await h.connect(remote.addr)
    from pincluster.errors import Timeout

    t0 = time.monotonic()
    with pytest.raises(Timeout):
        await rpc.call(remote.id, "Test.Sleep", 5.0, timeout=0.3)
    assert time.monotonic() - t0 < 1.0
    ghost = PrivateKey.generate_ed25519().public_key().peer_id()
    res = await rpc.call_many([remote.id, h.peer_id, ghost], "Cluster.ID", timeout=5)
    assert res[0]["id"] == str(remote.id)
    assert res[1] == {"id": "local", "caller": str(h.peer_id)}
    assert isinstance(res[2], PinclusterError)
