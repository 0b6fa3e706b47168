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
from bisect import bisect_right
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from itertools import chain
from typing import Any, Final, cast

from pincluster.cache import cached
from pincluster.errors import PinclusterError, Unavailable
from pincluster.pintracker.rows import (
    CODE_OF,
    DERIVED_CODES,
    DERIVED_ERRORS,
    ListedPage,
    LocalRow,
    Row,
    StatusRows,
    derived_row,
    implied_status,
)
from pincluster.types.codec import (
    StatusKey,
    StoredPin,
    blank_head_json,
    decode_status_key,
    global_head_json,
    status_entry_prefix,
    status_entry_rest,
)
from pincluster.types.gotime import unix_nano_text
from pincluster.types.multiaddr import Multiaddr
from pincluster.types.peer import PeerID
from pincluster.types.status import TrackerStatus

__all__ = ["PeerEntries", "local_lines", "merged_lines", "sparse_lines"]

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
    """``format_time`` of a Unix-nanosecond instant (a listing's batches share a few: cached; operations each
    have their own, ``unix_nano_text`` formats them cheaply)."""
    return cached(_TIME_TEXT, ts_ns, unix_nano_text, 64)


async def _close_all(streams: Sequence[object]) -> None:
    """Close a listing's streams (the members' and the local walk), whatever state they stopped in."""
    for stream in streams:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()


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
            when = unix_nano_text(ts_ns)  # an operation's own time: rarely shared, not worth caching here
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
        await _close_all([*remotes.values(), local])


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


# --- unfiltered merged listings from sparse rows ---------------------------------------------------------------
# The other members send only what this peer cannot derive from its own pinset (``StatusAllSparse``): the pins
# they hold and their operations. A pin allocated elsewhere is ``remote`` on a member, a metadata pin
# ``sharded``; this peer writes those itself, from each pin's stored status key (state format 3). At
# replication 1 on 3 peers each other member sends a third of the rows, and reads a third of the pinset (its
# allocations index). The line's start is formatted from the stored pin, and the peer_map part repeats across
# pins with the same status key and statuses: it is written once per listing and reused.

#: A member's explicit value for a CID: a derived status code (compact batch) or a row.
_Val = int | Row
#: ``_Remote`` value standing for "this member's stream failed": its entry is the failure.
_FAILED: Final = -2
#: Distinct peer_map texts kept per listing (allocations × statuses in use: a handful in a steady state).
_TAILS_MAX: Final = 4096


class _Remote:
    """Another member's sparse stream: the batch being read, and the rows read ahead of the local walk."""

    __slots__ = ("batch_time", "entries", "failed", "index", "keys", "peer", "pos", "sparse", "stream", "vals",
                 "waiting")

    def __init__(self, index: int, peer: PeerID, stream: AsyncIterator[tuple[bool, list[StatusRows]]]) -> None:
        self.index = index
        self.peer = peer
        self.stream = stream
        self.entries: PeerEntries | None = None
        self.sparse = True
        self.keys: list[bytes] = []
        self.vals: Sequence[_Val] = ()
        self.pos = 0
        self.batch_time = ""
        self.failed: str | None = None
        self.waiting: list[StatusRows] = []


async def sparse_lines(
    members: Sequence[PeerID],
    local_peer: PeerID,
    local: AsyncIterator[ListedPage],
    me: PeerEntries,
    remotes: Mapping[PeerID, AsyncIterator[tuple[bool, list[StatusRows]]]],
    entries_of: Callable[[PeerID], Awaitable[PeerEntries]],
    stored_of: Callable[[bytes], Awaitable[StoredPin | None]],
    now_ns: Callable[[], int],
) -> AsyncIterator[bytes]:
    """``GET /pins`` (no filter) on a member: the local walk (``listing_pages``) drives, one line per CID.

    ``remotes`` yield ``(sparse, batches)``: ``sparse`` False for a member that sent every row
    (``StatusAllCompact``, an older version), whose missing rows then mean it does not have the pin. Lines
    are byte for byte those of ``merged_lines`` for the same statuses (tests/unit/test_pintracker_listing.py).
    A member whose stream fails shows ``cluster_error`` from then on."""
    k = len(members)
    order = sorted(range(k), key=lambda i: str(members[i]))
    local_index = members.index(local_peer)
    rs = [_Remote(i, p, remotes[p]) for i, p in enumerate(members) if i != local_index]
    #: each member's rows with CIDs up to the local walk's page end, by CID, taken out as the CIDs are written
    gots: list[dict[bytes, _Val]] = [{} for _ in rs]
    failed_text: dict[int, str] = {}
    #: peer_map texts by signature, for each combination of batch times and failed members (constant in practice)
    texts: dict[tuple[Any, ...], dict[tuple[Any, ...], bytes]] = {}
    local_time = ""

    async def pull(r: _Remote) -> bool:
        """The next non-empty batch of ``r`` into its buffer; False at its end or failure (recorded)."""
        if r.failed is not None:
            return False
        try:
            while not r.waiting:
                r.sparse, batches = await anext(r.stream)
                r.waiting.extend(batches)
            batch = r.waiting.pop(0)
            if batch.ident is not None:
                r.entries = PeerEntries.from_ident(r.peer, batch.ident)
            r.batch_time = time_text(batch.ts_ns)
            if batch.keys:
                if len(batch.codes) != len(batch.keys) or max(batch.codes) >= len(DERIVED_CODES):
                    raise ValueError(f"malformed compact rows from {r.peer}")
                r.keys, r.vals = batch.keys, batch.codes
            else:
                r.keys, r.vals = [row[0] for row in batch.rows], batch.rows
            r.pos = 0
            return True
        except StopAsyncIteration:
            return False
        except Exception as exc:
            text = str(exc) or type(exc).__name__
            r.failed = text
            log.warning("status listing: %s failed: %s", r.peer, exc)
            ent = await entries_of(r.peer)  # from its last ping, as for any unreachable peer
            failed_text[r.index] = ent.error_entry(text, now_ns())
            return False

    async def fill(r: _Remote, got: dict[bytes, _Val], last: bytes | None) -> None:
        """Move ``r``'s rows with CIDs up to ``last`` (all, for None) into ``got``."""
        while True:
            n = len(r.keys)
            if r.pos < n:
                j = n if last is None else bisect_right(r.keys, last, r.pos)
                if j > r.pos:
                    got.update(zip(r.keys[r.pos:j], r.vals[r.pos:j], strict=True))
                    r.pos = j
                if j < n:
                    return
            if not await pull(r):
                return

    async def entries(r: _Remote) -> PeerEntries:
        if r.entries is None:
            r.entries = await entries_of(r.peer)
        return r.entries

    async def line_parts(key: bytes, f: StatusKey | None, row: Row | None, vals: list[_Val | None],
                         ) -> tuple[list[str], Row | None]:
        """The peer_map entries of one CID in peer order, and the row whose pin fields the line shows."""
        by_member: list[Row | None] = [None] * k
        texts: list[str | None] = [None] * k
        if row is not None:
            by_member[local_index] = row
            texts[local_index] = me.entry(row, local_time)
        for r, v in zip(rs, vals, strict=True):
            i = r.index
            if v == _FAILED or (v is None and r.failed is not None):
                texts[i] = failed_text[i]
                continue
            ent = await entries(r)
            if v is None:
                if f is None or not r.sparse:
                    continue  # the member does not have the pin (or is behind): no entry, as Go shows
                st = implied_status(f, r.peer.bytes)
                if st is None:
                    continue  # it should hold the pin but did not list it: behind this peer's pinset
                implied = derived_row(key, CODE_OF[st])
                by_member[i], texts[i] = implied, ent.entry(implied, local_time)
            else:
                explicit = derived_row(key, v) if isinstance(v, int) else v
                by_member[i], texts[i] = explicit, ent.entry(explicit, r.batch_time)
        top: Row | None = None
        for rr in by_member:
            if rr is not None and (top is None or _takes_over(rr[1])):
                top = rr
        return [t for i in order if (t := texts[i]) is not None], top

    async def extra_line(key: bytes, row: Row | None) -> bytes | None:
        """The line of a CID outside this peer's pinset (operations, or members ahead of this peer)."""
        vals: list[_Val | None] = [got.pop(key, None) for got in gots]
        parts, top = await line_parts(key, None, row, vals)
        if top is None:
            return None
        head = await _stored_head(stored_of, key) if top[6] else blank_head_json(key)
        return (head + ",".join(parts) + "}}\n").encode()

    outside: dict[bytes, Row] = {}
    fields: dict[bytes, StatusKey] = {}  # decoded status keys (a handful per listing)
    try:
        async for page in local:
            local_time = time_text(page.ts_ns)
            keys = page.keys
            if page.outside:  # operations outside the pinset: written with the members' extras
                outside.update(zip(keys, cast(list[Row], page.states), strict=True))
                continue
            if not keys:
                continue
            for r, got in zip(rs, gots, strict=True):
                await fill(r, got, keys[-1])
            # The page by columns (list comprehensions and zip run at C speed, a loop per CID would not):
            # each line is its head plus the peer_map text of its signature, which holds everything that text
            # depends on (this peer's status or row, the status key, each member's value), looked up in the
            # texts written so far in this listing.
            heads = page.heads  # the page is ours: misses and extras change it in place
            cols = [[got.pop(key, None) for key in keys] for got in gots]
            sigs = list(zip(page.states, page.skeys, *cols, strict=True))
            state = (local_time, *[(r.batch_time, r.failed is None) for r in rs])
            tails = texts.get(state)
            if tails is None or len(tails) >= _TAILS_MAX:
                tails = texts[state] = {}
            found = [tails.get(sig) for sig in sigs]
            if None in found:
                for i, tail in enumerate(found):
                    if tail is not None:
                        continue
                    sig = sigs[i]
                    tail = tails.get(sig)  # written for an earlier CID of this page
                    if tail is not None:
                        found[i] = tail
                        continue
                    key, st, skey = keys[i], sig[0], sig[1]
                    f = fields.get(skey)
                    if f is None:
                        if len(fields) >= _TAILS_MAX:
                            fields.clear()
                        f = fields[skey] = decode_status_key(skey)
                    row = derived_row(key, CODE_OF[st]) if isinstance(st, int) else st
                    parts, top = await line_parts(key, f, row, list(sig[2:]))
                    if top is None:
                        heads[i] = found[i] = b""
                    elif not top[6]:  # the line shows an unpin's empty fields
                        heads[i] = blank_head_json(key).encode()
                        found[i] = (",".join(parts) + "}}\n").encode()
                    else:
                        found[i] = tail = (",".join(parts) + "}}\n").encode()
                        if isinstance(st, int) and all(v is None or isinstance(v, int) for v in sig[2:]):
                            tails[sig] = tail  # not for operations' rows: their CID makes them unique
            lines = cast(list[bytes], found)
            if any(gots):  # members' CIDs this peer's pinset lacks: in CID order among the page's lines
                for key in sorted(set().union(*gots), reverse=True):
                    extra = await extra_line(key, None)
                    if extra is not None:
                        p = bisect_right(keys, key)
                        heads.insert(p, b"")
                        lines.insert(p, extra)
            out = b"".join(chain.from_iterable(zip(heads, lines, strict=True)))
            if out:
                yield out
        for r, got in zip(rs, gots, strict=True):
            await fill(r, got, None)
        extras: list[bytes] = []
        for key in sorted(set(outside).union(*gots)):
            extra = await extra_line(key, outside.get(key))
            if extra is not None:
                extras.append(extra)
        if extras:
            yield b"".join(extras)
    finally:
        await _close_all([*remotes.values(), local])
