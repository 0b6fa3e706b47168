"""µs per :meth:`Allocator.allocate` of a replication-1 pin on 3 peers (default ``allocate_by``: tag:group,
freespace) (CPU time), with the metrics cache (the monitor's shared snapshots) and without it (recomputed every pin).

Usage: .venv/bin/python bench/alloc_bench.py [n]
"""

from __future__ import annotations

import asyncio
import sys
import time

from pincluster.allocator.allocate import Allocator
from pincluster.allocator.balanced import BalancedAllocator
from pincluster.config.sections import BalancedAllocatorConfig, PubsubMonConfig
from pincluster.monitor.monitor import Monitor
from pincluster.p2p.keys import PrivateKey
from pincluster.types.cid import CID, sha256_multihash
from pincluster.types.models import Metric
from pincluster.types.peer import PeerID


async def main(n: int) -> None:
    peers = sorted(PrivateKey.generate_ed25519().public_key().peer_id() for _ in range(3))

    async def members() -> list[PeerID]:
        return list(peers)

    async def broadcast(m: Metric) -> None:
        return None

    mon = Monitor(PubsubMonConfig(), broadcast=broadcast, peers=members)
    far = time.time_ns() + 3600 * 10**9
    for i, p in enumerate(peers):
        await mon.log_metric(Metric(name="tag:group", peer=p, value="default", valid=True, partitionable=True,
                                    expire=far))
        await mon.log_metric(Metric(name="freespace", peer=p, value=str(1000 + i), weight=1000 + i, valid=True,
                                    expire=far))
    cids = [CID.v0(sha256_multihash(b"%d" % i)[2:]) for i in range(n)]
    for label, cached in (("recomputed", False), ("cached", True)):
        alloc = Allocator(mon, BalancedAllocator(BalancedAllocatorConfig()))
        if not cached:
            alloc._shared = None
        t = time.process_time()
        for cid in cids:
            await alloc.allocate(cid, (), 1, 1)
        dt = time.process_time() - t
        print(f"allocate rf 1 on 3 peers, {label}: {dt / n * 1e6:.1f} µs/pin")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000))
