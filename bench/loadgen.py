"""The REST pin load both ingest benches use: keep-alive HTTP/1.1 connections over raw sockets.

A load generator must cost little next to what it measures: aiohttp's client spends ~0.5 ms of CPU per
request, which on a 2-core machine takes CPU from the daemons under test. This sends pre-built request bytes
and reads only the status line and Content-Length (the REST API answers pins with a sized JSON body); it
costs ~0.08 ms per request.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import cast

_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


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
        head = self._buf[:head_end].decode("latin-1").split("\r\n")
        length = 0
        for line in head[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
            elif name.strip().lower() == "transfer-encoding":
                raise RuntimeError("the bench client reads sized bodies only")
        if len(self._buf) < head_end + 4 + length:
            return
        self._buf = self._buf[head_end + 4 + length:]
        waiter, self._waiter = self._waiter, None
        waiter.set_result(int(head[0].split(" ", 2)[1]))

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
