"""Text and JSON output of ``ipfs-cluster-ctl`` (spec §5.3), as pure functions over the typed models.

Each text function returns exactly what Go's ctl prints for one object, final newline included, so that
scripts which parse the Go tool's output keep working. Times that Go shows relative to "now" (metrics,
alerts) take ``now_ns`` so the output is testable.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from msgspec import Struct

from pincluster.cache import cached
from pincluster.errors import InvalidInput
from pincluster.types.codec import (
    GlobalPinInfoText,
    PinText,
    canonical_cid_text,
    canonical_peer_text,
    canonical_time_text,
    global_text_pretty,
    pin_text_pretty,
    status_json_name,
    text_max_depth,
    to_json_pretty,
)
from pincluster.types.gotime import format_time, is_zero_time, parse_time, unix_nano
from pincluster.types.models import (
    ID,
    AddedOutput,
    Alert,
    Bandwidth,
    Error,
    GlobalPinInfo,
    GlobalRepoGC,
    Metric,
    Pin,
    Version,
)
from pincluster.types.status import PinMode

__all__ = [
    "PeerStatusView",
    "PinView",
    "StatusView",
    "format_added",
    "format_alert",
    "format_bandwidth",
    "format_error",
    "format_gpi",
    "format_gpi_text_json",
    "format_id",
    "format_json",
    "format_metric",
    "format_metric_names",
    "format_pin",
    "format_pin_text_json",
    "format_pin_view",
    "format_repo_gc",
    "format_status_view",
    "format_version",
    "humanize_bytes",
    "humanize_time",
]


def format_json(obj: Any) -> str:
    """``--enc json``: Go's ``json.MarshalIndent(obj, "", "    ")`` and a newline."""
    return to_json_pretty(obj).decode("utf-8") + "\n"


def format_gpi_text_json(v: GlobalPinInfoText) -> str:
    """``format_json`` of the GlobalPinInfo ``v`` was decoded from (``status --enc json`` of a listing)."""
    return global_text_pretty(v).decode("utf-8") + "\n"


def format_pin_text_json(v: PinText) -> str:
    """``format_json`` of the Pin ``v`` was decoded from (``pin ls --enc json``)."""
    return pin_text_pretty(v).decode("utf-8") + "\n"


def format_id(obj: ID) -> str:
    """A peer's identity (``id``, each ``peers ls`` item)."""
    if obj.error:
        return f"{obj.id} | ERROR: {obj.error}\n"
    seen = len(obj.cluster_peers or ()) - 1
    lines = [f"{obj.id} | {obj.peername} | Sees {seen} other peers", "  > Addresses:"]
    lines += [f"    - {a}" for a in sorted(str(a) for a in obj.addresses or ())]
    if obj.ipfs.error:
        lines.append(f"  > IPFS ERROR: {obj.ipfs.error}")
    else:
        lines.append(f"  > IPFS: {obj.ipfs.id if obj.ipfs.id is not None else ''}")
        lines += [f"    - {a}" for a in sorted(str(a) for a in obj.ipfs.addresses or ())]
    return "\n".join(lines) + "\n"


def format_gpi(obj: GlobalPinInfo) -> str:
    """A CID's status on every peer (``status``, ``recover``, after ``pin add/rm/update``).

    Peers are sorted by peer ID (Go sorts the map keys) but shown by peername when they have one.
    """
    out = [_gpi_head(str(obj.cid), obj.name)]
    for key, info in sorted(((str(k), v) for k, v in obj.peer_map.items()), key=lambda kv: kv[0]):
        out.append(_peer_status_line(info.peername or key, info.status.text_name, info.error,
                                     format_time(info.timestamp), info.attempt_count, info.priority_pin))
    return "".join(out)


def _gpi_head(cid: str, name: str) -> str:
    return cid + (f" | {name}" if name else "") + ":\n"


def _peer_status_line(who: str, status: str, error: str, when: str, attempts: int, priority: bool) -> str:
    """Go: ``    > %-20s : %s`` (upper-case status), ``: error`` if any, then the time, attempts and priority."""
    line = f"    > {who:<20} : {status}"
    if error:
        line += f": {error}"
    return line + f" | {when} | Attempts: {attempts} | Priority: {'true' if priority else 'false'}\n"


class PeerStatusView(Struct, frozen=True, gc=False):
    """A ``peer_map`` entry as ``status`` prints it: text only (no peer ID, multiaddr or time objects).
    Hashable: a peer's entries repeat across items (one status and time for every pin it derived)."""

    peername: str = ""
    status: str = ""
    timestamp: str | None = None
    error: str = ""
    attempt_count: int = 0
    priority_pin: bool = False


class StatusView(Struct, gc=False):
    """A GlobalPinInfo as the text output of ``status`` needs it: the CID, the name and per peer its entry.

    Decoding a whole GlobalPinInfo (CID, peer IDs, addresses and times parsed into objects) and printing it cost
    ~100 µs per item, ten times what the daemon spends sending it: listing 100k pins took 11 s in the ctl. The
    other fields are skipped unread, and a peer's line is formatted once per distinct entry (a peer's derived
    statuses share one time, so they repeat). ``format_status_view(v)`` is ``format_gpi`` of the same item."""

    cid: str | dict[str, str]  # {"/": cid}: the pre-1.0 form
    name: str = ""
    peer_map: dict[str, PeerStatusView] | None = None


def _status_text(text: str) -> str:
    """The status as the text output shows it (upper case)."""
    return status_json_name(text).upper()


_PEER_LINES: dict[tuple[str, PeerStatusView], str] = {}


def format_status_view(v: StatusView) -> str:
    """``format_gpi`` of the item ``v`` was decoded from."""
    out = [_gpi_head(canonical_cid_text(v.cid), v.name)]
    if v.peer_map:
        for entry in sorted(v.peer_map.items()):
            out.append(cached(_PEER_LINES, entry, _peer_view_line, 4096))
    return "".join(out)


def _peer_view_line(entry: tuple[str, PeerStatusView]) -> str:
    key, info = entry
    return _peer_status_line(info.peername or key, _status_text(info.status), info.error,
                             canonical_time_text(info.timestamp), info.attempt_count, info.priority_pin)


def _go_clock(t: datetime) -> str:
    """Go's ``Format("2006-01-02 15:04:05")`` in the time's own zone."""
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d} {t.hour:02d}:{t.minute:02d}:{t.second:02d}"


def format_pin(obj: Pin) -> str:
    """One pinset entry (``pin ls``, ``pin add --no-status``)."""
    allocs = None if obj.is_pin_everywhere else sorted(str(p) for p in obj.allocations)
    return _pin_line(str(obj.cid), obj.name, obj.type.value.upper(), obj.mode is PinMode.DIRECT,
                     obj.replication_factor_min, obj.replication_factor_max, allocs, obj.max_depth,
                     bool(obj.metadata), None if is_zero_time(obj.expire_at) else _go_clock(obj.expire_at),
                     None if is_zero_time(obj.timestamp) else _go_clock(obj.timestamp))


def _pin_line(cid: str, name: str, kind: str, direct: bool, rmin: int, rmax: int, allocs: list[str] | None,
              depth: int, metadata: bool, expires: str | None, added: str | None) -> str:
    """Go's ``pin ls`` line; ``allocs`` None: pinned everywhere; ``expires``/``added`` None: the zero time."""
    text = f"{cid} | {name} | {kind}{'-DIRECT' if direct else ''} | "
    if allocs is None:
        text += "Repl. Factor: -1 | Allocations: [everywhere]"
    else:
        text += f"Repl. Factor: {rmin}--{rmax} | Allocations: [{' '.join(allocs)}]"
    if depth == 0:
        depth_text = "Direct"
    elif depth == -1:
        depth_text = "Recursive"
    else:
        depth_text = f"Recursive-{depth}"
    text += f" | {depth_text} | Metadata: {'yes' if metadata else 'no'}"
    text += f" | Exp: {'∞' if expires is None else expires}"
    return text + f" | Added: {'unknown' if added is None else added}\n"


class PinView(Struct, gc=False):
    """A pinset entry as ``pin ls`` prints it: text and numbers only (no CID, peer ID or time objects), the
    other fields skipped unread. ``format_pin_view(v)`` is ``format_pin`` of the same entry."""

    cid: str | dict[str, str]  # {"/": cid}: the pre-1.0 form
    name: str = ""
    type: str = "pin"
    mode: str = "recursive"
    max_depth: int | None = None  # absent: from the mode, as Pin does
    replication_factor_min: int = 0
    replication_factor_max: int = 0
    allocations: list[str] | None = None
    metadata: dict[str, str] | None = None
    expire_at: str | None = None
    timestamp: str | None = None


_CLOCKS: dict[str, str] = {}


def _clock(text: str | None) -> str | None:
    """``_go_clock`` of a time text (its wall clock in its own zone); None for the zero time."""
    if text is None:
        return None
    if len(text) >= 20 and text[10] == "T" and text[-1] == "Z" and text[:4] > "0001":  # UTC, not the zero time
        return text[:10] + " " + text[11:19]
    return cached(_CLOCKS, text, _parsed_clock, 1024) or None


def _parsed_clock(text: str) -> str:
    """The general case of ``_clock`` ("" for the zero time)."""
    try:
        t = parse_time(text)
    except InvalidInput:
        return text
    return "" if is_zero_time(t) else _go_clock(t)


def format_pin_view(v: PinView) -> str:
    """``format_pin`` of the entry ``v`` was decoded from."""
    rmin, rmax = v.replication_factor_min, v.replication_factor_max
    depth = text_max_depth(v.max_depth, v.mode)
    allocs = None if rmin == -1 and rmax == -1 else sorted([canonical_peer_text(p) for p in v.allocations or ()])
    return _pin_line(canonical_cid_text(v.cid), v.name, v.type.upper(), depth == 0, rmin, rmax, allocs, depth,
                     bool(v.metadata), _clock(v.expire_at), _clock(v.timestamp))


def format_added(obj: AddedOutput, quiet: bool = False) -> str:
    """One ``add`` event: ``added <cid> <name>`` (trailing space kept when the name is empty) or the CID."""
    cid = str(obj.cid) if obj.cid is not None else ""
    return f"{cid}\n" if quiet else f"added {cid} {obj.name}\n"


def format_version(obj: Version) -> str:
    return obj.version + "\n"


# --- humanize (go-humanize's Bytes and Time) ------------------------------------------------------------------
_SI_SIZES: Final = ("B", "kB", "MB", "GB", "TB", "PB", "EB")


def humanize_bytes(n: int) -> str:
    """go-humanize ``Bytes``: SI units (base 1000), one decimal below 10 (``5.5 GB``), else none (``21 GB``)."""
    if n < 10:
        return f"{n} B"
    e = math.floor(math.log(n) / math.log(1000))
    e = min(e, len(_SI_SIZES) - 1)
    val = math.floor(n / 1000**e * 10 + 0.5) / 10
    return f"{val:.1f} {_SI_SIZES[e]}" if val < 10 else f"{val:.0f} {_SI_SIZES[e]}"


_SECOND: Final = 1_000_000_000
_MINUTE: Final = 60 * _SECOND
_HOUR: Final = 60 * _MINUTE
_DAY: Final = 24 * _HOUR
_WEEK: Final = 7 * _DAY
_MONTH: Final = 30 * _DAY
_YEAR: Final = 12 * _MONTH
_LONG_TIME: Final = 37 * _YEAR
_MAX_INT64: Final = 2**63 - 1

#: go-humanize's default magnitudes: (upper bound, format, divisor); "%d" gets diff // divisor.
_MAGNITUDES: Final[tuple[tuple[int, str, int], ...]] = (
    (_SECOND, "now", _SECOND),
    (2 * _SECOND, "1 second %s", 1),
    (_MINUTE, "%d seconds %s", _SECOND),
    (2 * _MINUTE, "1 minute %s", 1),
    (_HOUR, "%d minutes %s", _MINUTE),
    (2 * _HOUR, "1 hour %s", 1),
    (_DAY, "%d hours %s", _HOUR),
    (2 * _DAY, "1 day %s", 1),
    (_WEEK, "%d days %s", _DAY),
    (2 * _WEEK, "1 week %s", 1),
    (_MONTH, "%d weeks %s", _WEEK),
    (2 * _MONTH, "1 month %s", 1),
    (_YEAR, "%d months %s", _MONTH),
    (18 * _MONTH, "1 year %s", 1),
    (2 * _YEAR, "2 years %s", 1),
    (_LONG_TIME, "%d years %s", _YEAR),
    (_MAX_INT64, "a long while %s", 1),
)


def humanize_time(then_ns: int, now_ns: int) -> str:
    """go-humanize ``Time``: ``then`` relative to ``now`` (``3 minutes from now``, ``1 hour ago``, ``now``)."""
    label, diff = "ago", now_ns - then_ns
    if then_ns > now_ns:
        label, diff = "from now", then_ns - now_ns
    diff = min(diff, _MAX_INT64)  # Go's Duration saturates
    _, fmt, div = next((m for m in _MAGNITUDES if m[0] > diff), _MAGNITUDES[-1])
    text = fmt.replace("%d", str(diff // div), 1) if "%d" in fmt else fmt
    return text.replace("%s", label, 1)


def format_metric(obj: Metric, now_ns: int) -> str:
    """``<peer> | <name>: <value> | Expires in: <relative time>``; freespace shown as bytes."""
    value = obj.value
    if obj.name == "freespace" and obj.weight > 0:
        value = humanize_bytes(obj.weight)
    peer = str(obj.peer) if obj.peer is not None else ""
    return f"{peer} | {obj.name}: {value} | Expires in: {humanize_time(obj.expire, now_ns)}\n"


def format_metric_names(names: list[str]) -> str:
    return "".join(f"{n}\n" for n in names)


def format_alert(obj: Alert, now_ns: int) -> str:
    peer = str(obj.peer) if obj.peer is not None else ""
    return (f"{peer}: {obj.name}. Expired at: {humanize_time(obj.expire, now_ns)}. "
            f"Triggered at: {humanize_time(unix_nano(obj.triggered_at), now_ns)}\n")


def format_bandwidth(obj: Mapping[str, Bandwidth] | None) -> str:
    """Per libp2p protocol (sorted): totals humanized, rates in bytes per second."""
    out = []
    for proto, st in sorted((obj or {}).items()):
        tin, tout = humanize_bytes(max(0, st.total_in)), humanize_bytes(max(0, st.total_out))
        out.append(f"{proto:>25}: In: {tin:>7}. Out: {tout:>7}. RateIn: {st.rate_in:.2f}B/s. "
                   f"RateOut: {st.rate_out:.2f}B/s\n")
    return "".join(out)


def format_repo_gc(obj: GlobalRepoGC) -> str:
    """``ipfs gc``: per peer (sorted by ID, shown by peername when set) the CIDs removed or errors."""
    out = []
    for key, item in sorted(((str(k), v) for k, v in (obj.peer_map or {}).items()), key=lambda kv: kv[0]):
        who = item.peername or key
        out.append(f"{who:<15} | ERROR: {item.error}\n" if item.error else f"{who:<15}\n")
        out.append("  > CIDs:\n")
        for k in item.keys or ():
            if k.error:
                out.append(f"    - ERROR: {k.error}\n")
            else:
                out.append(f"    - {k.key if k.key is not None else ''}\n")
    return "".join(out)


def format_error(code: int, message: str, json: bool = False) -> str:
    """An API error (printed on stdout): ``An error occurred:`` with the code and message, or its JSON."""
    if json:
        return format_json(Error(code=code, message=message))
    return f"An error occurred:\n  Code: {code}\n  Message: {message}\n"
