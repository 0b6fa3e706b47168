"""A test program that runs one Raft consensus peer and a small HTTP control API on 127.0.0.1.

Usage: python raft_peer.py --peer-id P --data DIR --raft-port N --secret HEX [--init P@H:N,...] [--bootstrap H:N]
Prints ``READY <control port>`` on stdout once the Raft endpoint listens (before a leader exists), or
``ERROR <message>`` and exits 1 if the peer refuses to start (e.g. state format version).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import os
import signal
import sys
import threading

from aiohttp import web

from pincluster.consensus.config import raft_config
from pincluster.consensus.raft import RaftConsensus, RaftPeer
from pincluster.errors import PinclusterError
from pincluster.state.store import SQLiteStore

#: Set by ``POST /hold_after_snapshot``: each Raft snapshot written from then on stays as it is on the disk, and
#: PySyncObj is never told it is done, so the journal keeps the entries it holds (the moment between a snapshot's
#: rename and the journal's compaction, held until the test kills the peer).
HOLD_AFTER_SNAPSHOT = threading.Event()
held_snapshots = 0


def _hold_after_snapshot() -> None:
    original = SQLiteStore.snapshot_to

    def snapshot_to(self: SQLiteStore, *args: object, **kwargs: object) -> object:
        global held_snapshots
        info = original(self, *args, **kwargs)  # type: ignore[arg-type]
        if HOLD_AFTER_SNAPSHOT.is_set():
            held_snapshots += 1
            threading.Event().wait()  # the snapshot thread never returns: only a kill ends this moment
        return info

    SQLiteStore.snapshot_to = snapshot_to  # type: ignore[assignment,method-assign]


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--peer-id", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--raft-port", type=int, required=True)
    p.add_argument("--secret", default="")
    p.add_argument("--init", default="")
    p.add_argument("--bootstrap", default="")
    p.add_argument("--config", default="{}")
    p.add_argument("--batch-ops", type=int, default=256)
    p.add_argument("--max-inflight", type=int, default=128)
    p.add_argument("--eager-inflight", type=int, default=0, help="0: RaftConsensus's default")
    p.add_argument("--no-sync-journal", action="store_true")
    p.add_argument("--exit-on-stdin-eof", action="store_true")
    return p.parse_args(argv)


async def main(argv: list[str]) -> int:
    args = parse_args(argv)
    _hold_after_snapshot()
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format=f"%(asctime)s {args.peer_id} %(name)s %(levelname)s %(message)s"
    )
    raw = {"listen_multiaddress": f"/ip4/127.0.0.1/tcp/{args.raft_port}", **json.loads(args.config)}
    cfg = raft_config(raw)
    init = []
    for spec in filter(None, args.init.split(",")):
        pid, _, addr = spec.partition("@")
        init.append(RaftPeer(pid, addr))
    raft = RaftConsensus(
        peer_id=args.peer_id,
        config=cfg,
        secret=bytes.fromhex(args.secret),
        data_folder=args.data,
        advertise_host="127.0.0.1",
        init_peers=init,
        bootstrap=[b for b in args.bootstrap.split(",") if b],
        batch_ops=args.batch_ops,
        max_inflight=args.max_inflight,
        **({"eager_inflight": args.eager_inflight} if args.eager_inflight else {}),
        sync_journal=not args.no_sync_journal,
    )
    try:
        await raft.start()
    except PinclusterError as exc:
        print(f"ERROR {exc}", flush=True)
        logging.getLogger("pincluster.raft").error("%s", exc)
        return 1

    stop = asyncio.Event()

    async def status(_req: web.Request) -> web.Response:
        st = raft.status()
        return web.json_response(
            {
                "leader": st.leader.partition("@")[0] if st.leader else None,
                "is_leader": st.is_leader,
                "term": st.term,
                "applied": st.applied_index,
                "commit": st.commit_index,
                "ready": st.ready,
                "peers": await raft.peers(),
                "snapshots": raft.snapshots_written,
                "auth_failures": raft.authenticator.failures,
                "store_applied": raft.store.applied_index,
                "entries_replicated": raft.entries_replicated,
                "group_commits": [raft.group_commits, raft.group_commits_fsynced],
            }
        )

    async def pin(req: web.Request) -> web.Response:
        body = await req.json()
        keys = [bytes.fromhex(k) for k in body["keys"]]
        value = bytes.fromhex(body.get("value", "00"))
        results = await asyncio.gather(*(raft.log_pin(k, value + k) for k in keys), return_exceptions=True)
        acked = [k.hex() for k, r in zip(keys, results, strict=True) if r is None]
        failed = [[k.hex(), str(r)] for k, r in zip(keys, results, strict=True) if r is not None]
        return web.json_response({"acked": acked, "failed": failed})

    async def unpin(req: web.Request) -> web.Response:
        body = await req.json()
        keys = [bytes.fromhex(k) for k in body["keys"]]
        results = await asyncio.gather(*(raft.log_unpin(k) for k in keys), return_exceptions=True)
        return web.json_response({"failed": [str(r) for r in results if r is not None]})

    async def digest(_req: web.Request) -> web.Response:
        h = hashlib.sha256()
        n = 0
        prev = b""
        ordered = True
        async for k, v in raft.state.list():
            ordered = ordered and k > prev
            prev = k
            h.update(k + b"=" + v + b";")
            n += 1
        return web.json_response({"count": n, "sha256": h.hexdigest(), "ordered": ordered})

    async def has(req: web.Request) -> web.Response:
        body = await req.json()
        missing = [k for k in body["keys"] if await raft.state.get(bytes.fromhex(k)) is None]
        return web.json_response({"missing": missing})

    async def add_peer(req: web.Request) -> web.Response:
        body = await req.json()
        try:
            await raft.add_peer(body["peer_id"], body["address"])
        except PinclusterError as exc:
            return web.json_response({"error": str(exc)}, status=500)
        return web.json_response({"peers": await raft.peers()})

    async def rm_peer(req: web.Request) -> web.Response:
        body = await req.json()
        try:
            await raft.rm_peer(body["peer_id"])
        except PinclusterError as exc:
            return web.json_response({"error": str(exc)}, status=500)
        return web.json_response({"peers": await raft.peers()})

    async def wait_sync(req: web.Request) -> web.Response:
        body = await req.json()
        try:
            await raft.wait_for_sync(float(body.get("timeout", 10)))
        except PinclusterError as exc:
            return web.json_response({"error": str(exc)}, status=504)
        return web.json_response({"ok": True})

    async def load(req: web.Request) -> web.Response:
        """``concurrency`` writers in this process, each committing one pin at a time (no HTTP per pin)."""
        body = await req.json()
        count, conc, tag = int(body["count"]), int(body["concurrency"]), bytes.fromhex(body.get("tag", "00"))
        value = b"\xab" * int(body.get("value_size", 120))
        counter = iter(range(count))
        lat: list[float] = []

        async def writer() -> None:
            loop = asyncio.get_running_loop()
            for i in counter:
                t = loop.time()
                await raft.log_pin(tag + i.to_bytes(8, "big") + b"\x00" * 24, value)
                lat.append(loop.time() - t)

        t0 = asyncio.get_running_loop().time()
        await asyncio.gather(*(writer() for _ in range(conc)))
        elapsed = asyncio.get_running_loop().time() - t0
        lat.sort()
        return web.json_response(
            {"count": count, "elapsed": elapsed, "p50": lat[len(lat) // 2], "p99": lat[int(len(lat) * 0.99)]}
        )

    async def hold_after_snapshot(_req: web.Request) -> web.Response:
        HOLD_AFTER_SNAPSHOT.set()
        return web.json_response({"held": held_snapshots})

    async def shutdown(_req: web.Request) -> web.Response:
        stop.set()
        return web.json_response({"ok": True})

    app = web.Application()
    app.add_routes(
        [
            web.get("/status", status),
            web.post("/pin", pin),
            web.post("/unpin", unpin),
            web.get("/digest", digest),
            web.post("/has", has),
            web.post("/add_peer", add_peer),
            web.post("/rm_peer", rm_peer),
            web.post("/wait_sync", wait_sync),
            web.post("/shutdown", shutdown),
            web.post("/load", load),
            web.post("/hold_after_snapshot", hold_after_snapshot),
        ]
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"READY {port}", flush=True)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    if args.exit_on_stdin_eof:
        # the test or bench that started us holds our stdin: if it dies, we stop instead of lingering
        def on_stdin() -> None:
            if not os.read(sys.stdin.fileno(), 1024):
                loop.remove_reader(sys.stdin.fileno())
                stop.set()

        loop.add_reader(sys.stdin.fileno(), on_stdin)
    await stop.wait()
    await runner.cleanup()
    await raft.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
