"""A small test peer: a Host + RPC server in its own process, for the p2p integration tests and the bench.

Prints one JSON line ``{"id": ..., "addrs": [...]}`` on stdout when listening, logs to stderr, and serves
until killed. With ``--stream-from ADDR`` it instead dials ADDR, streams ``Test.Blob`` from it and prints
``started`` once the first chunk arrived (so a test can kill it mid-stream).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import sys
from collections.abc import AsyncIterator
from typing import Any

from pincluster.p2p.host import Host
from pincluster.p2p.keys import PrivateKey
from pincluster.rpc import POLICIES, RPC, Policy, rpc_method
from pincluster.types.multiaddr import Multiaddr
from pincluster.types.peer import PeerID

TEST_POLICIES = {
    **POLICIES,
    "Test.Blob": Policy.OPEN,
    "Test.Sleep": Policy.OPEN,
    "Test.CallBack": Policy.OPEN,
    "Test.Upload": Policy.OPEN,
}


def blob_chunk(i: int, size: int) -> bytes:
    """Deterministic test data: chunk i is sha256-counter bytes, so both ends can check it."""
    seed = hashlib.sha256(i.to_bytes(8, "big")).digest()
    return (seed * (size // 32 + 1))[:size]


class ClusterService:
    def __init__(self, rpc: RPC) -> None:
        self.rpc = rpc

    @rpc_method("ID")
    async def id(self, caller: PeerID) -> dict[str, str]:
        return {"id": str(self.rpc.local_peer), "caller": str(caller)}

    @rpc_method("IDStream")
    async def id_stream(self, n: int) -> AsyncIterator[dict[str, Any]]:
        for i in range(n):
            yield {"id": str(self.rpc.local_peer), "i": i}

    @rpc_method("Pins")
    async def pins(self) -> AsyncIterator[str]:
        yield "closed"


class TrackerService:
    @rpc_method("StatusAll")
    async def status_all(self) -> AsyncIterator[str]:
        yield "pinned"


class TestService:
    def __init__(self, rpc: RPC) -> None:
        self.rpc = rpc

    @rpc_method("Blob")
    async def blob(self, spec: tuple[int, int]) -> AsyncIterator[bytes]:
        """Stream ``count`` chunks of ``size`` bytes (count < 0: forever)."""
        count, size = spec
        i = 0
        while count < 0 or i < count:
            yield blob_chunk(i, size)
            i += 1

    @rpc_method("Sleep")
    async def sleep(self, seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "slept"

    @rpc_method("CallBack")
    async def call_back(self, caller: PeerID) -> dict[str, str]:
        """Call Cluster.ID on the caller over the same connection: the reverse direction."""
        res: dict[str, str] = await self.rpc.call(caller, "Cluster.ID", timeout=5)
        return res

    @rpc_method("Upload")
    async def upload(self, chunks: AsyncIterator[bytes]) -> tuple[int, str]:
        h = hashlib.sha256()
        n = 0
        async for c in chunks:
            h.update(c)
            n += len(c)
        return n, h.hexdigest()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--secret", required=True, help="64 hex characters")
    ap.add_argument("--protocol", default="/pincluster/rpc/1.0")
    ap.add_argument("--listen", default="/ip4/127.0.0.1/tcp/0")
    ap.add_argument("--trust-all", action="store_true")
    ap.add_argument("--stream-from", default=None)
    ap.add_argument("--uvloop", action="store_true")
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    host = Host(PrivateKey.generate_ed25519(), bytes.fromhex(a.secret), a.protocol, [Multiaddr(a.listen)])
    rpc = RPC(host, policies=TEST_POLICIES)
    rpc.register("Cluster", ClusterService(rpc))
    rpc.register("PinTracker", TrackerService())
    rpc.register("Test", TestService(rpc))
    if a.trust_all:
        rpc.set_trusted(lambda _p: True)
    await host.start()
    print(json.dumps({"id": str(host.peer_id), "addrs": [str(x) for x in host.addrs]}), flush=True)
    if a.stream_from:
        peer = await host.connect(Multiaddr(a.stream_from))
        n = 0
        async for _chunk in rpc.stream(peer, "Test.Blob", (-1, 65536), result_type=bytes, timeout=None):
            n += 1
            if n == 1:
                print("started", flush=True)
        return
    await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        if "--uvloop" in sys.argv:
            import uvloop

            uvloop.run(main())
        else:
            asyncio.run(main())
    except KeyboardInterrupt:
        pass
