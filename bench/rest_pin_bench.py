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

_TICKS = os.sysconf("SC_CLK_TCK")
_PASSWORD = "a-password-long-enough-for-hs256-x"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


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


class _Client(asyncio.Protocol):
    def __init__(self) -> None:
        self.buf = b""
        self.waiter: asyncio.Future[int] | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        head, sep, rest = self.buf.partition(b"\r\n\r\n")
        if not sep:
            return
        length = 0
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v)
        if len(rest) < length:
            return
        self.buf = rest[length:]
        status = int(head.split(b" ", 2)[1])
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(status)

    async def request(self, data: bytes) -> int:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self.waiter


async def drive(port: int, pid: int, n: int, clients: int, auth: str) -> None:
    from pincluster.types.cid import CID

    cids = [str(CID.v0(hashlib.sha256(b"rest-bench-%d" % i).digest())) for i in range(n)]
    it = iter(cids)
    loop = asyncio.get_running_loop()
    extra = ""
    if auth == "basic":
        extra = "Authorization: Basic " + base64.b64encode(f"user:{_PASSWORD}".encode()).decode() + "\r\n"
    elif auth == "bearer":
        from pincluster.api.common.auth import TokenIssuer

        extra = f"Authorization: Bearer {TokenIssuer({'user': _PASSWORD}).issue('user')}\r\n"
    bad = 0

    async def client() -> None:
        nonlocal bad
        _t, proto = await loop.create_connection(_Client, "127.0.0.1", port)
        try:
            for cid in it:
                req = (f"POST /pins/{cid}?replication-min=1&replication-max=1 HTTP/1.1\r\n"
                       f"Host: 127.0.0.1:{port}\r\n{extra}Content-Length: 0\r\n\r\n").encode()
                if await proto.request(req) != 200:
                    bad += 1
        finally:
            assert proto.transport is not None
            proto.transport.close()

    cpu0 = cpu_seconds(pid)
    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    dt = time.perf_counter() - t0
    cpu = cpu_seconds(pid) - cpu0
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
