"""IPFS proxy reverse-proxy throughput and memory: ``cat`` of N MiB down, and an N MiB upload up.

Run: ``.venv/bin/python bench/ipfsproxy_bench.py [MiB]`` (default 100). Three processes on loopback: a fake
node (aiohttp, streams zeros chunked with a trailer, or discards an upload), the proxy (``IPFSProxy`` alone;
no cluster behind it, only the reverse proxy is used), and this client. Prints MB/s direct and through the
proxy, and the proxy process's peak RSS (VmHWM) before and after: streaming means the peak does not grow
with the size moved.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.http_writer import StreamWriter

CHUNK = 256 * 1024


async def node_main(port_file: str) -> None:
    async def cat(request: web.Request) -> web.StreamResponse:
        size = int(request.query["size"])
        resp = web.StreamResponse()
        resp.headers["Trailer"] = "X-Stream-Error"
        writer = await resp.prepare(request)
        assert isinstance(writer, StreamWriter)
        writer.chunked = False
        block = b"\0" * CHUNK
        sent = 0
        while sent < size:
            n = min(CHUNK, size - sent)
            await resp.write(b"%x\r\n%b\r\n" % (n, block[:n]))
            sent += n
        await resp.write(b"0\r\nX-Stream-Error: \r\n\r\n")
        await resp.write_eof()
        return resp

    async def discard(request: web.Request) -> web.StreamResponse:
        total = 0
        async for chunk in request.content.iter_chunked(CHUNK):
            total += len(chunk)
        return web.json_response({"Bytes": total})

    app = web.Application()
    app.router.add_post("/api/v0/cat", cat)
    app.router.add_post("/api/v0/discard", discard)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    Path(port_file).write_text(str(site._server.sockets[0].getsockname()[1]))  # type: ignore[union-attr]
    await asyncio.Event().wait()


async def proxy_main(port_file: str, node_port: int) -> None:
    from pincluster.api.ipfsproxy.server import IPFSProxy
    from pincluster.config.sections import IPFSProxyConfig
    from pincluster.types.multiaddr import Multiaddr

    cfg = IPFSProxyConfig(listen_multiaddress=(Multiaddr("/ip4/127.0.0.1/tcp/0"),),
                          node_multiaddress=Multiaddr(f"/ip4/127.0.0.1/tcp/{node_port}"))
    proxy = IPFSProxy(object(), cfg, "")  # type: ignore[arg-type]  # the reverse proxy needs no cluster
    await proxy.start()
    Path(port_file).write_text(str(proxy.addresses[0].tcp_host_port()[1]))
    await asyncio.Event().wait()


def spawn(*args: str) -> tuple[subprocess.Popen[bytes], int]:
    fd, port_file = tempfile.mkstemp()
    os.close(fd)
    os.unlink(port_file)
    proc = subprocess.Popen([sys.executable, __file__, *args, port_file])
    deadline = time.monotonic() + 20
    while not os.path.exists(port_file) or not Path(port_file).read_text():
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError(f"{args[0]} did not start")
        time.sleep(0.05)
    port = int(Path(port_file).read_text())
    os.unlink(port_file)
    return proc, port


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def download(port: int, size: int) -> tuple[float, int]:
    t0 = time.perf_counter()
    got = 0
    async with aiohttp.ClientSession() as s, s.post(f"http://127.0.0.1:{port}/api/v0/cat?size={size}") as r:
        async for chunk in r.content.iter_chunked(CHUNK):
            got += len(chunk)
    return time.perf_counter() - t0, got


async def upload(port: int, size: int) -> tuple[float, Any]:
    async def body() -> Any:
        block = b"\0" * CHUNK
        sent = 0
        while sent < size:
            n = min(CHUNK, size - sent)
            yield block[:n]
            sent += n

    t0 = time.perf_counter()
    async with aiohttp.ClientSession() as s, s.post(f"http://127.0.0.1:{port}/api/v0/discard", data=body()) as r:
        doc = await r.json()
    return time.perf_counter() - t0, doc["Bytes"]


async def client_main(mib: int) -> None:
    size = mib * 1024 * 1024
    node, node_port = spawn("--node")
    proxy, proxy_port = spawn("--proxy", str(node_port))
    try:
        await download(proxy_port, 1024 * 1024)  # warm up
        base = peak_rss_mib(proxy.pid)
        for label, port in (("direct", node_port), ("proxy ", proxy_port)):
            dt, got = await download(port, size)
            assert got == size, got
            print(f"cat {mib} MiB {label}: {size / dt / 1e6:7.1f} MB/s")
        for label, port in (("direct", node_port), ("proxy ", proxy_port)):
            dt, got = await upload(port, size)
            assert got == size, got
            print(f"upload {mib} MiB {label}: {size / dt / 1e6:7.1f} MB/s")
        print(f"proxy peak RSS: {base:.1f} MiB after warm-up, {peak_rss_mib(proxy.pid):.1f} MiB after moving "
              f"{2 * mib} MiB")
    finally:
        for p in (proxy, node):
            p.terminate()
            p.wait(10)


def main() -> None:
    if len(sys.argv) >= 3 and sys.argv[1] == "--node":
        asyncio.run(node_main(sys.argv[2]))
    elif len(sys.argv) >= 4 and sys.argv[1] == "--proxy":
        asyncio.run(proxy_main(sys.argv[3], int(sys.argv[2])))
    else:
        asyncio.run(client_main(int(sys.argv[1]) if len(sys.argv) > 1 else 100))


if __name__ == "__main__":
    main()
