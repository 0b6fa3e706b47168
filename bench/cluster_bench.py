"""Cluster benchmarks on a real 3-peer local network (daemons with embedded IPFS nodes on 127.0.0.1).

1. REST pin ingest: N pins (random CIDs, replication ``--rf``, default 1) posted by C concurrent clients,
   spread over the 3 peers; prints committed pins/s (each 200 answer means committed by Raft).
2. Listing: ``GET /allocations`` (the shared pinset) and ``GET /pins?local=true`` (this peer's statuses) and
   ``GET /pins`` (every peer's statuses, merged) streamed and counted; prints items/s.
3. Daemon RSS (VmRSS of each peer process) after ingest and after the listings.

Usage: .venv/bin/python bench/cluster_bench.py [--pins 100000] [--clients 50]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import tempfile
import time
from pathlib import Path

import aiohttp

from pincluster.localnet import Peer, init_peers, start_network, stop_network
from pincluster.types.cid import CID


def rss_mb(peer: Peer) -> float:
    pid = peer.running_pid()
    if pid is None:
        return float("nan")
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def ingest(peers: list[Peer], n: int, clients: int, rf: int = 1) -> float:
    cids = [str(CID.v0(hashlib.sha256(b"bench-%d-%d" % (os.getpid(), i)).digest())) for i in range(n)]
    queue: asyncio.Queue[tuple[int, str]] = asyncio.Queue()
    for i, c in enumerate(cids):
        queue.put_nowait((i, c))
    errors = 0

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        while True:
            try:
                i, cid = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            url = f"{peers[i % len(peers)].rest}/pins/{cid}?replication-min={rf}&replication-max={rf}"
            async with session.post(url) as resp:
                await resp.read()
                if resp.status != 200:
                    errors += 1

    conn = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=conn) as session:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(clients)))
        dt = time.perf_counter() - t0
    if errors:
        print(f"  {errors} pins failed")
    return (n - errors) / dt


async def stream_count(url: str) -> tuple[int, float]:
    timeout = aiohttp.ClientTimeout(total=None, sock_read=600)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        t0 = time.perf_counter()
        count = 0
        async with session.get(url) as resp:
            async for line in resp.content:
                if line.strip():
                    count += 1
        return count, time.perf_counter() - t0


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pins", type=int, default=100_000)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--rf", type=int, default=1, help="replication factor of the pins (-1: every peer)")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="pincluster-bench-"))
    peers = init_peers(root, 3, service_changes={"ipfs_connector.ipfshttp.pin_timeout": "1h0m0s"})
    try:
        start_network(peers)
        print(f"3 peers up; RSS (MB): {[round(rss_mb(p)) for p in peers]}")
        rate = await ingest(peers, args.pins, args.clients, args.rf)
        print(f"REST ingest: {args.pins} pins (rf {args.rf}), {args.clients} clients over 3 peers: "
              f"{rate:,.0f} committed pins/s")
        print(f"RSS after ingest (MB): {[round(rss_mb(p)) for p in peers]}")
        for path in ("/allocations", "/pins?local=true", "/pins"):
            n, dt = await stream_count(peers[0].rest + path)
            print(f"GET {path}: {n} items in {dt:.2f} s = {n / dt:,.0f} items/s")
        print(f"RSS after listings (MB): {[round(rss_mb(p)) for p in peers]}")
    finally:
        stop_network(peers)


if __name__ == "__main__":
    asyncio.run(main())
