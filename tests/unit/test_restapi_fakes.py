"""An in-process fake ClusterAPI and helpers shared by the REST API and client tests (no tests here)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterable, AsyncIterator, Collection
from datetime import UTC, datetime, timedelta
from typing import Any

from pincluster.api.common.settings import HTTPAPISettings
from pincluster.api.common.stream import ndjson_chunks, pin_mode_pages
from pincluster.api.interface import AddParams
from pincluster.api.rest.server import RestAPI
from pincluster.errors import NotFound, Unavailable
from pincluster.ipfs.unixfs.importer import ImportEntry, import_entries
from pincluster.p2p.keys import PrivateKey
from pincluster.types.cid import CID, sha256_multihash
from pincluster.types.models import (
    ID,
    IPFSID,
    VERSION,
    AddedOutput,
    Alert,
    ConnectGraph,
    GlobalPinInfo,
    GlobalRepoGC,
    Metric,
    Pin,
    PinInfo,
    PinOptions,
    RepoGC,
)
from pincluster.types.multiaddr import Multiaddr
from pincluster.types.peer import PeerID
from pincluster.types.status import PinMode, PinType, TrackerStatus


def new_peer() -> PeerID:
    return PrivateKey.generate_ed25519().public_key().peer_id()


def cid_of(data: bytes) -> CID:
    return CID.v0(hashlib.sha256(data).digest()) if False else CID.from_bytes(sha256_multihash(data))


NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


class FakeCluster:
    """Just enough cluster: an in-memory pinset, statuses derived from it, knobs to make streams fail."""

    def __init__(self) -> None:
        self.self_id = new_peer()
        self.others = [new_peer(), new_peer()]
        self.pinset: dict[CID, Pin] = {}
        self.fail_after: int | None = None  # streams raise after this many items (0 = before the first)
        self.failing_cids: set[CID] = set()
        self.calls: list[tuple[str, Any]] = []
        self.pin_delay = 0.0  # seconds each pin takes (a slow cluster)

    @property
    def members(self) -> list[PeerID]:
        return [self.self_id, *self.others]

    def _id(self, peer: PeerID) -> ID:
        return ID(id=peer, addresses=(Multiaddr(f"/ip4/127.0.0.1/tcp/9096/p2p/{peer}"),),
                  cluster_peers=tuple(self.members), cluster_peers_addresses=(), version=VERSION,
                  rpc_protocol_version="/ipfscluster/1.0/rpc", ipfs=IPFSID(addresses=None, error="down"),
                  peername=f"peer-{str(peer)[-4:]}")

    async def _maybe_fail(self, i: int) -> None:
        if self.fail_after is not None and i >= self.fail_after:
            raise Unavailable(f"peer {self.others[0]} did not answer")

    async def id(self) -> ID:
        return self._id(self.self_id)

    async def peers(self) -> AsyncIterator[ID]:
        for i, p in enumerate(self.members):
            await self._maybe_fail(i)
            yield self._id(p)

    async def peer_add(self, peer: PeerID) -> ID:
        self.others.append(peer)
        return self._id(peer)

    async def peer_rm(self, peer: PeerID) -> None:
        if peer not in self.others:
            raise NotFound(f"peer {peer} is not a cluster member")
        self.others.remove(peer)

    async def pin(self, cid: CID, options: PinOptions) -> Pin:
        self.calls.append(("pin", options))
        if self.pin_delay:
            await asyncio.sleep(self.pin_delay)
        pin = Pin.with_options(cid, options, timestamp=NOW).with_replication_defaults(-1, -1)
        self.pinset[cid] = pin
        return pin

    async def pin_path(self, path: str, options: PinOptions) -> Pin:
        parts = path.strip("/").split("/")
        if parts[0] == "ipns":
            raise Unavailable(f"could not resolve {path}: name not found")
        return await self.pin(CID.decode(parts[1]), options)

    async def unpin(self, cid: CID) -> Pin:
        pin = self.pinset.pop(cid, None)
        if pin is None:
            raise NotFound("pin is not part of the pinset")
        return pin

    async def unpin_path(self, path: str) -> Pin:
        return await self.unpin(CID.decode(path.strip("/").split("/")[1]))

    async def pin_get(self, cid: CID) -> Pin:
        pin = self.pinset.get(cid)
        if pin is None:
            raise NotFound("pin is not part of the pinset")
        return pin

    async def pins(self, types: Collection[PinType] | None = None) -> AsyncIterator[Pin]:
        self.calls.append(("pins", types))
        for i, cid in enumerate(sorted(self.pinset)):
            await self._maybe_fail(i)
            pin = self.pinset[cid]
            if types is None or pin.type in types:
                yield pin

    def _gpi(self, cid: CID, local: bool) -> GlobalPinInfo:
        pin = self.pinset.get(cid)
        status = TrackerStatus.PINNED if pin else TrackerStatus.UNPINNED
        if pin and pin.name == "broken":
            status = TrackerStatus.PIN_ERROR
        peers = [self.self_id] if local else self.members
        return GlobalPinInfo.from_pin_infos(
            PinInfo(cid=cid, name=pin.name if pin else "", peer=p, status=status, created=NOW, timestamp=NOW,
                    allocations=(), peername=f"peer-{str(p)[-4:]}")
            for p in peers
        )

    async def status(self, cid: CID, *, local: bool = False) -> GlobalPinInfo:
        if cid in self.failing_cids:
            raise Unavailable(f"status of {cid} timed out")
        await asyncio.sleep(0)
        return self._gpi(cid, local)

    def pins_ndjson(self, types: Collection[PinType] | None = None) -> AsyncIterator[bytes]:
        return ndjson_chunks(self.pins(types))

    def pin_modes(self) -> AsyncIterator[list[tuple[str, PinMode]]]:
        return pin_mode_pages(self.pins(), per_page=2)  # small pages: listings cross page ends

    def status_all_ndjson(self, filter: TrackerStatus, *, local: bool = False) -> AsyncIterator[bytes]:
        return ndjson_chunks(self.status_all(filter, local=local))

    async def status_all(self, filter: TrackerStatus, *, local: bool = False) -> AsyncIterator[GlobalPinInfo]:
        self.calls.append(("status_all", (filter, local)))
        for i, cid in enumerate(sorted(self.pinset)):
            await self._maybe_fail(i)
            g = self._gpi(cid, local)
            if g.match(filter):
                yield g

    async def recover(self, cid: CID, *, local: bool = False) -> GlobalPinInfo:
        if cid not in self.pinset:
            raise NotFound("pin is not part of the pinset")
        return self._gpi(cid, local)

    async def recover_all(self, *, local: bool = False) -> AsyncIterator[GlobalPinInfo]:
        for cid in sorted(self.pinset):
            if self.pinset[cid].name == "broken":
                yield self._gpi(cid, local)

    async def repo_gc(self, *, local: bool = False) -> GlobalRepoGC:
        peers = [self.self_id] if local else self.members
        return GlobalRepoGC(peer_map={p: RepoGC(peer=p, peername="x", keys=()) for p in peers})

    async def connect_graph(self) -> ConnectGraph:
        return ConnectGraph(cluster_id=self.self_id, id_to_peername={self.self_id: "me"},
                            cluster_links={self.self_id: tuple(self.others)}, ipfs_links={},
                            cluster_trust_links={self.self_id: True}, cluster_to_ipfs={})

    async def alerts(self) -> list[Alert]:
        m = Metric(name="ping", peer=self.others[0], value="", expire=1, valid=True)
        return [Alert.from_metric(m, NOW)]

    async def latest_metrics(self, name: str) -> list[Metric]:
        if name != "freespace":
            return []
        return [Metric(name="freespace", peer=p, value="1000", expire=2**62, valid=True, weight=1000)
                for p in self.members]

    async def metric_names(self) -> list[str]:
        return ["freespace", "ping"]

    async def add(self, entries: AsyncIterable[ImportEntry], params: AddParams) -> AsyncIterator[AddedOutput]:
        self.calls.append(("add", params))
        last: CID | None = None
        async for ev in import_entries(entries, None, params.import_options):
            if ev.cid is None:
                yield AddedOutput(name=ev.name, bytes=ev.bytes)
            else:
                last = ev.cid
                yield AddedOutput(name=ev.name, cid=ev.cid, size=ev.size)
        if last is not None and not params.no_pin:
            if params.pin_options.name == "fail-pin":
                raise Unavailable("not enough peers to allocate CID")
            await self.pin(last, params.pin_options)


async def start_api(cluster: FakeCluster | None = None, **settings: Any) -> tuple[RestAPI, FakeCluster]:
    cluster = cluster or FakeCluster()
    settings.setdefault("listen", (Multiaddr("/ip4/127.0.0.1/tcp/0"),))
    api = RestAPI(cluster, HTTPAPISettings(**settings))  # type: ignore[arg-type]
    await api.start()
    return api, cluster


def later(seconds: int) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)
