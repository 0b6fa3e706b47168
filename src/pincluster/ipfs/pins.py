"""Pins: recursive and direct pins recorded durably, indirect pins computed by walking, and the GC lock.

The pinset lives in SQLite (WAL, ``synchronous=FULL``): one small table, one transaction per change, so a
crash leaves either the old or the new pinset, never a torn one. A pin is recorded only after every block it
needs is durably in the blockstore (blockstore ``put_many`` returns after fsync), and GC cannot run while an
add or pin holds the shared side of :class:`GCLock`, so no pin ever points at a missing block.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pincluster.errors import InvalidInput, NotFound, PinclusterError, StateError
from pincluster.ipfs.blockstore import BlockCorrupted, BlockGetter, Blockstore, VerifyingGetter
from pincluster.ipfs.dag import links, walk
from pincluster.types.cid import CID

__all__ = ["PIN_TYPES", "GCLock", "PinStore", "PinVerifyResult"]

log = logging.getLogger("pincluster.ipfs")

PIN_TYPES = ("all", "recursive", "direct", "indirect")
_RECURSIVE = 1
_DIRECT = 2
_PAGE = 1000
_T = TypeVar("_T")


class GCLock:
    """kubo's GC locker: adds and pins hold it shared (many at once), GC holds it exclusive.

    Readers are preferred, so a caller that already holds the shared side can take it again without
    deadlocking behind a waiting GC; GC waits until no add or pin is running.
    """

    def __init__(self) -> None:
        self._readers = 0
        self._writer = False
        self._cond = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def shared(self) -> AsyncIterator[None]:
        async with self._cond:
            await self._cond.wait_for(lambda: not self._writer)
            self._readers += 1
        try:
            yield
        finally:
            async with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        async with self._cond:
            await self._cond.wait_for(lambda: not self._writer and self._readers == 0)
            self._writer = True
        try:
            yield
        finally:
            async with self._cond:
                self._writer = False
                self._cond.notify_all()

    @property
    def gc_running(self) -> bool:
        return self._writer


@dataclass(frozen=True)
class PinVerifyResult:
    """``pin verify`` result for one recursive pin: ok, or the bad nodes with their errors."""

    cid: CID
    ok: bool
    bad_nodes: tuple[tuple[CID, str], ...] = ()


class PinStore:
    """Durable pinset over a blockstore (kubo semantics for add/rm/update/ls/verify)."""

    def __init__(self, path: Path, blockstore: Blockstore) -> None:
        path = Path(path)
        if path.is_dir():
            path = path / "pins.sqlite"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.blockstore = blockstore
        self.gc_lock = GCLock()
        self._db_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ipfs-pins")
        #: Changes after every committed change of the pins: a reader that saw the same value before and
        #: after reading them (the pin tracker's index) may keep what it read.
        self.generation = 0
        try:
            self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS pins (cid BLOB PRIMARY KEY, mode INTEGER NOT NULL) WITHOUT ROWID"
            )
        except sqlite3.DatabaseError as exc:
            raise StateError(f"pin database {path} cannot be opened: {exc}") from exc

    # -- db plumbing --
    async def _db(self, fn: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._db_thread, fn, *args)

    def _get_mode(self, key: bytes) -> int | None:
        row = self._conn.execute("SELECT mode FROM pins WHERE cid = ?", (key,)).fetchone()
        return None if row is None else int(row[0])

    def _set_mode(self, key: bytes, mode: int | None) -> None:
        if mode is None:
            self._conn.execute("DELETE FROM pins WHERE cid = ?", (key,))
        else:
            self._conn.execute("INSERT OR REPLACE INTO pins (cid, mode) VALUES (?, ?)", (key, mode))
        self.generation += 1

    def _update_tx(self, add: bytes | None, remove: bytes | None) -> None:
        with self._conn:  # one transaction: both changes or neither
            self._conn.execute("BEGIN IMMEDIATE")
            if add is not None:
                self._set_mode(add, _RECURSIVE)
            if remove is not None:
                self._set_mode(remove, None)
        self.generation += 1  # again once committed: a reader between the two saw the old pins

    def _page(self, mode: int, after: bytes) -> list[bytes]:
        rows = self._conn.execute(
            "SELECT cid FROM pins WHERE mode = ? AND cid > ? ORDER BY cid LIMIT ?", (mode, after, _PAGE)
        ).fetchall()
        return [bytes(r[0]) for r in rows]

    async def _keys(self, mode: int) -> AsyncIterator[CID]:
        after = b""
        while True:
            page = await self._db(self._page, mode, after)
            for raw in page:
                yield CID(raw)
            if len(page) < _PAGE:
                return
            after = page[-1]

    async def key_pages(self, type: str) -> AsyncIterator[list[bytes]]:
        """The binary CIDs pinned ``type`` (``recursive`` or ``direct``), in key order, a page at a time
        (``pin/ls`` writes a page's lines at once)."""
        mode = {"recursive": _RECURSIVE, "direct": _DIRECT}.get(type)
        if mode is None:
            raise InvalidInput(f"key_pages lists recursive or direct pins, not {type!r}")
        after = b""
        while True:
            page = await self._db(self._page, mode, after)
            if page:
                yield page
            if len(page) < _PAGE:
                return
            after = page[-1]

    def recursive_keys(self) -> AsyncIterator[CID]:
        """Recursively pinned CIDs, streamed from the database in pages."""
        return self._keys(_RECURSIVE)

    def direct_keys(self) -> AsyncIterator[CID]:
        return self._keys(_DIRECT)

    async def mode_of(self, cid: CID) -> str | None:
        """``"recursive"``, ``"direct"`` or None, from the database only (no walking)."""
        m = await self._db(self._get_mode, cid.bytes)
        return {None: None, _RECURSIVE: "recursive", _DIRECT: "direct"}[m]

    async def close(self) -> None:
        await self._db(self._conn.close)
        self._db_thread.shutdown(wait=True)

    # -- add --
    async def _fetch(
        self, cid: CID, recursive: bool, getter: BlockGetter | None, progress: Callable[[int], None] | None
    ) -> None:
        """Make every needed block local and durable (stored before the pin is recorded)."""
        bs = self.blockstore
        remote = getter is not None and getter is not bs
        src: BlockGetter = VerifyingGetter(getter) if remote and getter is not None else bs
        batch: list[tuple[CID, bytes]] = []
        batch_bytes = 0
        count = 0
        async for c, data in walk(src, cid, max_depth=-1 if recursive else 0):
            count += 1
            if remote:
                batch.append((c, data))
                batch_bytes += len(data)
                if batch_bytes >= 8 << 20:
                    await bs.put_many(batch)
                    batch, batch_bytes = [], 0
            if progress is not None:
                progress(count)
        if batch:
            await bs.put_many(batch)

    async def add(
        self,
        cid: CID,
        recursive: bool = True,
        getter: BlockGetter | None = None,
        progress: Callable[[int], None] | None = None,
        *,
        assume_complete: bool = False,
    ) -> None:
        """Pin ``cid``. Every block is fetched through ``getter`` (default: the blockstore, which checks it is
        all there and intact), stored, and only then is the pin recorded. ``progress`` gets the number of
        blocks fetched so far. ``assume_complete`` skips the walk: only for a DAG this process has just
        imported into this blockstore under the GC lock. A recursive pin replaces a direct one; a direct pin
        of a recursively pinned CID is an error, as in kubo."""
        async with self.gc_lock.shared():
            mode = await self._db(self._get_mode, cid.bytes)
            if recursive and mode == _RECURSIVE:
                return
            if not recursive and mode == _RECURSIVE:
                raise InvalidInput(f"{cid} already pinned recursively")
            if not assume_complete:
                await self._fetch(cid, recursive, getter, progress)
            await self._db(self._set_mode, cid.bytes, _RECURSIVE if recursive else _DIRECT)
            log.debug("pinned %s (%s)", cid, "recursive" if recursive else "direct")

    # -- rm / update --
    async def rm(self, cid: CID, recursive: bool = True) -> None:
        """Unpin. A recursive pin needs ``recursive=True``; a direct pin goes either way (kubo semantics)."""
        mode = await self._db(self._get_mode, cid.bytes)
        if mode == _RECURSIVE:
            if not recursive:
                raise InvalidInput(f"{cid} is pinned recursively")
        elif mode != _DIRECT:
            raise NotFound("not pinned or pinned indirectly")
        await self._db(self._set_mode, cid.bytes, None)

    async def update(
        self, old: CID, new: CID, unpin: bool = True, getter: BlockGetter | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Pin ``new`` recursively and (with ``unpin``) drop ``old``'s recursive pin, in one transaction."""
        if await self._db(self._get_mode, old.bytes) != _RECURSIVE:
            raise InvalidInput("'from' cid was not recursively pinned already")
        if old == new:
            return
        async with self.gc_lock.shared():
            if await self._db(self._get_mode, new.bytes) != _RECURSIVE:
                await self._fetch(new, True, getter, progress)
            await self._db(self._update_tx, new.bytes, old.bytes if unpin else None)

    # -- queries --
    async def _indirect(self, exclude_pinned: bool) -> AsyncIterator[tuple[CID, CID]]:
        """Every block reachable from a recursive pin, once, with the recursive root it was reached from."""
        seen: set[bytes] = set()
        async for root in self.recursive_keys():
            seen.add(root.multihash)
        roots_mh = set(seen)
        async for root in self.recursive_keys():
            async for c, _data in walk(self.blockstore, root, seen=seen):
                if c == root:
                    continue
                if exclude_pinned and c.multihash in roots_mh:
                    continue
                yield c, root

    async def ls(self, type: str = "all", cids: Sequence[CID] = ()) -> AsyncIterator[tuple[CID, str]]:
        """Stream ``(cid, type)`` like ``ipfs pin ls``. Without ``cids``: recursive pins, then direct, then
        indirect (blocks under recursive pins that are not themselves pinned). With ``cids``: each one's pin
        type (``"indirect through <root>"`` for indirect), or NotFound ``path '<cid>' is not pinned``."""
        if type not in PIN_TYPES:
            raise InvalidInput(f"invalid type '{type}', must be one of {{direct, indirect, recursive, all}}")
        if cids:
            for c in cids:
                how = await self._is_pinned_with_type(c, type)
                if how is None:
                    raise NotFound(f"path '{c}' is not pinned")
                yield c, how
            return
        if type in ("all", "recursive"):
            async for c in self.recursive_keys():
                yield c, "recursive"
        if type in ("all", "direct"):
            async for c in self.direct_keys():
                yield c, "direct"
        if type in ("all", "indirect"):
            direct: set[bytes] = set()
            async for c in self.direct_keys():
                direct.add(c.multihash)
            async for c, _root in self._indirect(exclude_pinned=True):
                if c.multihash not in direct:
                    yield c, "indirect"

    async def _is_pinned_with_type(self, cid: CID, type: str) -> str | None:
        mode = await self._db(self._get_mode, cid.bytes)
        if type in ("all", "recursive") and mode == _RECURSIVE:
            return "recursive"
        if type == "recursive":
            return None
        if type in ("all", "direct") and mode == _DIRECT:
            return "direct"
        if type == "direct":
            return None
        if type == "indirect" and mode == _RECURSIVE:
            return None
        target = cid.multihash
        async for root in self.recursive_keys():
            if root.multihash == target:
                continue
            async for c, _data in walk(self.blockstore, root):
                if c.multihash == target:
                    return f"indirect through {root}"
        return None

    async def is_pinned(self, cid: CID) -> str | None:
        """``"recursive"``, ``"direct"``, ``"indirect through <root>"`` or None."""
        return await self._is_pinned_with_type(cid, "all")

    async def verify(self) -> AsyncIterator[PinVerifyResult]:
        """Check every recursive pin's DAG: each block present and hashing to its CID. Blocks shared by
        several pins are checked once; a bad block's sub-tree is not descended into."""
        checked: dict[bytes, str | None] = {}
        async for root in self.recursive_keys():
            bad: list[tuple[CID, str]] = []
            stack = [root]
            visited: set[bytes] = set()
            while stack:
                c = stack.pop()
                mh = c.multihash
                if mh in visited:
                    continue
                visited.add(mh)
                if mh in checked and checked[mh] is not None:
                    bad.append((c, checked[mh] or ""))
                    continue
                try:
                    data = await self.blockstore.get(c)
                    children = links(c, data, "verify")
                except NotFound:
                    checked[mh] = "merkledag: not found"
                    bad.append((c, "merkledag: not found"))
                    continue
                except (BlockCorrupted, PinclusterError) as exc:
                    checked[mh] = str(exc)
                    bad.append((c, str(exc)))
                    continue
                checked[mh] = None
                stack.extend(reversed(children))
            yield PinVerifyResult(root, not bad, tuple(bad))

