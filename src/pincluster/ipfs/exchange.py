"""Block exchange between nodes of one private network: want-lists over peer-layer streams.

Simple and robust on purpose (not bitswap): a node that lacks blocks opens one stream per batch of CIDs to
each connected peer and sends a ``Want``; the peer answers with a ``Block`` message per block it has and one
``DontHave`` listing the rest, then closes. Every block is hash-checked against its CID before use, so a
faulty or hostile peer can waste bandwidth but never corrupt data. Wants that nobody could answer are asked
again every ``retry_interval`` (a peer may connect or get the block later). A fetch fails with ``Timeout``
when no block at all has arrived for ``timeout`` seconds: the clock restarts at every block received, so a
large but moving transfer never times out. Wire format: ``docs/ipfs-node.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import msgspec

from pincluster.aio import cancel_and_wait
from pincluster.errors import InvalidInput, NotFound, PinclusterError, Timeout, Unavailable
from pincluster.ipfs.dagpb import link_cids
from pincluster.types.cid import CID, DAG_PB, hash_digest
from pincluster.types.peer import PeerID

log = logging.getLogger("pincluster.ipfs")

PROTOCOL_NAME = "exchange/1.0"
MAX_WANT = 1024          # CIDs accepted in one Want
_VERIFY_INLINE = 16 * 1024  # hash smaller blocks on the loop; larger ones in a thread
_READ_AHEAD = 16            # blocks read from disk ahead of sending, per served want


# --- wire messages ----------------------------------------------------------------------------------------
class Want(msgspec.Struct, tag="want", array_like=True):
    """Ask for these blocks (binary CIDs)."""

    cids: list[bytes]


class BlockMsg(msgspec.Struct, tag="block", array_like=True):
    """One block: binary CID and its bytes."""

    cid: bytes
    data: bytes


class DontHave(msgspec.Struct, tag="dont_have", array_like=True):
    """The wanted CIDs this peer does not have (sent once, last)."""

    cids: list[bytes]


Message = Want | BlockMsg | DontHave
_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[Message] = msgspec.msgpack.Decoder(Message)


def encode_msg(msg: Message) -> bytes:
    return _encoder.encode(msg)


def decode_msg(raw: bytes) -> Message:
    try:
        return _decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise InvalidInput(f"malformed exchange message: {exc}") from None


# --- neighbours, as small protocols ---------------------------------------------------------------------
class StreamLike(Protocol):
    remote_peer: PeerID

    async def read_msg(self) -> bytes | None: ...
    async def write_msg(self, data: bytes) -> None: ...
    async def close(self) -> None: ...
    def reset(self) -> None: ...


class HostLike(Protocol):
    def set_stream_handler(self, name: str, handler: Callable[[StreamLike], Awaitable[None]]) -> None: ...
    async def new_stream(self, peer: PeerID, name: str) -> StreamLike: ...
    def connected_peers(self) -> list[PeerID]: ...


class LocalStore(Protocol):
    """What the exchange needs of the blockstore."""

    async def get(self, cid: CID) -> bytes: ...
    async def has(self, cid: CID) -> bool: ...
    async def put_many(self, blocks: Sequence[tuple[CID, bytes]]) -> None: ...


def verify_block(cid: CID, data: bytes) -> bool:
    """True when ``data`` hashes to ``cid``'s multihash (identity hashes compare the bytes)."""
    try:
        return hash_digest(cid.hash_code, data) == cid.digest
    except PinclusterError:
        return False  # a hash function we cannot compute: treat as unverifiable


@dataclass
class ExchangeStats:
    blocks_received: int = 0
    bytes_received: int = 0
    dup_blocks: int = 0
    bad_blocks: int = 0
    blocks_sent: int = 0
    bytes_sent: int = 0


@dataclass
class _Want:
    future: asyncio.Future[bytes]
    waiters: int = 0
    in_flight: bool = False
    asked: set[PeerID] = field(default_factory=set)


class Exchange:
    """Fetches blocks from connected peers and serves ours to them."""

    def __init__(
        self,
        host: HostLike,
        store: LocalStore,
        *,
        batch_size: int = 32,
        concurrency: int = 8,
        retry_interval: float = 1.0,
        max_block_size: int = (4 << 20) - 4096,  # fits one peer-layer message with its framing
        stall_timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._host = host
        self._store = store
        self._batch_size = batch_size
        self._sem = asyncio.Semaphore(concurrency)
        self._retry_interval = retry_interval
        self._max_block = max_block_size
        self._stall = stall_timeout
        self._clock = clock
        self._wants: dict[CID, _Want] = {}
        self._pending: list[CID] = []
        self._flush_scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._retry_task: asyncio.Task[None] | None = None
        self._closed = False
        self.last_block_at = clock()
        self.stats = ExchangeStats()

    # -- lifecycle ---------------------------------------------------------------------------------------
    async def start(self) -> None:
        self._host.set_stream_handler(PROTOCOL_NAME, self._serve)
        self._retry_task = asyncio.create_task(self._retry_loop(), name="exchange-retry")

    async def stop(self) -> None:
        self._closed = True
        tasks = list(self._tasks)
        if self._retry_task is not None:
            tasks.append(self._retry_task)
        await cancel_and_wait(tasks)
        for w in self._wants.values():
            if not w.future.done():
                w.future.set_exception(Unavailable("the IPFS node is shutting down"))
                w.future.exception()  # mark retrieved: waiters may be gone
        self._wants.clear()

    def peer_connected(self, peer: PeerID) -> None:
        """A new peer may have what nobody else had: ask again for every idle want now."""
        if self._closed:
            return
        again = [c for c, w in self._wants.items() if not w.future.done() and not w.in_flight]
        if again:
            self._pending.extend(again)
            self._schedule_flush()

    def session(self, timeout: float, *, cache: bool = True) -> FetchSession:
        """A BlockGetter reading local blocks first, then the network, with an idle timeout."""
        return FetchSession(self, timeout, cache=cache)

    @property
    def wantlist(self) -> list[CID]:
        return [c for c, w in self._wants.items() if not w.future.done()]

    # -- fetching ----------------------------------------------------------------------------------------
    def want(self, cid: CID) -> asyncio.Future[bytes]:
        """Register interest in ``cid``; pair every call with ``release``."""
        if self._closed:
            raise Unavailable("the IPFS node is shutting down")
        w = self._wants.get(cid)
        if w is None:
            w = _Want(asyncio.get_running_loop().create_future())
            self._wants[cid] = w
            self._pending.append(cid)
            self._schedule_flush()
        w.waiters += 1
        return w.future

    def release(self, cid: CID) -> None:
        """Drop one waiter; forget the want when nobody waits any more."""
        w = self._wants.get(cid)
        if w is None:
            return
        w.waiters -= 1
        if w.waiters <= 0:
            del self._wants[cid]
            if not w.future.done():
                w.future.cancel()

    def _schedule_flush(self) -> None:
        # Wants made in the same loop iteration (a walk's concurrent gets) leave in one batch.
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        todo = [c for c in self._pending if c in self._wants and not self._wants[c].future.done()]
        self._pending.clear()
        for c in todo:
            self._wants[c].in_flight = True
        for i in range(0, len(todo), self._batch_size):
            self._spawn(self._fetch_batch(todo[i : i + self._batch_size]))

    def _spawn(self, coro: Awaitable[None]) -> None:
        async def run() -> None:
            await coro

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _fetch_batch(self, batch: list[CID]) -> None:
        try:
            async with self._sem:
                peers = self._host.connected_peers()
                if peers:
                    await asyncio.gather(*(self._ask_peer(p, batch) for p in peers))
        finally:
            for c in batch:
                w = self._wants.get(c)
                if w is not None:
                    w.in_flight = False

    async def _ask_peer(self, peer: PeerID, batch: list[CID]) -> None:
        wanted = [c for c in batch if c in self._wants and not self._wants[c].future.done()]
        if not wanted:
            return
        by_bytes = {c.bytes: c for c in wanted}
        stream: StreamLike | None = None
        checks: list[asyncio.Future[None]] = []
        try:
            stream = await self._host.new_stream(peer, PROTOCOL_NAME)
            await stream.write_msg(encode_msg(Want([c.bytes for c in wanted])))
            await stream.close()
            while True:
                # A peer that stops answering must not hold a fetch slot forever.
                try:
                    raw = await asyncio.wait_for(stream.read_msg(), self._stall)
                except TimeoutError:
                    raise Timeout(f"peer sent nothing for {self._stall:g}s") from None
                if raw is None:
                    break
                msg = decode_msg(raw)
                if isinstance(msg, BlockMsg):
                    cid = by_bytes.get(msg.cid)
                    if cid is None:
                        log.debug("peer %s sent a block we did not ask for; ignored", peer)
                        continue
                    # Hash checks run in threads while the next blocks are read off the stream.
                    checks.append(asyncio.ensure_future(self._deliver(peer, cid, msg.data)))
                elif isinstance(msg, DontHave):
                    for raw_cid in msg.cids:
                        c = by_bytes.get(raw_cid)
                        w = self._wants.get(c) if c is not None else None
                        if w is not None:
                            w.asked.add(peer)
                else:
                    raise InvalidInput("peer sent a Want on a reply stream")
            await asyncio.gather(*checks)
        except asyncio.CancelledError:
            if stream is not None:
                stream.reset()
            for f in checks:
                f.cancel()
            raise
        except Exception as exc:  # one bad peer must not fail the others
            log.info("fetching %d blocks from %s failed: %s", len(wanted), peer, exc)
            if stream is not None:
                stream.reset()
            await asyncio.gather(*checks, return_exceptions=True)

    async def _deliver(self, peer: PeerID, cid: CID, data: bytes) -> None:
        ok = (
            verify_block(cid, data)
            if len(data) <= _VERIFY_INLINE
            else await asyncio.to_thread(verify_block, cid, data)
        )
        if not ok:
            self.stats.bad_blocks += 1
            log.warning("peer %s sent bytes that do not hash to %s; dropped", peer, cid)
            return
        self.last_block_at = self._clock()
        self.stats.blocks_received += 1
        self.stats.bytes_received += len(data)
        w = self._wants.get(cid)
        if w is None or w.future.done():
            self.stats.dup_blocks += 1
            return
        w.future.set_result(data)

    async def _retry_loop(self) -> None:
        while True:
            await asyncio.sleep(self._retry_interval)
            again = [c for c, w in self._wants.items() if not w.future.done() and not w.in_flight]
            if again:
                self._pending.extend(again)
                self._schedule_flush()

    # -- serving -----------------------------------------------------------------------------------------
    async def _serve(self, stream: StreamLike) -> None:
        try:
            try:
                raw = await asyncio.wait_for(stream.read_msg(), self._stall)
            except TimeoutError:
                raise Timeout(f"no want received for {self._stall:g}s") from None
            if raw is None:
                return
            msg = decode_msg(raw)
            if not isinstance(msg, Want):
                raise InvalidInput("expected a Want message")
            if len(msg.cids) > MAX_WANT:
                raise InvalidInput(f"want of {len(msg.cids)} CIDs exceeds the limit of {MAX_WANT}")
            missing: list[bytes] = []
            # Read ahead a few blocks (disk reads and hash checks run in threads) while sending in order.
            ahead: deque[asyncio.Future[bytes | None]] = deque()
            todo = iter(msg.cids)
            try:
                for _ in msg.cids[:_READ_AHEAD]:
                    ahead.append(asyncio.ensure_future(self._read_local(next(todo))))
                for raw_cid in msg.cids:
                    data = await ahead.popleft()
                    nxt = next(todo, None)
                    if nxt is not None:
                        ahead.append(asyncio.ensure_future(self._read_local(nxt)))
                    if data is None:
                        missing.append(raw_cid)
                        continue
                    await stream.write_msg(encode_msg(BlockMsg(raw_cid, data)))
                    self.stats.blocks_sent += 1
                    self.stats.bytes_sent += len(data)
            finally:
                for f in ahead:
                    f.cancel()
            await stream.write_msg(encode_msg(DontHave(missing)))
            await stream.close()
        except asyncio.CancelledError:
            stream.reset()
            raise
        except Exception as exc:
            log.info("serving a want from %s failed: %s", getattr(stream, "remote_peer", "?"), exc)
            stream.reset()


    async def _read_local(self, raw_cid: bytes) -> bytes | None:
        """A block to serve, or None when we do not have it (or must not serve it)."""
        try:
            cid = CID.from_bytes(raw_cid)
            data = await self._store.get(cid)
        except (NotFound, InvalidInput):
            return None
        except PinclusterError as exc:  # e.g. a corrupted block: never serve it
            log.warning("not serving %r: %s", raw_cid, exc)
            return None
        return data if len(data) <= self._max_block else None


class FetchSession:
    """A BlockGetter over the local store and the network (one per `cat`, `pin/add`, `refs` …).

    ``cache=True`` stores fetched blocks in the local store in the background, batched (unpinned: GC may
    remove them), as kubo does; PinStore.add passes ``cache=False`` because it stores what it pins itself.

    Prefetch: when a dag-pb node is read, its children are fetched ahead (at most ``prefetch`` blocks
    outstanding), so one want carries many CIDs and traversals do not pay one round trip per block.
    """

    def __init__(self, exchange: Exchange, timeout: float, *, cache: bool = True, prefetch: int = 64) -> None:
        self._ex = exchange
        self._timeout = timeout
        self._cache = cache
        self._started = exchange._clock()
        self._to_store: list[tuple[CID, bytes]] = []
        self._store_task: asyncio.Task[None] | None = None
        self._prefetch_limit = prefetch
        self._prefetched: dict[CID, asyncio.Future[bytes]] = {}
        self._to_prefetch: deque[CID] = deque()

    async def get(self, cid: CID) -> bytes:
        ahead = self._prefetched.pop(cid, None)
        if ahead is not None:
            data = await ahead
        else:
            data = await self._get_one(cid)
        if self._prefetch_limit and cid.codec == DAG_PB:
            with contextlib.suppress(PinclusterError):
                self._to_prefetch.extend(c for c in link_cids(data) if c not in self._prefetched)
        self._top_up()
        return data

    def _top_up(self) -> None:
        while self._to_prefetch and len(self._prefetched) < self._prefetch_limit:
            c = self._to_prefetch.popleft()
            if c in self._prefetched:
                continue
            fut = asyncio.ensure_future(self._get_one(c))
            fut.add_done_callback(_retrieve)
            self._prefetched[c] = fut

    async def _get_one(self, cid: CID) -> bytes:
        try:
            return await self._ex._store.get(cid)
        except NotFound:
            pass
        data = await self.fetch(cid)
        if self._cache:
            self._to_store.append((cid, data))
            if self._store_task is None or self._store_task.done():
                self._store_task = asyncio.create_task(self._store_batches())
        return data

    async def has(self, cid: CID) -> bool:
        return await self._ex._store.has(cid)

    async def fetch(self, cid: CID) -> bytes:
        """Fetch from peers only; raises Timeout after ``timeout`` s without any block arriving."""
        ex = self._ex
        fut = ex.want(cid)
        try:
            while True:
                idle_since = max(self._started, ex.last_block_at)
                remaining = idle_since + self._timeout - ex._clock()
                if remaining <= 0:
                    n = len(ex._host.connected_peers())
                    where = (
                        f"{n} connected peer(s) of this private network do not have it"
                        if n
                        else "this node is not connected to any peer of its private network (check swarm.key "
                        "and Bootstrap, or use swarm/connect)"
                    )
                    raise Timeout(
                        f"could not fetch block {cid}: no block received for {self._timeout:g}s; {where}"
                    )
                done, _ = await asyncio.wait({fut}, timeout=remaining)
                if done:
                    return fut.result()
        finally:
            ex.release(cid)

    def close(self) -> None:
        """Drop prefetches nobody asked for (their wants are released)."""
        self._to_prefetch.clear()
        for fut in self._prefetched.values():
            fut.cancel()
        self._prefetched.clear()

    async def _store_batches(self) -> None:
        while self._to_store:
            batch, self._to_store = self._to_store[:64], self._to_store[64:]
            try:
                await self._ex._store.put_many(batch)
            except Exception as exc:  # caching is best effort
                log.warning("could not cache %d fetched blocks: %s", len(batch), exc)

    async def flush(self) -> None:
        """Wait until the cached blocks are stored."""
        while self._store_task is not None and not self._store_task.done():
            await self._store_task


def _retrieve(fut: asyncio.Future[bytes]) -> None:
    """Mark a prefetch's error as seen: it is re-raised only if someone asks for that block."""
    if not fut.cancelled():
        fut.exception()
