"""CPU per ``POST /pins/{cid}`` in the REST layer alone (issue 6, ingest goal).

A child process serves the real :class:`RestAPI` (uvloop, the daemon's logging setup, access log on at INFO
to a file) over a cluster whose ``pin`` only builds the Pin; this process posts N pins from C keep-alive
connections and prints the server's CPU time per request (user+system from /proc), which is what the REST
layer costs per pin (aiohttp, the request chain, the access log line, the JSON answer).

Usage: .venv/bin/python bench/rest_pin_bench.py [--pins 20000] [--clients 50] [--auth basic|bearer]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from loadgen import post_pins, process_cpu_seconds

_PASSWORD = "a-password-long-enough-for-hs256-x"


async def serve(port_file: str, auth: str) -> None:
    from pincluster.api.common.settings import HTTPAPISettings
    from pincluster.api.rest.server import RestAPI
    from pincluster.log import setup_logging
    from pincluster.p2p.keys import PrivateKey
    from pincluster.types.cid import CID
    from pincluster.types.models import Pin, PinOptions
    from pincluster.types.multiaddr import Multiaddr

    setup_logging("info")
    me = PrivateKey.generate_ed25519().public_key().peer_id()

    class PinCluster:
        async def pin(self, cid: CID, options: PinOptions) -> Pin:
            return Pin.with_options(cid, options).replace(allocations=(me,))

    creds = {"user": _PASSWORD} if auth else None
    api = RestAPI(PinCluster(),  # type: ignore[arg-type]
                  HTTPAPISettings(listen=(Multiaddr("/ip4/127.0.0.1/tcp/0"),), basic_auth_credentials=creds))
    await api.start()
    Path(port_file).write_text(str(api.addresses[0].tcp_host_port()[1]))
    await asyncio.Event().wait()


async def drive(port: int, pid: int, n: int, clients: int, auth: str) -> None:
    from pincluster.types.cid import CID

    cids = [str(CID.v0(hashlib.sha256(b"rest-bench-%d" % i).digest())) for i in range(n)]
    extra = ""
    if auth == "basic":
        extra = "Authorization: Basic " + base64.b64encode(f"user:{_PASSWORD}".encode()).decode() + "\r\n"
    elif auth == "bearer":
        from pincluster.api.common.auth import TokenIssuer

        extra = f"Authorization: Bearer {TokenIssuer({'user': _PASSWORD}).issue('user')}\r\n"
    cpu0 = process_cpu_seconds(pid)
    t0 = time.perf_counter()
    bad = await post_pins([("127.0.0.1", port)], iter(cids), clients, "replication-min=1&replication-max=1", extra)
    dt = time.perf_counter() - t0
    cpu = process_cpu_seconds(pid) - cpu0
    print(f"{n} pins from {clients} clients: {n / dt:,.0f} req/s; server CPU {cpu / n * 1e6:.0f} µs/request"
          + (f"; {bad} failed" if bad else ""))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pins", type=int, default=20_000)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--auth", choices=("", "basic", "bearer"), default="",
                    help="credentials on, requests authenticated this way")
    ap.add_argument("--serve", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    import uvloop

    if args.serve:
        uvloop.run(serve(args.serve, args.auth))
        return
    with tempfile.TemporaryDirectory() as tmp:
        port_file = os.path.join(tmp, "port")
        log = open(os.path.join(tmp, "server.log"), "w")  # noqa: SIM115
        cmd = [sys.executable, __file__, "--serve", port_file, "--auth", args.auth]
        proc = subprocess.Popen(cmd, stderr=log)
        try:
            while not os.path.exists(port_file) or not Path(port_file).read_text():
                time.sleep(0.05)
            port = int(Path(port_file).read_text())
            uvloop.run(drive(port, proc.pid, 2000, args.clients, args.auth))  # warm-up
            uvloop.run(drive(port, proc.pid, args.pins, args.clients, args.auth))
        finally:
            proc.terminate()
            proc.wait()
            log.close()
            lines = Path(os.path.join(tmp, "server.log")).read_text().splitlines()
            print(f"server log: {len(lines)} lines; last: {lines[-1] if lines else ''}")


if __name__ == "__main__":
    main()
