"""Garbage collection: remove every block not reachable from a pin.

Mark and sweep under the exclusive side of the GC lock, so no add or pin runs meanwhile (their blocks are
not yet reachable from a pin). Mark walks every recursive pin and adds direct pins; the live set holds one
multihash per reachable block. Sweep streams the blockstore's keys and deletes the rest. A crash mid-sweep
only leaves garbage behind, never a pinned block missing. If a pinned block is missing or unreadable the GC
stops before deleting anything, as kubo does, since the live set would be incomplete.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from pincluster.errors import NotFound, PinclusterError
from pincluster.ipfs.blockstore import Blockstore
from pincluster.ipfs.dag import walk
from pincluster.ipfs.pins import PinStore
from pincluster.types.cid import CID

__all__ = ["gc"]

log = logging.getLogger("pincluster.ipfs")


async def _mark(blockstore: Blockstore, pins: PinStore) -> tuple[set[bytes], list[str]]:
    live: set[bytes] = set()
    errors: list[str] = []
    async for root in pins.recursive_keys():
        if root.multihash in live:
            continue
        try:
            async for _c, _data in walk(blockstore, root, seen=live):
                pass
        except NotFound as exc:
            errors.append(f"could not retrieve links under {root}: {exc}")
        except PinclusterError as exc:
            errors.append(f"could not retrieve links under {root}: {exc}")
    async for c in pins.direct_keys():
        live.add(c.multihash)
    return live, errors


async def gc(blockstore: Blockstore, pins: PinStore) -> AsyncIterator[tuple[CID | None, str]]:
    """Yield ``(removed cid, "")`` for each block removed, or ``(None, error)`` for each problem.

    Removed CIDs are CIDv1 raw over the block's multihash (the blockstore keys blocks by multihash).
    """
    async with pins.gc_lock.exclusive():
        live, errors = await _mark(blockstore, pins)
        if errors:
            for e in errors:
                yield None, e
            yield None, "garbage collection aborted: pinned content is missing or damaged; nothing removed"
            return
        removed = 0
        async for c in blockstore.keys():
            if c.multihash in live:
                continue
            try:
                await blockstore.delete(c)
            except NotFound:
                continue
            except OSError as exc:
                yield None, f"could not remove {c}: {exc}"
                continue
            removed += 1
            yield c, ""
        log.info("gc: removed %d blocks, kept %d", removed, len(live))
