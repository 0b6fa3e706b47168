"""Cluster benchmarks on a real 3-peer local network (daemons with embedded IPFS nodes on 127.0.0.1).

1. REST pin ingest: N pins (random CIDs, replication ``--rf``, default 1) posted by C concurrent clients,
   spread over the 3 peers; prints committed pins/s (each 200 answer means committed by Raft).
2. Listing: ``GET /allocations`` (the shared pinset) and ``GET /pins?local=true`` (this peer's statuses) and
   ``GET /pins`` (every peer's statuses, merged) twice, streamed and counted; prints items/s. Each daemon fills
   its listing cache (``pintracker.heads``) once ready, in the background, and the bench waits for the daemons
   to be idle first: both merged listings read unchanged pages from the cache.
3. Daemon RSS (VmRSS of each peer process) after ingest and after the listings; what the ingest wrote to storage
   and sent between the peers (their ``GET /health/bandwidth``), per pin.
4. With ``--ctl``: what a user waits for, ``ipfs-cluster-ctl status``, ``status --local`` and ``pin ls`` of the
   whole pinset (text output read from a pipe), with the ctl's own CPU time per item.

Besides the rates (which depend on how busy the machine is), it prints the CPU time the three daemons used
per pin (user+system, from /proc), which compares runs made under different loads, and the two rates that
CPU time allows (``ceilings``): the busiest daemon on one core, and every process on the machine's cores. At
its start and end it prints the CPU time of one step of a bare Python loop: on this VM it moved between 49 and
122 ns within one hour, and from 49 to 101 ns within one run. It does not predict the listings (they depend on
memory and caches more than this loop does: the 49 ns minutes gave slower listings than the 115 ns ones), but
start and end figures far apart flag a run whose host changed speed under it.

``--listing N`` skips the ingest: the peers start once (to form their peerset) and stop; every peer's state
then gets the same N pins (``state import`` on each peer, keeping the peerset), allocated round-robin with
replication 1 and each stamped with its own creation time (as pins made through the API are), and each
allocated peer's embedded IPFS node records its share as recursive pins (its ``pins.sqlite``), so that the
peers report ``pinned``/``remote`` without any IPFS work. Then the three listings run, with RSS before and
after.

Usage: .venv/bin/python bench/cluster_bench.py [--pins 100000] [--clients 50] [--rf 1] [--repeat N]
       .venv/bin/python bench/cluster_bench.py --listing 1000000 [--ctl]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from loadgen import count_lines, host_port, post_pins, process_cpu_seconds, python_step_ns

from pincluster.config import load_config
from pincluster.localnet import CTL, Peer, init_peers, start_network, stop_network
from pincluster.state.ops import replace_pinset
from pincluster.types.cid import CID
from pincluster.types.models import Pin
from pincluster.types.peer import PeerID


def rss_mb(peer: Peer) -> float:
    pid = peer.running_pid()
    if pid is None:
        return float("nan")
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(peer: Peer) -> float:
    """User + system CPU time of the peer's daemon so far."""
    pid = peer.running_pid()
    return float("nan") if pid is None else process_cpu_seconds(pid)


def io_written(peer: Peer) -> tuple[int, int]:
    """(bytes the peer's daemon sent to storage, its write system calls) so far, from /proc/PID/io. Pages written
    through its journal's shared mapping count when the kernel writes them back."""
    pid = peer.running_pid()
    if pid is None:
        return 0, 0
    fields = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    return int(fields["write_bytes"]) - int(fields["cancelled_write_bytes"]), int(fields["syscw"])


def bytes_sent(peers: list[Peer]) -> dict[str, int]:
    """Bytes every peer has sent to the others so far, per protocol (each peer's ``GET /health/bandwidth``)."""
    out: dict[str, int] = {}
    for p in peers:
        with urllib.request.urlopen(f"{p.rest}/health/bandwidth", timeout=30) as resp:
            for proto, st in (json.loads(resp.read()) or {}).items():
                out[proto] = out.get(proto, 0) + int(st["total_out"])
    return out


def disk_sectors_written() -> int:
    """512-byte sectors written to the machine's disks so far (/proc/diskstats, whole disks only)."""
    total = 0
    for line in Path("/proc/diskstats").read_text().splitlines():
        f = line.split()
        if re.fullmatch(r"(sd[a-z]+|vd[a-z]+|xvd[a-z]+|nvme\d+n\d+)", f[2]):
            total += int(f[9])
    return total


def machine_busy() -> tuple[float, float, float]:
    """(busy, total, stolen) CPU jiffies of the whole machine so far, from /proc/stat. ``stolen`` is the time a
    virtual machine's CPUs waited for the host (counted in ``busy``): CPU this machine did not get."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    steal = fields[7] if len(fields) > 7 else 0
    return sum(fields) - idle, sum(fields), steal


def bulk_load(peers: list[Peer], n: int) -> None:
    """Give every (stopped) peer the same ``n`` pins, as ``state import`` on each peer does (the peerset is
    kept from the Raft folder the first start left), and record each pin on its allocated peer's IPFS node."""
    ids = [PeerID.decode(p.identity) for p in peers]
    t0 = time.perf_counter()

    start = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

    def pins() -> Iterator[Pin]:
        for i in range(n):
            cid = CID.v0(hashlib.sha256(b"listing-%d" % i).digest())
            yield Pin(cid=cid, allocations=(ids[i % len(peers)],), replication_factor_min=1,
                      replication_factor_max=1, timestamp=start + timedelta(microseconds=1234 * i + 7))

    for p in peers:
        res = replace_pinset(load_config(p.folder), p.identity, pins())
        if len(res.members) != len(peers):
            raise SystemExit(f"{p.folder}: the imported peerset has {len(res.members)} members, not {len(peers)}")
    for k, p in enumerate(peers):
        path = p.folder / "ipfs" / "pins"  # the node's pin database (a folder holding it, in older repos)
        db = sqlite3.connect(path / "pins.sqlite" if path.is_dir() else path)
        db.execute("CREATE TABLE IF NOT EXISTS pins (cid BLOB PRIMARY KEY, mode INTEGER NOT NULL) WITHOUT ROWID")
        with db:
            db.executemany("INSERT OR REPLACE INTO pins (cid, mode) VALUES (?, 1)",
                           ((pin.cid.bytes,) for j, pin in enumerate(pins()) if j % len(peers) == k))
        db.close()
    print(f"bulk-loaded {n} pins into 3 states and IPFS pinsets in {time.perf_counter() - t0:.1f} s")


async def settle(peers: list[Peer], idle: float = 0.1, limit: float = 300.0) -> None:
    """Wait until the daemons are nearly idle (at start each peer recovers its whole pinset, a full walk), so
    that the CPU charged to a listing is the listing's."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit:
        c0 = sum(cpu_seconds(p) for p in peers)
        await asyncio.sleep(1.0)
        if sum(cpu_seconds(p) for p in peers) - c0 < idle:
            break
    print(f"daemons idle after {time.perf_counter() - t0:.1f} s")


async def listings(peers: list[Peer], paths: tuple[str, ...] = ("/allocations", "/pins?local=true", "/pins", "/pins"),
                   expected: int = 0) -> None:
    """Each listing of ``paths`` once, in order (a path listed again is marked so)."""
    await settle(peers)
    done: set[str] = set()
    for path in paths:
        label = path + (" again" if path in done else "")
        done.add(path)
        cpu0 = [cpu_seconds(p) for p in peers]
        own0 = os.times()
        n, dt, first = await stream_count(peers[0].rest + path)
        own1 = os.times()
        if path == "/pins" and n:  # a merged item must show every peer (a listing of one peer is cheaper)
            shown = len(json.loads(first)["peer_map"])
            if shown != len(peers):
                print(f"  WRONG: the first item of {path} shows {shown} peers, not {len(peers)}")
        cpus = [cpu_seconds(p) - c0 for p, c0 in zip(peers, cpu0, strict=True)]
        cpu = sum(cpus)
        per = (f"{cpu / n * 1e6:.1f} µs CPU/item = " + " + ".join(f"{c / n * 1e6:.1f}" for c in cpus)
               + " per peer") if n else "-"
        print(f"GET {label}: {n} items in {dt:.2f} s = {n / dt:,.0f} items/s ({per}); "
              f"RSS (MB): {[round(rss_mb(p)) for p in peers]}")
        if n:
            print("  " + ceilings(cpus[0], cpu + (own1.user + own1.system) - (own0.user + own0.system), n, "items"))
        if expected and n != expected:
            print(f"  INCOMPLETE: {n} of {expected} items (the stream ended with an error trailer?)")


_RAFT_STOPPED = re.compile(r"Raft stopped: this peer sent (\d+) commands carrying (\d+) pinset changes")


def raft_batching(peers: list[Peer]) -> str:
    """How many pins a Raft command carried, from the line each stopped daemon logs: the CPU per pin falls as
    commands carry more (the daemons' CPU per command is several times that per pin)."""
    commands = changes = 0
    for peer in peers:
        for m in _RAFT_STOPPED.finditer(peer.log_path.read_text(errors="replace")):
            commands, changes = commands + int(m[1]), changes + int(m[2])
    if not commands:
        return "Raft batching: no 'Raft stopped' line in the peers' logs"
    return (f"Raft batching: {commands} commands carried {changes} pinset changes "
            f"({changes / commands:.1f} a command; the peers' whole runs, start-up included)")


def ceilings(one: float, total: float, n: int, unit: str) -> str:
    """The rates the CPU time allows, for work that cost ``one`` CPU seconds in the busiest daemon and
    ``total`` in every process (daemons and this load generator) for ``n`` units: a daemon runs its Python on
    about one core (one interpreter lock), and all of them share the machine's cores. No tuning of waits
    beats the lower of the two; compare them with the goals (approximate: a daemon's disk syncs and SQLite
    calls run outside the lock)."""
    cores = os.cpu_count() or 1
    return (f"ceilings from CPU time: {n / one:,.0f} {unit}/s for the busiest daemon on one core, "
            f"{cores * n / total:,.0f} {unit}/s for every process on {cores} cores")


def ctl_listings(peer: Peer, expected: int) -> None:
    """The whole pinset through ``ipfs-cluster-ctl`` (text output read from a pipe, as a user's ``| less``
    would): seconds, items/s and the ctl's own CPU per item. The text is counted as it comes, not kept."""
    for args in (["status"], ["status", "--local"], ["pin", "ls"]):
        t0, c0 = time.perf_counter(), os.times()
        proc = subprocess.Popen([CTL, "--host", peer.rest_multiaddr, *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        assert proc.stdout is not None and proc.stderr is not None
        lines = heads = size = 0
        last = b""
        while chunk := proc.stdout.read(1 << 20):
            lines += chunk.count(b"\n")
            heads += (last + chunk).count(b":\n")  # an item's first line (status)
            last, size = chunk[-1:], size + len(chunk)
        err = proc.stderr.read()
        code = proc.wait()
        dt, c1 = time.perf_counter() - t0, os.times()
        cpu = (c1.children_user - c0.children_user) + (c1.children_system - c0.children_system)
        items = lines if args == ["pin", "ls"] else heads
        print(f"ipfs-cluster-ctl {' '.join(args)}: {items} items in {dt:.2f} s = {items / dt:,.0f} items/s "
              f"(ctl CPU {cpu / max(1, items) * 1e6:.1f} µs/item; {size / 1e6:.0f} MB of text)")
        if code or items != expected:
            print(f"  exit code {code}, {items} of {expected} items: {err[-300:]!r}")


async def ingest(peers: list[Peer], n: int, clients: int, rf: int = 1) -> float:
    """Post ``n`` pins from ``clients`` keep-alive connections (spread over the peers); committed pins/s."""
    cids = [str(CID.v0(hashlib.sha256(b"bench-%d-%d" % (os.getpid(), i)).digest())) for i in range(n)]
    targets = [host_port(peer.rest) for peer in peers]
    t0 = time.perf_counter()
    errors = await post_pins(targets, iter(cids), clients, f"replication-min={rf}&replication-max={rf}")
    dt = time.perf_counter() - t0
    if errors:
        print(f"  {errors} pins failed")
    return (n - errors) / dt


async def stream_count(url: str) -> tuple[int, float, bytes]:
    """(lines, seconds, first line) of a streamed listing, read with the bench's raw HTTP reader (aiohttp's
    client would cost ~1.7 µs per line on the same 2 cores, charged to the daemons' rate). A stream that
    ends with an error trailer is reported."""
    host, port = host_port(url)
    path = "/" + url.removeprefix("http://").partition("/")[2]
    t0 = time.perf_counter()
    count, first, trailers = await count_lines(host, port, path)
    dt = time.perf_counter() - t0
    errors = [line for line in trailers.decode(errors="replace").split("\r\n") if line.partition(":")[2].strip()]
    if errors:
        print(f"  error trailer: {'; '.join(errors)}")
    return count, dt, first


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pins", type=int, default=100_000)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--rf", type=int, default=1, help="replication factor of the pins (-1: every peer)")
    ap.add_argument("--listing", type=int, default=0, metavar="N",
                    help="bulk-load N pins before start and measure only the listings")
    ap.add_argument("--keep", action="store_true", help="keep the peers' folders")
    ap.add_argument("--ctl", action="store_true", help="also time ipfs-cluster-ctl status and pin ls")
    ap.add_argument("--paths", default="/allocations,/pins?local=true,/pins,/pins",
                    help="comma-separated listings to measure")
    ap.add_argument("--repeat", type=int, default=1, metavar="N",
                    help="run the whole bench N times, each on a new network, and print the medians (this "
                         "machine's speed drifts by ±20%% within minutes: one run says little)")
    args = ap.parse_args()
    print(f"machine speed: a bare Python loop step takes {python_step_ns():.0f} ns of CPU")
    runs = [await run(args) for _ in range(max(1, args.repeat))]
    print(f"machine speed at the end: {python_step_ns():.0f} ns per bare loop step")
    ingests = [r for r in runs if r is not None]
    if len(ingests) > 1:
        rates = sorted(r[0] for r in ingests)
        cpus = sorted(r[1] for r in ingests)
        print(f"REST ingest over {len(ingests)} runs: median {statistics.median(rates):,.0f} committed pins/s "
              f"(range {rates[0]:,.0f}–{rates[-1]:,.0f}); daemon CPU median {statistics.median(cpus):.2f} ms/pin "
              f"(range {cpus[0]:.2f}–{cpus[-1]:.2f})")


async def run(args: argparse.Namespace) -> tuple[float, float] | None:
    """One bench run on a new network: (committed pins/s, daemon CPU ms per pin) of its ingest, if any."""
    result: tuple[float, float] | None = None
    root = Path(tempfile.mkdtemp(prefix="pincluster-bench-"))
    peers = init_peers(root, 3, service_changes={"ipfs_connector.ipfshttp.pin_timeout": "1h0m0s"})
    try:
        if args.listing:
            start_network(peers, timeout=600)  # the peers form their Raft peerset, then stop to be loaded
            stop_network(peers)
            bulk_load(peers, args.listing)
            start_network(peers, bootstrap=False, timeout=600)
        else:
            start_network(peers, timeout=600)
        print(f"3 peers up; RSS (MB): {[round(rss_mb(p)) for p in peers]}")
        if not args.listing:
            cpu0, io0, disk0 = [cpu_seconds(p) for p in peers], [io_written(p) for p in peers], disk_sectors_written()
            net0 = bytes_sent(peers)
            busy0, own0 = machine_busy(), os.times()
            rate = await ingest(peers, args.pins, args.clients, args.rf)
            cpu = [cpu_seconds(p) - c for p, c in zip(peers, cpu0, strict=True)]
            io = [(b - b0, w - w0) for (b, w), (b0, w0) in zip([io_written(p) for p in peers], io0, strict=True)]
            disk = (disk_sectors_written() - disk0) * 512
            net = {k: v - net0.get(k, 0) for k, v in bytes_sent(peers).items()}
            busy1, own1 = machine_busy(), os.times()
            own = (own1.user + own1.system) - (own0.user + own0.system)
            print(f"REST ingest: {args.pins} pins (rf {args.rf}), {args.clients} clients over 3 peers: "
                  f"{rate:,.0f} committed pins/s; daemon CPU {sum(cpu) / args.pins * 1e3:.2f} ms/pin "
                  f"(per peer {[round(c / args.pins * 1e3, 2) for c in cpu]})")
            result = (rate, sum(cpu) / args.pins * 1e3)
            print(f"  load generator CPU {own / args.pins * 1e3:.2f} ms/pin; machine busy "
                  f"{(busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]):.0%} of {os.cpu_count()} cores, of which "
                  f"{(busy1[2] - busy0[2]) / max(1, busy1[1] - busy0[1]):.0%} stolen by the host")
            print("  " + ceilings(max(cpu), sum(cpu) + own, args.pins, "pins"))
            print(f"  written to storage per pin: daemons {[round(b / args.pins / 1024, 1) for b, _ in io]} KiB "
                  f"in {[round(w / args.pins, 2) for _, w in io]} write calls; the machine's disks "
                  f"{disk / args.pins / 1024:.1f} KiB")
            print("  sent between the peers per pin (all together, encrypted): "
                  + ", ".join(f"{k} {v / args.pins:,.0f} B" for k, v in sorted(net.items())))
            print(f"RSS after ingest (MB): {[round(rss_mb(p)) for p in peers]}")
            await asyncio.sleep(2)  # let the trackers settle
        await listings(peers, tuple(p for p in args.paths.split(",") if p), args.listing or args.pins)
        print(f"RSS after listings (MB): {[round(rss_mb(p)) for p in peers]}")
        if args.ctl:
            ctl_listings(peers[0], args.listing or args.pins)
    finally:
        stop_network(peers)
        if result is not None:
            print(raft_batching(peers))
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return result


if __name__ == "__main__":
    asyncio.run(main())
