"""Node-to-node fetch throughput of the embedded IPFS node (two daemon processes on 127.0.0.1).

Adds a random file (default 256 MiB, a 1025-block DAG) on node A, then on node B, connected with the same
swarm key, times:
  - `pin/add` of the root: every block fetched through the block exchange, verified and stored (fsynced);
  - `cat` of the file on a third node C (fetch, verify, cache the blocks in C's store);
  - a bare exchange in this process walking the DAG from A into memory (no storage: the network path only).

    .venv/bin/python bench/ipfs_fetch_bench.py [--size-mib 256]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import aiohttp

from pincluster.errors import NotFound
from pincluster.ipfs.dag import walk
from pincluster.ipfs.exchange import Exchange
from pincluster.ipfs.node import SWARM_PROTOCOL
from pincluster.ipfs.swarmkey import load_swarm_key
from pincluster.p2p.host import Host
from pincluster.p2p.keys import PrivateKey
from pincluster.types.cid import CID
from pincluster.types.multiaddr import Multiaddr


async def cli(*argv: str) -> None:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "pincluster.ipfs.cli", *argv,
                                                stdout=asyncio.subprocess.DEVNULL)
    assert await proc.wait() == 0


async def start(repo: Path) -> tuple[asyncio.subprocess.Process, str]:
    log = open(repo / "daemon.log", "wb")  # noqa: SIM115 - owned by the child
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "pincluster.ipfs.cli", "--repo", str(repo),
                                                "daemon", stdout=log, stderr=asyncio.subprocess.STDOUT)
    log.close()
    while "Daemon is ready" not in (repo / "daemon.log").read_text():
        await asyncio.sleep(0.1)
    parts = (repo / "api").read_text().strip().split("/")
    return proc, f"http://{parts[2]}:{parts[4]}/api/v0"


class MemStore:
    """Holds nothing: the bench's bare exchange serves no blocks and stores in memory only."""

    async def get(self, cid: CID) -> bytes:
        raise NotFound(str(cid))

    async def has(self, cid: CID) -> bool:
        return False

    async def put_many(self, blocks: Sequence[tuple[CID, bytes]]) -> None:
        return None


async def walk_into_memory(repo_a: Path, a_addr: str, root: str) -> float:
    key = load_swarm_key(repo_a / "swarm.key")
    assert key is not None
    host = Host(PrivateKey.generate_ed25519(), key, SWARM_PROTOCOL, [Multiaddr("/ip4/127.0.0.1/tcp/0")],
                psk_name="swarm.key")
    await host.start()
    ex = Exchange(host, MemStore())
    await ex.start()
    try:
        await host.connect(Multiaddr(a_addr))
        sess = ex.session(60.0, cache=False)
        t0 = time.perf_counter()
        n = 0
        async for _cid, data in walk(sess, CID.decode(root)):
            n += len(data)
        return time.perf_counter() - t0
    finally:
        await ex.stop()
        await host.close()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=256)
    args = ap.parse_args()
    size = args.size_mib << 20
    tmp = Path(tempfile.mkdtemp(prefix="ipfs-fetch-bench-"))
    procs: list[asyncio.subprocess.Process] = []
    try:
        repos: list[Path] = [tmp / n for n in "abc"]
        common = ["--api-addr", "/ip4/127.0.0.1/tcp/0", "--swarm-addr", "/ip4/127.0.0.1/tcp/0",
                  "--fetch-timeout", "60s"]
        await cli("--repo", str(repos[0]), "init", *common, "--swarm-key-gen")
        for repo in repos[1:]:
            await cli("--repo", str(repo), "init", *common, "--swarm-key", str(repos[0] / "swarm.key"))
        urls = []
        for repo in repos:
            p, u = await start(repo)
            procs.append(p)
            urls.append(u)
        timeout = aiohttp.ClientTimeout(total=None)
        async with aiohttp.ClientSession(timeout=timeout) as s:
            async def body() -> AsyncIterator[bytes]:
                sent = 0
                while sent < size:
                    n = min(1 << 20, size - sent)
                    yield os.urandom(n)
                    sent += n

            w = aiohttp.MultipartWriter("form-data")
            part = w.append(body(), {"Content-Type": "application/octet-stream"})
            part.headers["Content-Disposition"] = 'form-data; name="file"; filename="bench.bin"'
            t0 = time.perf_counter()
            async with s.post(f"{urls[0]}/add", data=w) as r:
                root = [line for line in (await r.text()).splitlines() if '"Hash"' in line][-1]
            t_add = time.perf_counter() - t0
            cid = json.loads(root)["Hash"]
            async with s.post(f"{urls[0]}/id") as r:
                a_addr = (await r.json())["Addresses"][0]
            for u in urls[1:]:
                async with s.post(f"{u}/swarm/connect", params={"arg": a_addr}) as r:
                    assert r.status == 200, await r.text()

            t0 = time.perf_counter()
            async with s.post(f"{urls[1]}/pin/add", params={"arg": cid}) as r:
                assert r.status == 200, await r.text()
            t_pin = time.perf_counter() - t0

            t0 = time.perf_counter()
            got = 0
            async with s.post(f"{urls[2]}/cat", params={"arg": cid}) as r:
                assert r.status == 200, await r.text()
                async for chunk in r.content.iter_chunked(1 << 20):
                    got += len(chunk)
            t_cat = time.perf_counter() - t0
            assert got == size, (got, size)

            t_mem = await walk_into_memory(repos[0], a_addr, cid)

        mb = size / 1e6
        print(f"DAG: {args.size_mib} MiB file, root {cid}")
        print(f"add on A (import + fsynced store):           {t_add:6.2f} s  {mb / t_add:7.1f} MB/s")
        print(f"pin/add on B (fetch + verify + fsynced store): {t_pin:6.2f} s  {mb / t_pin:7.1f} MB/s")
        print(f"cat on C (fetch + verify + cache in store):    {t_cat:6.2f} s  {mb / t_cat:7.1f} MB/s")
        print(f"exchange only (walk into memory, no storage):  {t_mem:6.2f} s  {mb / t_mem:7.1f} MB/s")
    finally:
        for p in procs:
            if p.returncode is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            await p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
