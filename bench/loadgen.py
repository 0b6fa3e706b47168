"""The REST pin load both ingest benches use: keep-alive HTTP/1.1 connections over raw sockets.

A load generator must cost little next to what it measures: aiohttp's client spends ~0.5 ms of CPU per
request, which on a 2-core machine takes CPU from the daemons under test. This sends pre-built request bytes
and reads only the status line and Content-Length (the REST API answers pins with a sized JSON body); it
costs ~0.08 ms per request.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import cast

_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def python_step_ns(steps: int = 2_000_000) -> float:
    """CPU nanoseconds per step of a bare Python loop (``total += i``) in this process, now: how fast the host
    runs plain Python at that moment. A bench prints it before and after its runs; figures far apart mean the
    host changed speed during them (on a shared VM it can halve within a minute)."""
    t0 = time.process_time()
    total = 0
    for i in range(steps):
        total += i
    return (time.process_time() - t0) / steps * 1e9


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    """An HTTP/1.1 response head (status line and headers, without the blank line): (status, headers by
    lower-case name)."""
    lines = head.decode("latin-1").split("\r\n")
    fields = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    return int(lines[0].split(" ", 2)[1]), fields


def host_port(url: str) -> tuple[str, int]:
    """``http://H:P[/…]`` → (H, P)."""
    host, _, rest = url.removeprefix("http://").partition(":")
    return host, int(rest.partition("/")[0])


class KeepAliveClient(asyncio.Protocol):
    """One keep-alive connection sending one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buf = b""
        self._waiter: asyncio.Future[int] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not its subclasses

    def data_received(self, data: bytes) -> None:
        self._buf += data
        head_end = self._buf.find(b"\r\n\r\n")
        if head_end < 0 or self._waiter is None:
            return
        status, fields = parse_head(self._buf[:head_end])
        if "transfer-encoding" in fields:
            raise RuntimeError("the bench client reads sized bodies only")
        length = int(fields.get("content-length", "0"))
        if len(self._buf) < head_end + 4 + length:
            return
        self._buf = self._buf[head_end + 4 + length:]
        waiter, self._waiter = self._waiter, None
        waiter.set_result(status)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionError(f"connection closed: {exc}"))

    async def request(self, data: bytes) -> int:
        assert self.transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self._waiter


async def post_pins(targets: Sequence[tuple[str, int]], cids: Iterator[str], clients: int, query: str,
                    headers: str = "") -> int:
    """``POST /pins/{cid}?{query}`` for every CID of ``cids`` from ``clients`` connections, spread round-robin
    over ``targets`` (host, port); returns how many requests did not answer 200."""
    loop = asyncio.get_running_loop()
    failed = 0

    async def client(k: int) -> None:
        nonlocal failed
        host, port = targets[k % len(targets)]
        _t, proto = await loop.create_connection(KeepAliveClient, host, port)
        try:
            for cid in cids:
                req = (f"POST /pins/{cid}?{query} HTTP/1.1\r\nHost: {host}:{port}\r\n{headers}"
                       "Content-Length: 0\r\n\r\n").encode()
                if await proto.request(req) != 200:
                    failed += 1
        finally:
            if proto.transport is not None:
                proto.transport.close()

    await asyncio.gather(*(client(k) for k in range(clients)))
    return failed


class _LineCounter(asyncio.Protocol):
    """Reads one HTTP/1.1 response and counts the newlines of its body (chunked or sized), parsing only the
    framing: a listing's reader then costs a fraction of aiohttp's (~1.7 µs per 1 KB line on the bench
    machine), which would otherwise be CPU taken from the daemons under test."""

    def __init__(self, done: asyncio.Future[None]) -> None:
        self.done = done
        self.status = 0
        self.lines = 0
        self.first = b""
        self.trailers = b""
        self._buf = b""
        self._chunked = False
        self._left = -1  # body bytes left in the current chunk (or the sized body); -1: reading the head
        self._last = b"\n"

    def data_received(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        self._buf = b""
        pos = 0
        while not self.done.done():
            if self._left < 0:  # the status line and headers
                end = buf.find(b"\r\n\r\n", pos)
                if end < 0:
                    break
                self.status, fields = parse_head(buf[pos:end])
                self._chunked = fields.get("transfer-encoding", "").lower() == "chunked"
                self._left = 0 if self._chunked else int(fields.get("content-length", "0"))
                pos = end + 4
                if not self._chunked and self._left == 0:
                    self._finish()
                continue
            if self._left > 0:  # inside a chunk (or the sized body)
                take = min(self._left, len(buf) - pos)
                if take <= 0:
                    break
                if not self.first:
                    self.first = buf[pos : pos + take].partition(b"\n")[0]
                self.lines += buf.count(b"\n", pos, pos + take)
                self._last = buf[pos + take - 1 : pos + take]
                self._left -= take
                pos += take
                if self._left == 0 and not self._chunked:
                    self._finish()
                continue
            # between chunks: "\r\n" after a chunk's data, then "size\r\n"; size 0 ends the body (trailers follow)
            end = buf.find(b"\r\n", pos)
            if end < 0:
                break
            if end == pos:
                pos += 2
                continue
            size = int(buf[pos:end].split(b";")[0], 16)
            if size == 0:
                tail = buf.find(b"\r\n\r\n", end)
                if tail < 0:
                    break
                self.trailers = buf[end + 2 : tail + 2]
                self._finish()
                return
            self._left = size
            pos = end + 2
        self._buf = buf[pos:]

    def _finish(self) -> None:
        if self._last != b"\n":
            self.lines += 1  # a last line without its newline
        if not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(ConnectionError(f"connection closed before the end of the response: {exc}"))


async def count_lines(host: str, port: int, path: str) -> tuple[int, bytes, bytes]:
    """``GET path``: (lines in the body, its first line, the trailer block of a chunked body)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    transport, proto = await loop.create_connection(lambda: _LineCounter(done), host, port)
    try:
        transport.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
        await done
    finally:
        transport.close()
    if proto.status != 200:
        raise RuntimeError(f"GET {path}: HTTP {proto.status}")
    return proto.lines, proto.first, proto.trailers
