"""REST API + SDK throughput on loopback: NDJSON streaming, small GETs, /add uploads.

Run: ``.venv/bin/python bench/bench_restapi.py [n_pins]``. The cluster is an in-memory fake, so the figures
are the HTTP layer's (server encode + client decode), not the cluster's.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator, Collection
from typing import Any

from pincluster.api.common.settings import HTTPAPISettings
from pincluster.api.rest.server import RestAPI
from pincluster.client import Client
from pincluster.ipfs.unixfs.importer import ImportEntry, import_entries
from pincluster.p2p.keys import PrivateKey
from pincluster.types.cid import CID, sha256_multihash
from pincluster.types.models import ID, AddedOutput, Pin, PinOptions
from pincluster.types.multiaddr import Multiaddr
from pincluster.types.status import PinType


class BenchCluster:
    def __init__(self, n: int) -> None:
        self.me = PrivateKey.generate_ed25519().public_key().peer_id()
        self.pinset = [Pin.with_options(CID.from_bytes(sha256_multihash(i.to_bytes(8, "big"))), PinOptions(),
                                        allocations=(self.me,)) for i in range(n)]

    async def id(self) -> ID:
        return ID(id=self.me, version="1.1.6")

    async def pins(self, types: Collection[PinType] | None = None) -> AsyncIterator[Pin]:
        for p in self.pinset:
            yield p

    async def add(self, entries: Any, params: Any) -> AsyncIterator[AddedOutput]:
        async for ev in import_entries(entries, None, params.import_options):
            if ev.cid is not None:
                yield AddedOutput(name=ev.name, cid=ev.cid, size=ev.size)


async def main(n: int) -> None:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        pass
    cluster = BenchCluster(n)
    api = RestAPI(cluster, HTTPAPISettings(listen=(Multiaddr("/ip4/127.0.0.1/tcp/0"),)))  # type: ignore[arg-type]
    await api.start()
    try:
        async with Client(api.url) as cl:
            t = time.perf_counter()
            count = 0
            async for _ in cl.allocations():
                count += 1
            dt = time.perf_counter() - t
            print(f"GET /allocations stream, {count} pins: {dt:.2f} s, {count / dt:,.0f} pins/s (decoded by the SDK)")
            t = time.perf_counter()
            resp = await cl._send("GET", "/allocations")
            size = 0
            async for c in resp.iter_body():
                size += len(c)
            dt = time.perf_counter() - t
            print(f"GET /allocations raw bytes: {size / 1e6:.1f} MB in {dt:.2f} s, {n / dt:,.0f} pins/s (server side)")
            reqs = 2000
            t = time.perf_counter()
            for _ in range(reqs):
                await cl.id()
            dt = time.perf_counter() - t
            print(f"GET /id sequential on one keep-alive connection: {reqs / dt:,.0f} req/s, "
                  f"{dt / reqs * 1e3:.2f} ms each")
            data = os.urandom(64 * 1024 * 1024)

            async def chunks() -> AsyncIterator[bytes]:
                for i in range(0, len(data), 1 << 20):
                    yield data[i:i + (1 << 20)]

            t = time.perf_counter()
            out = [o async for o in cl.add([ImportEntry("big.bin", "file", chunks())])]
            dt = time.perf_counter() - t
            print(f"POST /add 64 MiB (only-hash import in the fake): {dt:.2f} s, {64 / dt:.0f} MiB/s, "
                  f"root {out[-1].cid}")
    finally:
        await api.stop()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000))
