"""The in-memory FakeIPFSConnector behaves like the real connector.

``connector_scenario`` is also run against real kubo and the embedded node by
``tests/integration/test_ipfsconn_kubo.py``, so the fake other components test with stays faithful.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from pincluster.errors import InvalidInput, NotFound, Timeout, Unavailable
from pincluster.ipfsconn.fake import FakeIPFSConnector
from pincluster.ipfsconn.interface import IPFSConnector, IPFSError
from pincluster.ipfsconn.ipfshttp import UnpinDisabled
from pincluster.types.cid import CID, RAW, sha256_multihash
from pincluster.types.multiaddr import Multiaddr
from pincluster.types.peer import PeerID
from pincluster.types.status import IPFSPinStatus

pytestmark = pytest.mark.timeout(30)

PEER = PeerID.decode("12D3KooWLR4KKA6xfW6ArNgnGP6RZbjwV7xYh3mznzQ6h8BFoPXr")


async def connector_scenario(c: IPFSConnector) -> None:
    """Observable behaviour every IPFSConnector must share (fake, kubo, embedded node)."""
    data = os.urandom(3000)
    cid = await c.block_put(data)
    assert cid == CID.v1(RAW, sha256_multihash(data))
    assert await c.block_get(cid) == data
    assert await c.pin_ls_cid(cid) is IPFSPinStatus.UNPINNED
    seen: list[int] = []
    await c.pin(cid, -1, progress_cb=seen.append)
    assert await c.pin_ls_cid(cid) is IPFSPinStatus.RECURSIVE
    assert await c.pin_ls_cid(cid, 0) is IPFSPinStatus.UNPINNED
    assert (cid, IPFSPinStatus.RECURSIVE) in [x async for x in c.pin_ls()]
    assert cid not in {k async for k, _ in c.pin_ls(["direct"])}
    with pytest.raises(InvalidInput):
        _ = [x async for x in c.pin_ls(["sideways"])]
    gc_keys = {k.key.multihash for k in [x async for x in c.repo_gc()] if k.key is not None}
    assert cid.multihash not in gc_keys  # pinned blocks survive GC
    await c.unpin(cid)
    await c.unpin(cid)  # not pinned: still fine
    assert await c.pin_ls_cid(cid) is IPFSPinStatus.UNPINNED
    other = await c.block_put(b"direct pin " + os.urandom(8))
    await c.pin(other, 0)
    assert await c.pin_ls_cid(other, 0) is IPFSPinStatus.DIRECT
    assert (other, IPFSPinStatus.DIRECT) in [x async for x in c.pin_ls()]
    await c.unpin(other)
    gc_keys = {k.key.multihash for k in [x async for x in c.repo_gc()] if k.key is not None}
    assert cid.multihash in gc_keys and other.multihash in gc_keys
    assert await c.resolve(f"/ipfs/{cid}") == cid
    stat = await c.repo_stat()
    assert stat.storage_max > 0 and await c.free_space() == max(stat.storage_max - stat.repo_size, 0)


async def test_fake_follows_the_shared_scenario() -> None:
    fake = FakeIPFSConnector(PEER)
    await connector_scenario(fake)
    assert ("pin", None) not in fake.calls and fake.calls[0][0] == "block_put"


async def test_fake_failures_and_controls() -> None:
    fake = FakeIPFSConnector(PEER, addresses=[Multiaddr("/ip4/127.0.0.1/tcp/4001")], pin_timeout=0.05)
    assert (await fake.wait_ready(0.01)).id == PEER and fake.ready.is_set()
    missing = CID.v1(RAW, sha256_multihash(b"nobody has this"))
    with pytest.raises(Timeout, match="pin_timeout"):
        await fake.pin(missing)
    fake.available.add(missing)
    await fake.pin(missing)
    bad = CID.v1(RAW, sha256_multihash(b"bad"))
    fake.available.add(bad)
    fake.fail[bad] = IPFSError("pin/add", 500, "disk full")
    with pytest.raises(IPFSError, match="disk full"):
        await fake.pin(bad)
    fake.gate = asyncio.Event()
    ok = CID.v1(RAW, sha256_multihash(b"gated"))
    fake.available.add(ok)
    task = asyncio.create_task(fake.pin(ok))
    await asyncio.sleep(0.01)
    assert not task.done()
    fake.gate.set()
    await task
    assert fake.pins[ok] is IPFSPinStatus.RECURSIVE
    fake.down = True
    with pytest.raises(Unavailable, match="connection refused"):
        await fake.id()
    fake.down = False
    fake.unpin_disable = True
    with pytest.raises(UnpinDisabled):
        await fake.unpin(ok)
    with pytest.raises(NotFound):
        await fake.config_key("Nope/x")
    assert await fake.config_key("Datastore/StorageMax") == "10GB"
    assert await fake.connect_swarms([Multiaddr(f"/ip4/10.0.0.1/tcp/4001/p2p/{PEER}")]) == 1
    assert await fake.swarm_peers() == [PEER]
    with pytest.raises(NotFound):
        await fake.block_get(missing)
