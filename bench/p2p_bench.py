"""Peer-layer benchmark: RPC round-trip latency and stream throughput between two processes.

Starts tests/integration/p2p_peer.py as the remote peer, then measures from this process:
- unary RPC round trips (Cluster.ID), sequential: p50/p99 latency;
- 1,000 concurrent unary calls on one connection: calls/s;
- a streamed transfer (Test.Blob) of --mib MiB: MB/s;
- the ceiling: raw ChaCha20-Poly1305 and AES-GCM speed of `cryptography` in memory, 64 KiB messages
  (the channel's frame size), on this machine.

Usage: .venv/bin/python bench/p2p_bench.py [--calls 2000] [--mib 256] [--uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from pincluster.p2p.host import Host
from pincluster.p2p.keys import PrivateKey
from pincluster.rpc import RPC
from pincluster.types.multiaddr import Multiaddr
from pincluster.types.peer import PeerID

PEER = Path(__file__).resolve().parent.parent / "tests" / "integration" / "p2p_peer.py"
SECRET = "5e" * 32


def aead_speed(cls: type[ChaCha20Poly1305] | type[AESGCM], seconds: float = 1.0) -> float:
    """Encrypt-only MB/s, one 64 KiB message at a time, as the channel does."""
    aead = cls(os.urandom(32))
    msg = os.urandom(65519)
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for i in range(64):
            aead.encrypt((n + i).to_bytes(12, "little"), msg, None)
        n += 64
    return n * len(msg) / (time.perf_counter() - t0) / 1e6


async def run(calls: int, mib: int, use_uvloop: bool) -> None:
    args = [sys.executable, str(PEER), "--secret", SECRET] + (["--uvloop"] if use_uvloop else [])
    proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    info = json.loads(await asyncio.wait_for(proc.stdout.readline(), 20))
    host = Host(PrivateKey.generate_ed25519(), bytes.fromhex(SECRET), "/pincluster/rpc/1.0",
                [Multiaddr("/ip4/127.0.0.1/tcp/0")])
    rpc = RPC(host)
    await host.start()
    try:
        t0 = time.perf_counter()
        peer: PeerID = await host.connect(Multiaddr(info["addrs"][0]))
        print(f"connect + handshake: {(time.perf_counter() - t0) * 1e3:.1f} ms")
        for _ in range(200):  # warm up
            await rpc.call(peer, "Cluster.ID")
        lat = []
        for _ in range(calls):
            t = time.perf_counter()
            await rpc.call(peer, "Cluster.ID")
            lat.append(time.perf_counter() - t)
        lat.sort()
        print(f"unary RPC round trip ({calls} sequential): p50 {statistics.median(lat) * 1e6:.0f} µs, "
              f"p99 {lat[int(len(lat) * 0.99)] * 1e6:.0f} µs")
        t = time.perf_counter()
        await asyncio.gather(*(rpc.call(peer, "Cluster.ID") for _ in range(1000)))
        print(f"1000 concurrent unary calls: {1000 / (time.perf_counter() - t):.0f} calls/s")
        chunk = 256 * 1024
        count = mib * 1024 * 1024 // chunk
        got = 0
        t = time.perf_counter()
        async for c in rpc.stream(peer, "Test.Blob", (count, chunk), result_type=bytes, timeout=None):
            got += len(c)
        dt = time.perf_counter() - t
        print(f"stream {got / 2**20:.0f} MiB in 256 KiB items: {got / dt / 1e6:.0f} MB/s")
    finally:
        await host.close()
        proc.kill()
        await proc.wait()
    print(f"ceiling, cryptography ChaCha20-Poly1305 encrypt (64 KiB msgs): {aead_speed(ChaCha20Poly1305):.0f} MB/s")
    print(f"ceiling, cryptography AES-256-GCM encrypt (64 KiB msgs): {aead_speed(AESGCM):.0f} MB/s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--uvloop", action="store_true", help="run both ends on uvloop")
    a = ap.parse_args()
    if a.uvloop:
        import uvloop

        uvloop.run(run(a.calls, a.mib, True))
    else:
        asyncio.run(run(a.calls, a.mib, False))


if __name__ == "__main__":
    main()
