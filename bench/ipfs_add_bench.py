"""Benchmark of the UnixFS importer (``ipfs add``): hashing speed, storage speed and memory.

Prints three figures for one file (default 1 GiB of random bytes):
  1. ``add --only-hash`` throughput as a ratio to plain ``hashlib.sha256`` over the same bytes (goal ≥ 0.6);
  2. ``add`` with durable storage into a flatfs blockstore, in MB/s (goal ≥ 150 MB/s);
  3. peak RSS of the process doing that add (goal < 150 MB).
Each measurement runs in a fresh child process so the RSS figure is the add's own.

    .venv/bin/python bench/ipfs_add_bench.py [--size-mib 1024] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

READ = 1 << 20
CHUNK = 262144


def make_file(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 16 << 20)
            f.write(os.urandom(n))
            left -= n


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def child_hashlib(path: str) -> dict[str, float]:
    h = hashlib.sha256()
    c = _cpu()
    t = time.perf_counter()
    with open(path, "rb") as f:
        while piece := f.read(READ):
            h.update(piece)
    return {"seconds": time.perf_counter() - t, "cpu": _cpu() - c}


def child_add(path: str, only_hash: bool, repo: str | None) -> dict[str, float | str]:
    from pincluster.ipfs.blockstore import FlatFSBlockstore
    from pincluster.ipfs.unixfs.importer import AddOptions, ImportEntry, import_entries

    async def main() -> tuple[float, float, str]:
        loop = asyncio.get_running_loop()
        f = open(path, "rb")  # noqa: SIM115

        def read_some() -> list[bytes]:
            # chunk-sized reads, as kubo's splitter reads its input (no re-chunking copies), 16 per hop
            out = []
            for _ in range(16):
                piece = f.read(CHUNK)
                if not piece:
                    break
                out.append(piece)
            return out

        async def chunks() -> AsyncIterator[bytes]:
            # a read-ahead reader, as a network upload would be: the next reads overlap hashing
            queue: asyncio.Queue[list[bytes]] = asyncio.Queue(maxsize=2)

            async def reader() -> None:
                while True:
                    pieces = await loop.run_in_executor(None, read_some)
                    await queue.put(pieces)
                    if not pieces:
                        return

            task = asyncio.create_task(reader())
            while pieces := await queue.get():
                for piece in pieces:
                    yield piece
            await task

        async def entries() -> AsyncIterator[ImportEntry]:
            yield ImportEntry("file", "file", chunks())

        sink = FlatFSBlockstore(Path(repo)) if repo else None
        c = _cpu()
        t = time.perf_counter()
        root = ""
        async for ev in import_entries(entries(), sink, AddOptions(only_hash=only_hash)):
            root = str(ev.cid)
        dt = time.perf_counter() - t
        f.close()
        return dt, _cpu() - c, root

    dt, cpu, root = asyncio.run(main())
    return {"seconds": dt, "cpu": cpu, "cid": root,
            "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_child(*args: str) -> dict[str, float | str]:
    out = subprocess.run([sys.executable, __file__, "--child", *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--dir", default=None, help="where to put the test file and repo (default: a temp dir)")
    ap.add_argument("--child", nargs="*")
    a = ap.parse_args()
    if a.child:
        kind = a.child[0]
        if kind == "hashlib":
            res: dict[str, float] | dict[str, float | str] = child_hashlib(a.child[1])
        else:
            res = child_add(a.child[1], kind == "onlyhash", a.child[2] if len(a.child) > 2 else None)
        print(json.dumps(res))
        return
    size = a.size_mib << 20
    work = Path(tempfile.mkdtemp(prefix="ipfs-add-bench-", dir=a.dir))
    try:
        path = work / "input.bin"
        make_file(path, size)
        with open(path, "rb") as f:  # warm the page cache so every run reads from memory
            while f.read(16 << 20):
                pass
        hl = min((run_child("hashlib", str(path)) for _ in range(2)), key=lambda r: float(r["seconds"]))
        base = float(hl["seconds"])
        oh = min((run_child("onlyhash", str(path)) for _ in range(2)), key=lambda r: float(r["seconds"]))
        repo = work / "repo"
        st = run_child("store", str(path), str(repo))
        assert st["cid"] == oh["cid"], "stored add and only-hash add disagree"
        mb = size / 1e6
        print(f"file: {a.size_mib} MiB random, root {oh['cid']}")
        print(f"hashlib.sha256:      {mb / base:8.1f} MB/s")
        print(f"add --only-hash:     {mb / float(oh['seconds']):8.1f} MB/s  ratio {base / float(oh['seconds']):.2f}"
              "  (goal >= 0.6)")
        print(f"CPU time: hashlib {float(hl['cpu']):.2f}s, add --only-hash {float(oh['cpu']):.2f}s"
              f" (CPU ratio {float(hl['cpu']) / float(oh['cpu']):.2f}); load average {os.getloadavg()[0]:.1f}")
        print(f"add (flatfs, fsync): {mb / float(st['seconds']):8.1f} MB/s  (goal >= 150)")
        print(f"peak RSS during add: {float(st['maxrss_mb']):8.1f} MB    (goal < 150)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
