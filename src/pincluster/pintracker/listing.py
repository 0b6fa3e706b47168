"""Status listings written as NDJSON from compact rows (``GET /pins``, ``GET /pins?local=true``).

A merged item is the pin's part plus a ``peer_map`` entry per peer, sorted by peer ID. Building PinInfo and
GlobalPinInfo objects and then their JSON costs tens of µs per item; here the text is assembled from pieces:
the pin's part straight from its stored form (``global_head_json``), and per peer a constant prefix (peer ID,
name, IPFS daemon) plus the status part, which for statuses derived from the pinset (no error, the batch's
time) is the same text for every item and is cached. The result is byte for byte what
``to_json(GlobalPinInfo.from_pin_infos(infos))`` gives for the same statuses (tests/unit/test_pintracker_listing.py).

Merge rule (Go's ``GlobalPinInfo.Add``, in member order): the top-level fields come from the last status that
is not ``cluster_error`` (else the first); a status outside the pinset (an unpin) shows empty pin fields.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, cast

from pincluster.cache import cached
from pincluster.errors import PinclusterError, Unavailable
from pincluster.pintracker.rows import DERIVED_CODES, DERIVED_ERRORS, LocalRow, Row, StatusRows, derived_row
from pincluster.types.codec import (
    StoredPin,
    blank_head_json,
    global_head_json,
    status_entry_prefix,
    status_entry_rest,
)
from pincluster.types.gotime import format_time, from_unix_nano
from pincluster.types.multiaddr import Multiaddr
from pincluster.types.peer import PeerID
from pincluster.types.status import TrackerStatus

__all__ = ["PeerEntries", "local_lines", "merged_lines"]

log = logging.getLogger("pincluster.pintracker")

#: Lines per yielded chunk: ~60 KB, the size the REST writer sends at once.
CHUNK_LINES: Final = 160


class _Lines:
    """NDJSON lines gathered into chunks of ``CHUNK_LINES`` (one write each)."""

    __slots__ = ("_lines",)

    def __init__(self) -> None:
        self._lines: list[str] = []

    def add(self, line: str) -> bytes | None:
        """Add ``line``; returns a full chunk to send when one is ready."""
        self._lines.append(line)
        return self.full()

    def extend(self, lines: list[str]) -> None:
        """Add ``lines``; ``full`` then tells whether a chunk is ready."""
        self._lines.extend(lines)

    def full(self) -> bytes | None:
        """What is gathered as one chunk, if it is at least ``CHUNK_LINES`` lines."""
        return self.flush() if len(self._lines) >= CHUNK_LINES else None

    def flush(self) -> bytes | None:
        """What is gathered, as one chunk (None when nothing is)."""
        if not self._lines:
            return None
        self._lines.append("")
        chunk = "\n".join(self._lines).encode()
        self._lines = []
        return chunk


_CLUSTER_ERROR: Final = int(TrackerStatus.CLUSTER_ERROR)
_Derived = dict[int, tuple[str, str]]
_TIME_TEXT: dict[int, str] = {}


def time_text(ts_ns: int) -> str:
    """``format_time`` of a Unix-nanosecond instant (a listing's batches share a few: cached)."""
    return cached(_TIME_TEXT, ts_ns, lambda ns: format_time(from_unix_nano(ns)), 64)


def _takes_over(status: int) -> bool:
    """Go: a status sets the top-level fields unless it matches cluster_error (0 matches everything)."""
    return status != 0 and not status & _CLUSTER_ERROR


class PeerEntries:
    """One peer's ``peer_map`` entries: a constant prefix, and the rest cached for pinset-derived statuses."""

    __slots__ = ("_common", "_prefix", "peer", "sort_key")

    def __init__(self, peer: PeerID, peername: str, ipfs_id: PeerID | None, addrs: tuple[Multiaddr, ...]) -> None:
        self.peer = peer
        self.sort_key = str(peer)
        self._prefix = status_entry_prefix(peer, peername, ipfs_id, addrs)
        self._common: dict[str, _Derived] = {}

    @classmethod
    def from_ident(cls, peer: PeerID, ident: tuple[str, bytes | None, list[str]]) -> PeerEntries:
        name, ipfs_raw, addrs = ident
        return cls(peer, name, None if ipfs_raw is None else PeerID.from_bytes(ipfs_raw),
                   tuple(Multiaddr(a) for a in addrs))

    def entry(self, row: Row, batch_time: str) -> str:
        """The entry text of ``row``; ``batch_time`` stands for a row without a time of its own."""
        _, status, ts_ns, error, attempts, priority, _ = row
        if ts_ns is None:
            hit = self.derived(batch_time).get(status)
            if hit is not None and hit[0] == error and not attempts and not priority:
                return hit[1]
            when = batch_time
        else:
            when = time_text(ts_ns)
        return self._prefix + status_entry_rest(TrackerStatus(status), when, error, attempts, priority)

    def derived(self, batch_time: str) -> _Derived:
        """The entries of statuses derived from the pinset at ``batch_time`` (no time of their own, no
        attempts), by status: ``(error, text)``, the error being the one a derived status carries."""
        return cached(self._common, batch_time, self._derived_table, 16)

    def _derived_table(self, batch_time: str) -> _Derived:
        return {st: (err, self._prefix + status_entry_rest(TrackerStatus(st), batch_time, err, 0, False))
                for st, err in DERIVED_ERRORS.items()}

    def error_entry(self, error: str, when_ns: int) -> str:
        """A peer that could not answer: ``cluster_error`` with the reason."""
        return self._prefix + status_entry_rest(TrackerStatus.CLUSTER_ERROR, time_text(when_ns), error, 0, False)


def _head(s: StoredPin | None, row: Row) -> str | None:
    if not row[6]:
        return blank_head_json(row[0])
    return None if s is None else global_head_json(s)


async def local_lines(pages: AsyncIterator[tuple[int, list[LocalRow]]], me: PeerEntries) -> AsyncIterator[bytes]:
    """``GET /pins?local=true``: one line per row of this peer, in chunks of NDJSON."""
    lines = _Lines()
    async for ts_ns, page in pages:
        batch_time = time_text(ts_ns)
        for key, s, row in page:
            if row is None:
                continue
            head = _head(s, row) or blank_head_json(key)
            chunk = lines.add(head + me.entry(row, batch_time) + "}}")
            if chunk is not None:
                yield chunk
    chunk = lines.flush()
    if chunk is not None:
        yield chunk


#: A member's next batch: its time, and its rows, or its derived rows in compact form (CIDs, status codes);
#: the local member's batches also give the stored pins.
_Batch = tuple[int, list[Row], list[StoredPin | None] | None, list[bytes] | None, bytes | None]


class _Source:
    """One member's rows as the merge reads them: the current batch, a position, the batch's time. A batch
    in compact form (``keys``/``codes``) is turned into rows only when the per-CID merge needs them."""

    __slots__ = ("batch_time", "codes", "entries", "failed", "index", "keys", "next_batch", "pos", "rows", "stored")

    def __init__(self, index: int, entries: PeerEntries | None,
                 next_batch: Callable[[], Awaitable[_Batch | None]]) -> None:
        self.index = index
        self.entries = entries
        self.next_batch = next_batch
        self.rows: list[Row] = []
        self.stored: list[StoredPin | None] | None = None
        self.keys: list[bytes] | None = None
        self.codes: bytes | None = None
        self.pos = 0
        self.batch_time = ""
        self.failed: str | None = None

    def size(self) -> int:
        return len(self.keys) if self.keys is not None else len(self.rows)

    def as_rows(self) -> list[Row]:
        """The current batch as rows (a compact batch is converted once)."""
        if self.keys is not None:
            assert self.codes is not None
            self.rows = [derived_row(k, c) for k, c in zip(self.keys, self.codes, strict=True)]
            self.keys = self.codes = None
        return self.rows


async def merged_lines(
    members: Sequence[PeerID],
    local_peer: PeerID,
    local: AsyncIterator[tuple[int, list[LocalRow]]],
    me: PeerEntries,
    remotes: Mapping[PeerID, AsyncIterator[list[Any]]],
    entries_of: Callable[[PeerID], Awaitable[PeerEntries]],
    stored_of: Callable[[bytes], Awaitable[StoredPin | None]],
    now_ns: Callable[[], int],
) -> AsyncIterator[bytes]:
    """``GET /pins``: every member's rows zipped by CID, one line per CID, in chunks of NDJSON.

    ``local`` is this peer's ``status_pages(flt, every=True)`` (it also gives the pins' fields); ``remotes``
    the other members' ``StatusAllRows`` streams. A member whose stream fails shows ``cluster_error`` on every
    later item; when every member fails before any item, Unavailable is raised (an empty listing would claim
    there are no pins)."""
    k = len(members)
    order = sorted(range(k), key=lambda i: str(members[i]))
    local_index = members.index(local_peer) if local_peer in members else k
    sources: list[_Source] = []
    failed_text: dict[int, str] = {}

    def local_reader() -> Callable[[], Awaitable[_Batch | None]]:
        async def nxt() -> _Batch | None:
            async for ts_ns, page in local:
                if page:
                    # rows of pins that do not match stay as placeholders (None status): they carry the fields
                    rows = [row if row is not None else (key, -1, None, "", 0, False, True) for key, _, row in page]
                    return ts_ns, rows, [s for _, s, _ in page], None, None
            return None

        return nxt

    def remote_reader(i: int, stream: AsyncIterator[list[Any]]) -> Callable[[], Awaitable[_Batch | None]]:
        pending: list[StatusRows] = []

        async def nxt() -> _Batch | None:
            while True:
                while pending:
                    batch = pending.pop(0)
                    if batch.ident is not None:
                        sources[i].entries = PeerEntries.from_ident(members[i], batch.ident)
                    if batch.keys:
                        if len(batch.codes) != len(batch.keys) or max(batch.codes) >= len(DERIVED_CODES):
                            raise ValueError(f"malformed compact rows from {members[i]}")
                        return batch.ts_ns, [], None, batch.keys, batch.codes
                    if batch.rows:
                        return batch.ts_ns, batch.rows, None, None, None
                try:
                    pending.extend(await anext(stream))
                except StopAsyncIteration:
                    return None

        return nxt

    for i, peer in enumerate(members):
        if i == local_index:
            sources.append(_Source(i, me, local_reader()))
        else:
            sources.append(_Source(i, None, remote_reader(i, remotes[peer])))
    if local_index == k:  # not a member (being removed): still the source of the pins' fields
        sources.append(_Source(k, None, local_reader()))

    async def refill(src: _Source) -> bool:
        """Next non-empty batch of ``src``; False at its end or failure (recorded)."""
        if src.failed is not None:
            return False
        try:
            got = await src.next_batch()
        except Exception as exc:
            text = str(exc) or type(exc).__name__
            src.failed = text
            log.warning("status listing: %s failed: %s", members[src.index] if src.index < k else "local", exc)
            if src.index < k:
                ent = await entries_of(members[src.index])  # from its last ping, as for any unreachable peer
                failed_text[src.index] = ent.error_entry(text, now_ns())
            return False
        if got is None:
            return False
        src.batch_time = time_text(got[0])
        src.rows, src.stored, src.keys, src.codes = got[1], got[2], got[3], got[4]
        src.pos = 0
        return True

    live = [src for src in sources if await refill(src)]
    yielded = False
    lines = _Lines()
    group: list[Row | None] = [None] * len(sources)
    general = 0  # items left to take one by one before trying a run again
    backoff = _GENERAL_AFTER_MISS  # doubles while runs keep failing (a filtered listing never aligns)
    try:
        while live:
            if general:
                general -= 1
            elif len(live) == k == len(sources):  # every member has rows left (none failed or ended)
                taken = await _aligned_run(sources, order, entries_of, members, lines)
                if taken:
                    yielded = True
                    chunk = lines.full()
                    if chunk is not None:
                        yield chunk
                    for src in sources:
                        src.pos += taken
                        if src.pos >= src.size():
                            await refill(src)
                    live = [src for src in live if src.pos < src.size()]
                    backoff = _GENERAL_AFTER_MISS
                    continue
                general, backoff = backoff, min(backoff * 2, _GENERAL_MAX)
            key = live[0].as_rows()[live[0].pos][0]
            for src in live:
                other = src.as_rows()[src.pos][0]
                if other < key:
                    key = other
            stored: StoredPin | None = None
            any_row = False
            ended = False
            for src in live:
                row = src.rows[src.pos]
                if row[0] != key:
                    continue
                if src.stored is not None:
                    stored = src.stored[src.pos]
                if row[1] >= 0:
                    group[src.index] = row
                    any_row = True
                src.pos += 1
                if src.pos >= src.size() and not await refill(src):
                    ended = True
            if ended:
                live = [src for src in live if src.pos < src.size()]
            if not any_row:
                continue
            top: Row | None = None
            for r in group[:k]:
                if r is not None and (top is None or (r[1] and not r[1] & _CLUSTER_ERROR)):  # _takes_over
                    top = r
            if top is None:  # only a non-member's rows (this peer being removed): nothing to show
                group = [None] * len(sources)
                continue
            head = blank_head_json(key) if not top[6] else (
                global_head_json(stored) if stored is not None else await _stored_head(stored_of, key))
            parts: list[str] = []
            for i in order:
                r = group[i]
                if r is not None:
                    ent = sources[i].entries
                    if ent is None:
                        ent = sources[i].entries = await entries_of(members[i])
                    parts.append(ent.entry(r, sources[i].batch_time))
                elif i in failed_text:
                    parts.append(failed_text[i])
            chunk = lines.add(head + ",".join(parts) + "}}")
            yielded = True
            group = [None] * len(sources)
            if chunk is not None:
                yield chunk
        chunk = lines.flush()
        if chunk is not None:
            yield chunk
        if not yielded and failed_text and len(failed_text) == k:
            raise Unavailable("StatusAll: no peer could list its statuses: " + "; ".join(
                f"{members[i]}: {sources[i].failed}" for i in range(k)))
    finally:
        for stream in remotes.values():
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()
        aclose_local = getattr(local, "aclose", None)
        if aclose_local is not None:
            with contextlib.suppress(Exception):
                await aclose_local()


#: Rows compared at once for a run (see ``_aligned_run``), and items then taken one by one when they differ
#: (at first; twice as many after each run that fails in a row).
_RUN: Final = 128
_GENERAL_AFTER_MISS: Final = 16
_GENERAL_MAX: Final = 1024


async def _aligned_run(sources: list[_Source], order: list[int],
                       entries_of: Callable[[PeerID], Awaitable[PeerEntries]], members: Sequence[PeerID],
                       lines: _Lines) -> int:
    """Items where every member's next rows are for the same CIDs and hold statuses derived from the pinset
    (the steady state of a large pinset: the peers walk the same pinset in the same order). Their lines are
    the head plus one cached entry per member, with none of the per-CID merging; the first item that is
    not so ends the run. Returns how many rows of each source were used (0: none were aligned)."""
    run = min(_RUN, *[src.size() - src.pos for src in sources])
    segs = [src.rows[src.pos : src.pos + run] for src in sources]  # empty for a compact batch
    keys = [src.keys[src.pos : src.pos + run] if src.keys is not None else [r[0] for r in seg]
            for src, seg in zip(sources, segs, strict=True)]
    if any(k != keys[0] for k in keys[1:]):
        return 0
    local = next((src for src in sources if src.stored is not None), None)
    if local is None:
        return 0
    stored = local.stored[local.pos : local.pos + run]  # type: ignore[index]
    tables: list[_Derived] = []
    for i in order:
        src = sources[i]
        if src.entries is None:
            src.entries = await entries_of(members[i])
        tables.append(src.entries.derived(src.batch_time))
    stop = run
    texts: list[list[str | None]] = []
    for i, table in zip(order, tables, strict=True):
        codes = sources[i].codes
        if codes is not None:  # compact: derived statuses only, each with its derived error
            by_code = [table[st][1] for st in DERIVED_CODES]
            pos = sources[i].pos
            texts.append([by_code[c] for c in codes[pos : pos + stop]])
            continue
        col = [
            hit[1] if (hit := table.get(r[1])) is not None and r[2] is None and hit[0] == r[3] and r[6]
            and not r[4] and not r[5] else None
            for r in segs[i][:stop]
        ]
        if None in col:
            stop = col.index(None)
        texts.append(col)
    if None in stored[:stop]:
        stop = stored.index(None)
    if stop:
        cols = [cast(list[str], col[:stop]) for col in texts]  # no None before ``stop``
        lines.extend([global_head_json(s) + ",".join(parts) + "}}"
                      for s, parts in zip(cast(list[StoredPin], stored[:stop]), zip(*cols, strict=True),
                                          strict=True)])
    return stop


async def _stored_head(stored_of: Callable[[bytes], Awaitable[StoredPin | None]], key: bytes) -> str:
    """The head of a CID another peer has in its pinset but this one has not (a Raft entry not applied here
    yet): from this peer's pinset if it arrived meanwhile, else the blank head."""
    try:
        s = await stored_of(key)
    except PinclusterError:
        s = None
    return blank_head_json(key) if s is None else global_head_json(s)
