"""Content-addressed, durable block storage: a flatfs directory laid out as kubo lays it out.

Why flatfs: one file per block needs no compaction, survives a crash file by file, can be inspected and
repaired with ordinary tools, and keeps kubo's layout (``blocks/<shard>/<BASE32 MULTIHASH>.data`` with
``next-to-last/2`` sharding), so a kubo repo's ``blocks`` folder can be read as is. Durability: each block is
written to a temp file, fdatasync'ed, then renamed into place, and the shard directories are fsync'ed before
``put_many`` returns. A batch's fsyncs run in parallel threads, so the file system commits them together.
Recovery rule: a crash can leave files only in ``.temp`` (deleted when the store is opened); a ``.data`` file
is complete by construction, and any that is not (disk fault) is caught on read, where every block's hash is
verified (:class:`BlockCorrupted`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import os
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol, runtime_checkable

from pincluster.durable import fsync_dir
from pincluster.errors import InvalidInput, NotFound, StateError
from pincluster.types.cid import CID, IDENTITY, RAW, hash_digest, multihash_decode

__all__ = ["BlockCorrupted", "BlockGetter", "Blockstore", "FlatFSBlockstore", "VerifyingGetter", "verify_block"]

log = logging.getLogger("pincluster.ipfs")

SHARD_SPEC = "/repo/flatfs/shard/v1/next-to-last/2\n"
_IO_POOL: ThreadPoolExecutor | None = None


def _io_pool() -> ThreadPoolExecutor:
    """Threads for file I/O; more than cores, since fsync waits on the disk, not the CPU."""
    global _IO_POOL
    if _IO_POOL is None:
        _IO_POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="ipfs-io")
    return _IO_POOL


class BlockCorrupted(StateError):
    """A stored block does not hash to its CID (disk corruption or tampering)."""

    def __init__(self, cid: CID, path: str = "") -> None:
        self.cid = cid
        where = f" ({path})" if path else ""
        super().__init__(
            f"block {cid} is corrupted{where}: its content does not match its hash; "
            "remove it and fetch it again (e.g. repo verify / pin verify)"
        )


@runtime_checkable
class BlockGetter(Protocol):
    """Anything that can fetch a block by CID (local store or network)."""

    async def get(self, cid: CID) -> bytes: ...


class Blockstore(BlockGetter, Protocol):
    """A local, durable block store."""

    async def put_many(self, blocks: Sequence[tuple[CID, bytes]]) -> None: ...
    async def put(self, cid: CID, data: bytes) -> None: ...
    async def has(self, cid: CID) -> bool: ...
    async def size(self, cid: CID) -> int: ...
    async def delete(self, cid: CID) -> None: ...
    def keys(self) -> AsyncIterator[CID]: ...
    async def stat(self) -> tuple[int, int]: ...


def verify_block(cid: CID, data: bytes) -> bool:
    """True when ``data`` hashes to ``cid``'s multihash (any supported hash function)."""
    code, digest = multihash_decode(cid.multihash)
    try:
        return hash_digest(code, data)[: len(digest)] == digest
    except InvalidInput:
        return False


class VerifyingGetter:
    """Wraps a getter whose blocks are not trusted (the network): each block is checked against its CID,
    off the event loop, before anyone decodes or stores it; a mismatch raises :class:`BlockCorrupted`."""

    def __init__(self, inner: BlockGetter) -> None:
        self._inner = inner

    async def get(self, cid: CID) -> bytes:
        data = await self._inner.get(cid)
        ok = await asyncio.get_running_loop().run_in_executor(_io_pool(), verify_block, cid, data)
        if not ok:
            raise BlockCorrupted(cid, "as fetched")
        return data


def _key(mh: bytes) -> str:
    return base64.b32encode(mh).decode("ascii").rstrip("=")


def _mh_from_key(key: str) -> bytes | None:
    try:
        return base64.b32decode(key + "=" * (-len(key) % 8))
    except (binascii.Error, ValueError):
        return None


class FlatFSBlockstore:
    """kubo-compatible flatfs blockstore; blocks are keyed by multihash, so CIDv0/v1 of a block share a file."""

    def __init__(self, path: Path) -> None:
        self.root = Path(path)
        self.blocks = self.root / "blocks"
        self.temp = self.root / ".temp"
        self.blocks.mkdir(parents=True, exist_ok=True)
        self.temp.mkdir(parents=True, exist_ok=True)
        spec_file = self.blocks / "SHARDING"
        if spec_file.exists():
            spec = spec_file.read_text()
            if spec.strip() != SHARD_SPEC.strip():
                raise StateError(f"{spec_file}: unsupported flatfs sharding {spec.strip()!r}; "
                                 f"this node reads only {SHARD_SPEC.strip()!r}")
        else:
            spec_file.write_text(SHARD_SPEC)
        leftovers = 0
        for entry in os.scandir(self.temp):  # recovery rule: unfinished writes are discarded
            try:
                os.unlink(entry.path)
                leftovers += 1
            except OSError:
                pass
        if leftovers:
            log.info("blockstore: removed %d unfinished temp files from an interrupted write", leftovers)

    # -- paths --
    def _path(self, mh: bytes) -> tuple[str, str]:
        key = _key(mh)
        shard = key[-3:-1]
        d = os.path.join(self.blocks, shard)
        return d, os.path.join(d, key + ".data")

    # -- writes --
    def _write_group(self, items: list[tuple[str, bytes]]) -> None:
        for tmp, data in items:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                mv = memoryview(data)
                while mv:
                    n = os.write(fd, mv)
                    mv = mv[n:]
                os.fdatasync(fd)
            finally:
                os.close(fd)

    def _commit(self, moves: list[tuple[str, str, str]]) -> tuple[list[str], bool]:
        """Rename temp files into place; returns the shard directories touched and whether any is new."""
        dirs: set[str] = set()
        new_shards = False
        for tmp, d, final in moves:
            try:
                os.rename(tmp, final)
            except FileNotFoundError:
                os.makedirs(d, exist_ok=True)
                new_shards = True
                os.rename(tmp, final)
            dirs.add(d)
        return sorted(dirs), new_shards

    def _plan(self, blocks: Iterable[tuple[CID, bytes]]) -> tuple[list[tuple[str, bytes]], list[tuple[str, str, str]]]:
        writes: list[tuple[str, bytes]] = []
        moves: list[tuple[str, str, str]] = []
        seen: set[str] = set()
        for cid, data in blocks:
            mh = cid.multihash
            if mh[0] == IDENTITY:
                continue
            d, final = self._path(mh)
            if final in seen or os.path.exists(final):
                continue
            seen.add(final)
            tmp = os.path.join(self.temp, uuid.uuid4().hex)
            writes.append((tmp, data))
            moves.append((tmp, d, final))
        return writes, moves

    async def put_many(self, blocks: Sequence[tuple[CID, bytes]], verify: bool = False) -> None:
        """Store blocks; when it returns they are on disk (fsynced). ``verify`` re-hashes each first."""
        loop = asyncio.get_running_loop()
        pool = _io_pool()
        if verify:
            for cid, data in blocks:
                if not await loop.run_in_executor(pool, verify_block, cid, data):
                    raise InvalidInput(f"block data does not match its CID {cid}")
        writes, moves = await loop.run_in_executor(pool, self._plan, blocks)
        if not writes:
            return
        groups = min(4, len(writes))
        try:
            await asyncio.gather(
                *(loop.run_in_executor(pool, self._write_group, writes[i::groups]) for i in range(groups))
            )
            dirs, new_shards = await loop.run_in_executor(pool, self._commit, moves)
            if new_shards:
                dirs.append(str(self.blocks))
            # directory fsyncs in parallel: the file system commits concurrent syncs in one journal commit
            await asyncio.gather(*(loop.run_in_executor(pool, fsync_dir, d) for d in dirs))
        except BaseException:
            for tmp, _d, _f in moves:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
            raise

    async def put(self, cid: CID, data: bytes) -> None:
        await self.put_many([(cid, data)])

    # -- reads --
    def _read(self, cid: CID) -> bytes:
        mh = cid.multihash
        if mh[0] == IDENTITY:
            return multihash_decode(mh)[1]
        _d, path = self._path(mh)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise NotFound(f"ipld: could not find {cid}") from None
        if not verify_block(cid, data):
            raise BlockCorrupted(cid, path)
        return data

    async def get(self, cid: CID) -> bytes:
        """The block's bytes, hash-verified; NotFound if absent, BlockCorrupted if it does not verify."""
        return await asyncio.get_running_loop().run_in_executor(_io_pool(), self._read, cid)

    async def has(self, cid: CID) -> bool:
        mh = cid.multihash
        if mh[0] == IDENTITY:
            return True
        return await asyncio.get_running_loop().run_in_executor(_io_pool(), os.path.exists, self._path(mh)[1])

    def _size(self, cid: CID) -> int:
        mh = cid.multihash
        if mh[0] == IDENTITY:
            return len(multihash_decode(mh)[1])
        try:
            return os.stat(self._path(mh)[1]).st_size
        except FileNotFoundError:
            raise NotFound(f"ipld: could not find {cid}") from None

    async def size(self, cid: CID) -> int:
        return await asyncio.get_running_loop().run_in_executor(_io_pool(), self._size, cid)

    def _delete(self, cid: CID) -> None:
        try:
            os.unlink(self._path(cid.multihash)[1])
        except FileNotFoundError:
            raise NotFound(f"ipld: could not find {cid}") from None

    async def delete(self, cid: CID) -> None:
        """Remove a block (not fsynced: a block that comes back after a crash is harmless garbage)."""
        await asyncio.get_running_loop().run_in_executor(_io_pool(), self._delete, cid)

    # -- listing --
    def _shards(self) -> list[str]:
        return sorted(e.path for e in os.scandir(self.blocks) if e.is_dir() and len(e.name) == 2)

    @staticmethod
    def _list_shard(path: str) -> list[tuple[bytes, int]]:
        out: list[tuple[bytes, int]] = []
        try:
            entries = list(os.scandir(path))
        except FileNotFoundError:
            return out
        for e in entries:
            if not e.name.endswith(".data"):
                continue
            mh = _mh_from_key(e.name[:-5])
            if mh is None:
                continue
            try:
                size = e.stat().st_size
            except FileNotFoundError:
                continue
            out.append((mh, size))
        return out

    async def keys(self) -> AsyncIterator[CID]:
        """Every stored block, as a CIDv1 raw over its multihash (kubo's ``refs local`` convention).

        Streams one shard directory at a time, so memory is bounded by the largest shard.
        """
        loop = asyncio.get_running_loop()
        for shard in await loop.run_in_executor(_io_pool(), self._shards):
            for mh, _size in await loop.run_in_executor(_io_pool(), self._list_shard, shard):
                try:
                    multihash_decode(mh)
                except InvalidInput:
                    continue
                yield CID.v1(RAW, mh)

    async def stat(self) -> tuple[int, int]:
        """``(number of blocks, total bytes)``."""
        loop = asyncio.get_running_loop()
        n = total = 0
        for shard in await loop.run_in_executor(_io_pool(), self._shards):
            for _mh, size in await loop.run_in_executor(_io_pool(), self._list_shard, shard):
                n += 1
                total += size
        return n, total
