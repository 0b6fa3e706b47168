"""DAG traversal over any :class:`BlockGetter` (local store or network).

Used by pinning (fetch every block of a recursive pin), ``pin ls`` (indirect pins), GC (the live set) and
``pin verify``. Fetches run concurrently (``concurrency`` at once) because a network getter is
latency-bound; decoding runs on the event loop since link extraction is cheap next to the fetch.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator

from pincluster.errors import InvalidInput
from pincluster.ipfs.blockstore import BlockGetter
from pincluster.ipfs.dagpb import PBLink, decode_node
from pincluster.types.cid import CID, CODEC_NAMES, DAG_PB, RAW

__all__ = ["links", "named_links", "walk"]


def links(cid: CID, data: bytes, doing: str = "walk") -> list[CID]:
    """Child links of a dag-pb or raw block (raw has none); other codecs raise InvalidInput, whose message
    says what could not be done (``doing``: "walk", "export"…)."""
    return [link.cid for link in _node_links(cid, data, doing)]


def named_links(cid: CID, data: bytes, doing: str = "list links of") -> list[tuple[CID, str]]:
    """``links`` with each link's name ("" when it has none), for listings that show names."""
    return [(link.cid, link.name or "") for link in _node_links(cid, data, doing)]


def _node_links(cid: CID, data: bytes, doing: str) -> tuple[PBLink, ...]:
    """The one place that knows which codecs the node can traverse."""
    codec = cid.codec
    if codec == RAW:
        return ()
    if codec == DAG_PB:
        return decode_node(data).links
    name = CODEC_NAMES.get(codec, f"0x{codec:x}")
    raise InvalidInput(f"cannot {doing} {cid}: codec {name} is not supported (only dag-pb and raw)")


async def walk(
    getter: BlockGetter,
    root: CID,
    *,
    max_depth: int = -1,
    unique: bool = True,
    concurrency: int = 16,
    seen: set[bytes] | None = None,
) -> AsyncIterator[tuple[CID, bytes]]:
    """Yield ``(cid, block)`` for every block of the DAG under ``root`` (root first, then breadth-first-ish).

    ``max_depth`` -1 means unlimited, 0 only the root, 1 the root and its children… With ``unique`` each block
    is yielded once (blocks are compared by multihash, as the blockstore keys them). A missing block raises
    the getter's error (NotFound); nothing is yielded after an error. A caller-supplied ``seen`` set of
    multihashes is shared across walks (the root is always visited; blocks in ``seen`` are not descended
    into), which is how pin listing and GC walk many pins without visiting shared blocks twice.
    """
    if concurrency < 1:
        raise InvalidInput("walk: concurrency must be at least 1")
    if seen is None:
        seen = set()
    queue: deque[tuple[CID, int]] = deque()
    inflight: dict[asyncio.Task[bytes], tuple[CID, int]] = {}

    def enqueue(c: CID, depth: int) -> None:
        if unique:
            mh = c.multihash
            if mh in seen:
                return
            seen.add(mh)
        queue.append((c, depth))

    seen.add(root.multihash)
    queue.append((root, 0))
    try:
        while queue or inflight:
            while queue and len(inflight) < concurrency:
                c, depth = queue.popleft()
                inflight[asyncio.ensure_future(getter.get(c))] = (c, depth)
            done, _ = await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                c, depth = inflight.pop(task)
                data = task.result()
                if max_depth < 0 or depth < max_depth:
                    for child in links(c, data):
                        enqueue(child, depth + 1)
                yield c, data
    finally:
        for task in inflight:
            task.cancel()
        if inflight:
            await asyncio.gather(*inflight, return_exceptions=True)
