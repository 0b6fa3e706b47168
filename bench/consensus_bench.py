"""Raft consensus benchmark: 3 peer processes (tests/integration/raft_peer.py) on 127.0.0.1.

Prints:
- committed pins/s for N pins (default 100k): one client sending one pin per request, one after the other
  (a short run: it is latency-bound); one client sending the pins in requests of 1000; 50 concurrent
  clients sending one pin per request;
- restart time of the whole cluster with M pins in the state (default 1M): from process start to leader
  elected and state verified;
- RSS of each peer with M pins, after loading and after the restart.

Usage: python bench/consensus_bench.py [--pins 100000] [--big 1000000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

PEER = Path(__file__).resolve().parent.parent / "tests" / "integration" / "raft_peer.py"
SECRET = "7e" * 32
EXTRA: list[str] = []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Peer:
    def __init__(self, root: Path, name: str) -> None:
        self.name = name
        self.data = root / name
        self.port = free_port()
        self.proc: subprocess.Popen[str] | None = None
        self.ctl = 0

    def start(self, init: str) -> None:
        with open(self.data.with_suffix(".log"), "a") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(PEER), "--peer-id", self.name, "--data", str(self.data), "--raft-port",
                 str(self.port), "--secret", SECRET, "--init", init, "--config", json.dumps({}),
                 "--exit-on-stdin-eof", *EXTRA],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
            )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("READY"):
            raise SystemExit(f"{self.name} failed to start: {line!r}")
        self.ctl = int(line.split()[1])

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)
            self.proc = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ctl}"


async def wait_leader(s: aiohttp.ClientSession, peers: list[Peer], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            sts = [await (await s.get(p.url + "/status")).json() for p in peers]
            if all(st["leader"] and st["ready"] for st in sts):
                return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.02)
    raise SystemExit("no leader")


def cpu_s(peers: list[Peer]) -> float:
    """User + system CPU seconds used so far by the peer processes (to compare CPU per pin, not noisy rates)."""
    total = 0
    for p in peers:
        if p.proc is not None:
            fields = Path(f"/proc/{p.proc.pid}/stat").read_text().rpartition(")")[2].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def keys(n: int, tag: int) -> list[str]:
    return [tag.to_bytes(2, "big").hex() + os.urandom(32).hex() for _ in range(n)]


async def pin(s: aiohttp.ClientSession, p: Peer, ks: list[str]) -> int:
    async with s.post(p.url + "/pin", json={"keys": ks, "value": "ab" * 60}) as r:
        body = await r.json()
    if body["failed"]:
        raise SystemExit(f"failed pins: {body['failed'][:3]}")
    return len(body["acked"])


async def load(s: aiohttp.ClientSession, p: Peer, count: int, conc: int, tag: int) -> dict[str, Any]:
    async with s.post(p.url + "/load", json={"count": count, "concurrency": conc, "tag": f"{tag:02x}"}) as r:
        return await r.json()  # type: ignore[no-any-return]


async def concurrent_writers(s: aiohttp.ClientSession, peers: list[Peer], n: int) -> None:
    t = time.perf_counter()
    c0 = cpu_s(peers)
    per = [n // 3 + (1 if i < n % 3 else 0) for i in range(3)]
    rs = await asyncio.gather(*(load(s, p, per[i], [17, 17, 16][i], 4 + i) for i, p in enumerate(peers)))
    dt = time.perf_counter() - t
    print(f"50 concurrent writers (17/17/16 in the 3 peer processes), one pin at a time each: {n} pins in "
          f"{dt:.2f}s = {n / dt:,.0f} pins/s (p50 {max(r['p50'] for r in rs) * 1000:.1f} ms, "
          f"p99 {max(r['p99'] for r in rs) * 1000:.1f} ms); peers' CPU {(cpu_s(peers) - c0) / n * 1e3:.3f} ms/pin "
          f"summed over the 3 peers")


async def throughput(s: aiohttp.ClientSession, peers: list[Peer], n: int, quick: bool = False) -> None:
    if quick:
        await concurrent_writers(s, peers, n)
        return
    seq_n = min(500, n)
    t = time.perf_counter()
    for k in keys(seq_n, 1):
        await pin(s, peers[1], [k])
    dt = time.perf_counter() - t
    print(f"one client, one pin per request, sequential: {seq_n} pins in {dt:.2f}s = {seq_n / dt:,.0f} pins/s")

    t = time.perf_counter()
    ks = keys(n, 2)
    for i in range(0, n, 1000):
        await pin(s, peers[1], ks[i:i + 1000])
    dt = time.perf_counter() - t
    print(f"one client, 1000 pins per request: {n} pins in {dt:.2f}s = {n / dt:,.0f} pins/s")

    t, c0 = time.perf_counter(), cpu_s(peers)
    r1 = await load(s, peers[1], min(n, 2000), 1, 3)
    dt = time.perf_counter() - t
    print(f"one writer in a peer process, one pin at a time: {r1['count']} pins in {dt:.2f}s = "
          f"{r1['count'] / dt:,.0f} pins/s "
          f"(p50 {r1['p50'] * 1000:.1f} ms, p99 {r1['p99'] * 1000:.1f} ms); "
          f"peers' CPU {(cpu_s(peers) - c0) / max(1, r1['count']) * 1e3:.3f} ms/pin summed over the 3 peers")
    await concurrent_writers(s, peers, n)

    ks = keys(min(n, 20000), 9)
    queue = list(reversed(ks))

    async def client(i: int) -> None:
        while queue:
            await pin(s, peers[i % 3], [queue.pop()])

    t = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(50)))
    dt = time.perf_counter() - t
    print(f"50 concurrent HTTP clients of the test harness, one pin per request: {len(ks)} pins in "
          f"{dt:.2f}s = {len(ks) / dt:,.0f} pins/s (bound by the harness's HTTP, not by Raft)")


async def run(args: argparse.Namespace) -> None:
    root = Path(args.keep or tempfile.mkdtemp(prefix="raftbench-"))
    root.mkdir(parents=True, exist_ok=True)
    peers = [Peer(root, f"b{i}") for i in range(3)]
    init = ",".join(f"{p.name}@127.0.0.1:{p.port}" for p in peers)
    for p in peers:
        p.start(init)
    conn = aiohttp.TCPConnector(limit=200)
    try:
        async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=600)) as s:
            await wait_leader(s, peers)
            n = args.pins
            if n:
                await throughput(s, peers, n, args.quick)

            if args.big:
                have = (min(500, n) + n + min(n, 2000) + n + min(n, 20000)) if n else 0
                todo = max(0, args.big - have)
                t = time.perf_counter()
                chunks = [keys(min(5000, todo - i), 4) for i in range(0, todo, 5000)]
                sem = asyncio.Semaphore(4)

                async def bulk(c: list[str], i: int) -> None:
                    async with sem:
                        await pin(s, peers[i % 3], c)

                await asyncio.gather(*(bulk(c, i) for i, c in enumerate(chunks)))
                dt = time.perf_counter() - t
                print(f"bulk load of {todo} more pins (5000 per request, 4 in flight): {dt:.1f}s = "
                      f"{todo / max(dt, 1e-9):,.0f} pins/s")
                for p in peers:
                    async with s.post(p.url + "/wait_sync", json={"timeout": 120}) as r:
                        await r.json()
                digests = [await (await s.get(p.url + "/digest")).json() for p in peers]
                count = digests[0]["count"]
                assert all(d == digests[0] for d in digests), "peers differ"
                print(f"state: {count:,} pins, identical on the 3 peers")
                print("RSS after loading: " + ", ".join(f"{p.name} {rss_mb(p.proc.pid):.0f} MB" for p in peers
                                                        if p.proc))
                sizes = {f.name: f.stat().st_size for f in peers[0].data.iterdir()}
                print(f"data folder of one peer: {json.dumps(sizes)}")
    finally:
        for p in peers:
            p.stop()
        for p in peers:
            with contextlib.suppress(OSError):
                lines = [ln for ln in p.data.with_suffix(".log").read_text().splitlines() if "Raft stopped" in ln]
                if lines:
                    print(f"{p.name}: {lines[-1].partition('Raft stopped: ')[2]}")

    if args.big:
        t = time.perf_counter()
        for p in peers:
            p.start(init)
        async with aiohttp.ClientSession() as s:
            await wait_leader(s, peers)
            ready = time.perf_counter() - t
            d = await (await s.get(peers[0].url + "/digest")).json()
            print(f"restart of the 3 peers with {d['count']:,} pins: leader and ready after {ready:.2f}s")
            t2 = time.perf_counter()
            await pin(s, peers[2], keys(1, 5))
            print(f"first write after restart committed in {time.perf_counter() - t2:.3f}s")
            print("RSS after restart: " + ", ".join(f"{p.name} {rss_mb(p.proc.pid):.0f} MB" for p in peers if p.proc))
        for p in peers:
            p.stop()
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pins", type=int, default=100_000)
    ap.add_argument("--big", type=int, default=1_000_000)
    ap.add_argument("--keep", default="")
    ap.add_argument("--no-sync-journal", action="store_true", help="do not msync the journal before acks")
    ap.add_argument("--quick", action="store_true", help="only the 50-concurrent-writers figure")
    ap.add_argument("--eager-inflight", type=int, default=0, help="the peers' eager_inflight (0: default)")
    args = ap.parse_args()
    if args.eager_inflight:
        EXTRA.extend(["--eager-inflight", str(args.eager_inflight)])
    if args.no_sync_journal:
        EXTRA.append("--no-sync-journal")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
