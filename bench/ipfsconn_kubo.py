"""Benchmark of the IPFS connector against a real kubo (or any node given with --api).

Measures: streaming many blocks in one ``block/put``, pin throughput at a given concurrency (the pin
tracker's ``concurrent_pins``), ``pin/ls`` streaming rate, and unpin throughput. Prints one line per figure.

    .venv/bin/python bench/ipfsconn_kubo.py [--pins 2000] [--blocks 5000] [--block-size 262144] [--api MADDR]

Without ``--api`` it builds/starts the pinned kubo (tests/kubo.sh) in a temp repo and stops it afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

from pincluster.ipfsconn.ipfshttp import IPFSHTTPConnector
from pincluster.types.cid import CID, RAW, sha256_multihash


async def run(api: str, n_pins: int, n_blocks: int, block_size: int, concurrency: int) -> None:
    async with IPFSHTTPConnector(api, ipfs_request_timeout=300, pin_timeout=60) as c:
        ident = await c.id()
        ver = await c.version()
        print(f"node {ident.id} version {ver.version}")

        seed = os.urandom(block_size)

        def block(i: int) -> tuple[CID, bytes]:
            data = i.to_bytes(8, "big") + seed[8:]
            return CID.v1(RAW, sha256_multihash(data)), data

        async def blocks() -> AsyncIterator[tuple[CID, bytes]]:
            for i in range(n_blocks):
                yield block(i)

        t = time.perf_counter()
        sent = await c.block_stream(blocks())
        dt = time.perf_counter() - t
        mb = sent * block_size / 1e6
        rate = f"{sent / dt:.0f} blocks/s, {mb / dt:.1f} MB/s"
        print(f"block_stream: {sent} blocks of {block_size} B in {dt:.2f} s = {rate}")

        small = [block(i)[0] for i in range(n_pins)] if n_pins <= n_blocks else []
        if not small:
            print("skip pins: --pins must be <= --blocks")
            return
        sem = asyncio.Semaphore(concurrency)

        async def pin(cid: CID) -> None:
            async with sem:
                await c.pin(cid)

        t = time.perf_counter()
        await asyncio.gather(*(pin(x) for x in small))
        dt = time.perf_counter() - t
        print(f"pin: {n_pins} pins (concurrency {concurrency}) in {dt:.2f} s = {n_pins / dt:.0f} pins/s")

        t = time.perf_counter()
        n = 0
        async for _ in c.pin_ls():
            n += 1
        dt = time.perf_counter() - t
        print(f"pin_ls (recursive+direct): {n} pins in {dt:.3f} s = {n / dt:.0f} pins/s")

        t = time.perf_counter()
        st = await asyncio.gather(*(c.pin_ls_cid(x) for x in small[:200]))
        dt = time.perf_counter() - t
        assert all(s.value == "recursive" for s in st)
        print(f"pin_ls_cid: 200 lookups in {dt:.3f} s = {200 / dt:.0f}/s (unbounded concurrency)")

        async def unpin(cid: CID) -> None:
            async with sem:
                await c.unpin(cid)

        t = time.perf_counter()
        await asyncio.gather(*(unpin(x) for x in small))
        dt = time.perf_counter() - t
        print(f"unpin: {n_pins} unpins (concurrency {concurrency}) in {dt:.2f} s = {n_pins / dt:.0f}/s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--api", help="node API multiaddr; default: start the pinned kubo")
    ap.add_argument("--pins", type=int, default=2000)
    ap.add_argument("--blocks", type=int, default=5000)
    ap.add_argument("--block-size", type=int, default=4096)
    ap.add_argument("--concurrency", type=int, default=10)
    a = ap.parse_args()
    if a.api:
        asyncio.run(run(a.api, a.pins, a.blocks, a.block_size, a.concurrency))
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from kubo import KuboDaemon

    root = Path(tempfile.mkdtemp(prefix="pincluster-bench-kubo-"))
    daemon = KuboDaemon(root).start()
    try:
        asyncio.run(run(daemon.api_multiaddr, a.pins, a.blocks, a.block_size, a.concurrency))
    finally:
        daemon.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
