"""An in-memory ``IPFSConnector`` for unit tests of the pin tracker, informers, REST API and cluster.

It keeps pins and blocks in dicts and mimics the real connector's observable behaviour: the same status
rules (§3.2), ``not pinned`` unpins succeed, ``unpin_disable``, typed errors. Tests steer it: ``down``
makes every call raise ``Unavailable``; ``fail`` maps a CID to the error its pin/unpin raises; ``gate``
holds pins until the test releases them; ``calls`` records what was asked. A pin of a CID whose blocks are
not in ``blocks`` (and not ``available``) waits like a real stuck pin until ``pin_timeout`` passes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from typing import Any

from pincluster.errors import InvalidInput, NotFound, PinclusterError, Timeout, Unavailable
from pincluster.ipfsconn.interface import (
    IPFSID,
    IPFSRepoGC,
    IPFSRepoStat,
    IPFSVersion,
    PinPage,
    ProgressCallback,
    pages_of,
)
from pincluster.ipfsconn.ipfshttp import CODEC_NAMES, MULTIHASH_NAMES, UnpinDisabled
from pincluster.types.cid import CID, hash_digest, multihash_encode
from pincluster.types.multiaddr import Multiaddr
from pincluster.types.peer import PeerID
from pincluster.types.status import IPFSPinStatus

__all__ = ["FakeIPFSConnector"]

_NAME_TO_CODEC = {v: k for k, v in CODEC_NAMES.items()}
_NAME_TO_MH = {v: k for k, v in MULTIHASH_NAMES.items()}


class FakeIPFSConnector:
    """Memory-backed stand-in for ``IPFSHTTPConnector`` (same methods, no network)."""

    def __init__(
        self,
        peer_id: PeerID | None = None,
        *,
        addresses: Sequence[Multiaddr] = (),
        storage_max: int = 10_000_000_000,
        pin_timeout: float = 120.0,
        unpin_disable: bool = False,
        available: Iterable[CID] = (),
    ) -> None:
        self.peer_id = peer_id
        self.addresses = tuple(addresses)
        self.storage_max = storage_max
        self.pin_timeout = pin_timeout
        self.unpin_disable = unpin_disable
        self.pins: dict[CID, IPFSPinStatus] = {}
        self.blocks: dict[CID, bytes] = {}
        self.available: set[CID] = set(available)
        self.fail: dict[CID, PinclusterError] = {}
        self.gate: asyncio.Event | None = None
        self.down = False
        self.swarm: list[PeerID] = []
        self.config: dict[str, Any] = {"Datastore": {"StorageMax": "10GB"}, "Identity": {"PeerID": str(peer_id)}}
        self.calls: list[tuple[str, Any]] = []
        self.ready = asyncio.Event()

    # -- helpers --------------------------------------------------------------------------------------------
    def _enter(self, name: str, arg: Any = None) -> None:
        self.calls.append((name, arg))
        if self.down:
            raise Unavailable(f"ipfshttp: error {name}: connection refused (fake IPFS node is down)")

    def _has(self, cid: CID) -> bool:
        return cid in self.available or any(c.multihash == cid.multihash for c in self.blocks)

    # -- IPFSConnector --------------------------------------------------------------------------------------
    async def id(self) -> IPFSID:
        self._enter("id")
        return IPFSID(id=self.peer_id, addresses=self.addresses, error="")

    async def version(self) -> IPFSVersion:
        self._enter("version")
        return IPFSVersion(version="0.42.0-fake")

    async def wait_ready(self, interval: float = 1.0) -> IPFSID:
        while True:
            try:
                ident = await self.id()
            except Unavailable:
                await asyncio.sleep(interval)
                continue
            self.ready.set()
            return ident

    async def pin_ls_cid(self, cid: CID, max_depth: int = -1) -> IPFSPinStatus:
        self._enter("pin_ls_cid", cid)
        status = self.pins.get(cid, IPFSPinStatus.UNPINNED)
        want = IPFSPinStatus.DIRECT if max_depth == 0 else IPFSPinStatus.RECURSIVE
        return status if status is want else IPFSPinStatus.UNPINNED

    async def pin(
        self,
        cid: CID,
        max_depth: int = -1,
        *,
        pin_update: CID | None = None,
        origins: Sequence[Multiaddr] = (),
        progress_cb: ProgressCallback | None = None,
    ) -> None:
        self._enter("pin", cid)
        if (await self.pin_ls_cid(cid, max_depth)).is_pinned(max_depth):
            return
        if self.gate is not None:
            await self.gate.wait()
        if cid in self.fail:
            raise self.fail[cid]
        if not self._has(cid):
            await asyncio.sleep(self.pin_timeout)
            raise Timeout(f"ipfshttp: error pinning {cid}: no progress for {self.pin_timeout:g}s (pin_timeout)")
        if progress_cb is not None:
            progress_cb(1)
        self.pins[cid] = IPFSPinStatus.DIRECT if max_depth == 0 else IPFSPinStatus.RECURSIVE

    async def unpin(self, cid: CID) -> None:
        self._enter("unpin", cid)
        if self.unpin_disable:
            raise UnpinDisabled()
        if cid in self.fail:
            raise self.fail[cid]
        self.pins.pop(cid, None)

    async def pin_ls(self, types: Sequence[str] = ("recursive", "direct")) -> AsyncIterator[tuple[CID, IPFSPinStatus]]:
        self._enter("pin_ls", tuple(types))
        for t in types:
            if t not in ("recursive", "direct", "indirect", "all"):
                raise InvalidInput(f"invalid pin type filter {t!r}: use recursive, direct, indirect or all")
        for t in types:
            for cid, status in list(self.pins.items()):
                if t == "all" or status is IPFSPinStatus.from_string(t):
                    yield cid, status

    def pin_pages(self, types: Sequence[str] = ("recursive", "direct")) -> AsyncIterator[PinPage]:
        return pages_of(self.pin_ls(types))

    def pins_generation(self) -> int | None:
        return None

    async def swarm_peers(self) -> list[PeerID]:
        self._enter("swarm_peers")
        return list(self.swarm)

    async def connect_swarms(self, addrs: Iterable[Multiaddr]) -> int:
        self._enter("connect_swarms")
        n = 0
        for a in addrs:
            pid = a.peer_id
            if pid is not None and pid not in self.swarm:
                self.swarm.append(pid)
            n += 1
        return n

    async def config_key(self, keypath: str) -> Any:
        self._enter("config_key", keypath)
        value: Any = self.config
        for part in keypath.split("/"):
            if not isinstance(value, dict):
                raise InvalidInput(f"invalid IPFS config key path {keypath!r}")
            if part not in value:
                raise NotFound(f"key {keypath!r} not found in the IPFS configuration")
            value = value[part]
        return value

    async def repo_stat(self) -> IPFSRepoStat:
        self._enter("repo_stat")
        return IPFSRepoStat(repo_size=sum(len(b) for b in self.blocks.values()), storage_max=self.storage_max)

    async def free_space(self) -> int:
        stat = await self.repo_stat()
        return max(stat.storage_max - stat.repo_size, 0)

    async def repo_size(self) -> int:
        return (await self.repo_stat()).repo_size

    async def repo_gc(self) -> AsyncIterator[IPFSRepoGC]:
        self._enter("repo_gc")
        pinned = {c.multihash for c in self.pins}
        for cid in list(self.blocks):
            if cid.multihash not in pinned:
                del self.blocks[cid]
                yield IPFSRepoGC(key=cid)

    async def resolve(self, path: str) -> CID:
        self._enter("resolve", path)
        text = path if path.startswith("/") else "/ipfs/" + path
        parts = [p for p in text.split("/") if p]
        if len(parts) != 2 or parts[0] != "ipfs":
            raise InvalidInput(f"fake IPFS can only resolve /ipfs/<cid>, not {path!r}")
        return CID.decode(parts[1])

    async def block_put(self, data: bytes, *, codec: str = "raw", mhtype: str = "sha2-256") -> CID:
        self._enter("block_put")
        if codec not in _NAME_TO_CODEC or mhtype not in _NAME_TO_MH:
            raise InvalidInput(f"unknown codec {codec!r} or multihash {mhtype!r}")
        code = _NAME_TO_MH[mhtype]
        cid = CID.v1(_NAME_TO_CODEC[codec], multihash_encode(code, hash_digest(code, data)))
        self.blocks[cid] = bytes(data)
        return cid

    async def block_stream(self, blocks: AsyncIterable[tuple[CID, bytes]]) -> int:
        self._enter("block_stream")
        n = 0
        async for cid, data in blocks:
            self.blocks[cid] = bytes(data)
            n += 1
        return n

    async def block_get(self, cid: CID) -> bytes:
        self._enter("block_get", cid)
        for c, data in self.blocks.items():
            if c.multihash == cid.multihash:
                return data
        raise NotFound(f"block {cid} not found in the fake IPFS node")

    async def close(self) -> None:
        self.calls.append(("close", None))


def _protocol_check() -> None:  # mypy proves the fake satisfies the same protocol as the real client
    from pincluster.ipfsconn.interface import IPFSConnector

    _: IPFSConnector = FakeIPFSConnector()
