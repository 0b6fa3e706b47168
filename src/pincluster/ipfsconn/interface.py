"""The seam between the cluster and its IPFS node (spec §8, §3.2).

The cluster only ever talks to IPFS through this protocol, so the pin tracker, informers, REST API and
tests can use an in-process fake, while production uses the kubo RPC client in ``ipfshttp``. The value types
come from ``pincluster.types`` (``IPFSID``, ``IPFSRepoStat``, ``IPFSRepoGC``, ``IPFSPinStatus``), so every
layer shares one JSON encoding; the errors and the small ``IPFSVersion`` live here.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, runtime_checkable

from pincluster.errors import InvalidInput, PinclusterError
from pincluster.types.cid import CID
from pincluster.types.models import IPFSID, IPFSRepoGC, IPFSRepoStat
from pincluster.types.multiaddr import Multiaddr
from pincluster.types.peer import PeerID
from pincluster.types.status import IPFSPinStatus

__all__ = [
    "IPFSID",
    "IPFSBadRequest",
    "IPFSConnector",
    "IPFSError",
    "IPFSPinStatus",
    "IPFSPinner",
    "IPFSRepoGC",
    "IPFSRepoStat",
    "IPFSVersion",
    "InformerTrigger",
    "PinPage",
    "ProgressCallback",
    "pages_of",
    "pin_mode_args",
]


def pin_mode_args(max_depth: int) -> dict[str, str]:
    """kubo ``pin/add`` arguments for a max_depth (spec §3.4): <0 recursive, 0 direct, >0 bounded recursive."""
    if max_depth < 0:
        return {"recursive": "true"}
    if max_depth == 0:
        return {"recursive": "false"}
    return {"recursive": "true", "max-depth": str(max_depth)}


class IPFSError(PinclusterError):
    """The IPFS node answered with an error (kubo's ``{"Message","Code","Type"}``).

    ``message`` is kubo's own text, so callers can match on it (``not pinned``); the exception text is the
    Go form ``IPFS error (<path>). Code: <http status>. Message: <Message>``.
    """

    def __init__(self, path: str, http_status: int, message: str, code: int = 0, *, parsed: bool = True):
        self.path = path
        self.http_status = http_status
        self.message = message
        self.code = code
        if parsed:
            text = f"IPFS error ({path}). Code: {http_status}. Message: {message}"
        else:
            text = f"IPFS request failed (is it running?) ({path}). Code {http_status}: {message}"
        super().__init__(text)


class IPFSBadRequest(IPFSError, InvalidInput):
    """kubo rejected the arguments (HTTP 400): the input, not the node, is at fault."""


@dataclass(frozen=True, slots=True)
class IPFSVersion:
    """kubo's ``version`` answer (the proxy and ``ipfs-cluster-ctl`` show it)."""

    version: str
    commit: str = ""
    repo: str = ""
    system: str = ""
    golang: str = ""


ProgressCallback = Callable[[int], None]
"""Called with kubo's pin progress counter (number of blocks fetched) whenever it increases."""

PinPage = tuple[IPFSPinStatus, list[bytes]]
"""A page of ``pin_pages``: the pin type and the binary CIDs pinned so."""

_PAGE: Final = 1000


async def pages_of(pins: AsyncIterable[tuple[CID, IPFSPinStatus]]) -> AsyncIterator[PinPage]:
    """``pin_ls`` answers regrouped as ``pin_pages`` pages (one type per page, in the order listed)."""
    page: list[bytes] = []
    status: IPFSPinStatus | None = None
    async for cid, st in pins:
        if (st is not status and page) or len(page) >= _PAGE:
            assert status is not None
            yield status, page
            page = []
        status = st
        page.append(cid.bytes)
    if page:
        assert status is not None
        yield status, page


@runtime_checkable
class IPFSPinner(Protocol):
    """The pinning calls of :class:`IPFSConnector`: all the pin tracker needs (its unit tests fake only these)."""

    async def pin(
        self,
        cid: CID,
        max_depth: int = -1,
        *,
        pin_update: CID | None = None,
        origins: Sequence[Multiaddr] = (),
        progress_cb: ProgressCallback | None = None,
    ) -> None: ...

    async def unpin(self, cid: CID) -> None: ...

    def pin_ls(self, types: Sequence[str] = ("recursive", "direct")) -> AsyncIterator[tuple[CID, IPFSPinStatus]]: ...

    def pin_pages(self, types: Sequence[str] = ("recursive", "direct")) -> AsyncIterator[PinPage]:
        """What ``pin_ls`` lists, as pages of binary CIDs: status listings check every pin of the pinset
        against the node's pins and need neither CID objects nor their text."""
        ...

    def pins_generation(self) -> int | None:
        """A number that changes whenever the node's pins change, when this connector can know it (the
        embedded node's pin store); None when it cannot (a daemon behind HTTP). Equal numbers before and
        after a ``pin_pages`` listing mean that the listing is still current."""
        ...

    async def pin_ls_cid(self, cid: CID, max_depth: int = -1) -> IPFSPinStatus: ...


@runtime_checkable
class IPFSConnector(IPFSPinner, Protocol):
    """What the cluster needs from an IPFS node (spec §8). Implemented by ``IPFSHTTPConnector``.

    Every call has its own deadline (the ``*_timeout`` config keys); unreachable nodes raise
    ``Unavailable``, passed deadlines ``Timeout``, node-side errors ``IPFSError``.
    """

    async def id(self) -> IPFSID: ...

    async def version(self) -> IPFSVersion: ...

    async def swarm_peers(self) -> list[PeerID]: ...

    async def connect_swarms(self, addrs: Iterable[Multiaddr]) -> int: ...

    async def config_key(self, keypath: str) -> Any: ...

    async def repo_stat(self) -> IPFSRepoStat: ...

    async def free_space(self) -> int: ...

    async def repo_size(self) -> int: ...

    def repo_gc(self) -> AsyncIterator[IPFSRepoGC]: ...

    async def resolve(self, path: str) -> CID: ...

    async def block_put(self, data: bytes, *, codec: str = "raw", mhtype: str = "sha2-256") -> CID: ...

    async def block_stream(self, blocks: AsyncIterable[tuple[CID, bytes]]) -> int: ...

    async def block_get(self, cid: CID) -> bytes: ...

    async def wait_ready(self, interval: float = 1.0) -> IPFSID: ...

    async def close(self) -> None: ...


InformerTrigger = Callable[[], Awaitable[None]]
"""Called every ``informer_trigger_interval`` pins/unpins/block streams (Go: Cluster.SendInformersMetrics)."""
