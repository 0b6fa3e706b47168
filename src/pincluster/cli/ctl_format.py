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
from pincluster.types.cid import CID
from pincluster.types.codec import to_json_pretty
from pincluster.types.gotime import ZERO_TIME, format_time, is_zero_time, parse_time, unix_nano
from pincluster.types.models import (
    ID,
    AddedOutput,
    Alert,
    Error,
    GlobalPinInfo,
    GlobalRepoGC,
    Metric,
    Pin,
    Version,
)
from pincluster.types.status import PinMode, TrackerStatus

__all__ = [
    "PeerStatusView",
    "StatusView",
    "format_added",
    "format_alert",
    "format_bandwidth",
    "format_error",
    "format_gpi",
    "format_id",
    "format_json",
    "format_metric",
    "format_metric_names",
    "format_pin",
    "format_repo_gc",
    "format_status_view",
    "format_version",
    "humanize_bytes",
    "humanize_time",
]

_ZERO_TIME_TEXT: Final = format_time(ZERO_TIME)


def format_json(obj: Any) -> str:
    """``--enc json``: Go's ``json.MarshalIndent(obj, "", "    ")`` and a newline."""
    return to_json_pretty(obj).decode("utf-8") + "\n"


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
    other fields are skipped unread; times repeat across items (a peer's derived statuses share one), so each
    distinct text is parsed and formatted once. ``format_status_view(v)`` is ``format_gpi`` of the same item."""

    cid: str | dict[str, str]  # {"/": cid}: the pre-1.0 form
    name: str = ""
    peer_map: dict[str, PeerStatusView] | None = None


_STATUS_TEXT: dict[str, str] = {}
_TIME_TEXT: dict[str, str] = {}


def _status_text(json_name: str) -> str:
    return cached(_STATUS_TEXT, json_name, lambda t: TrackerStatus.from_string(t).text_name, 256)


def _time_text(text: str | None) -> str:
    """Go's ``MarshalText`` of the parsed time: the text itself when already canonical, which is the norm."""
    if text is None:
        return _ZERO_TIME_TEXT
    return cached(_TIME_TEXT, text, _reformat_time, 1024)


def _reformat_time(text: str) -> str:
    try:
        return format_time(parse_time(text))
    except InvalidInput:
        return text  # not a time Go could parse either: shown as sent


def _cid_text(cid: str | dict[str, str]) -> str:
    """The CID as Go prints it: v0 in base58, v1 in base32 (a text in another base is converted)."""
    text = cid if isinstance(cid, str) else cid.get("/", "")
    if (len(text) == 46 and text.startswith("Qm")) or text.startswith("b"):
        return text
    try:
        return str(CID.decode(text))
    except InvalidInput:
        return text


_PEER_LINES: dict[tuple[str, PeerStatusView], str] = {}


def format_status_view(v: StatusView) -> str:
    """``format_gpi`` of the item ``v`` was decoded from."""
    out = [_gpi_head(_cid_text(v.cid), v.name)]
    if v.peer_map:
        for entry in sorted(v.peer_map.items()):
            out.append(cached(_PEER_LINES, entry, _peer_view_line, 4096))
    return "".join(out)


def _peer_view_line(entry: tuple[str, PeerStatusView]) -> str:
    key, info = entry
    return _peer_status_line(info.peername or key, _status_text(info.status), info.error,
                             _time_text(info.timestamp), info.attempt_count, info.priority_pin)


def _go_clock(t: datetime) -> str:
    """Go's ``Format("2006-01-02 15:04:05")`` in the time's own zone."""
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d} {t.hour:02d}:{t.minute:02d}:{t.second:02d}"


def format_pin(obj: Pin) -> str:
    """One pinset entry (``pin ls``, ``pin add --no-status``)."""
    kind = obj.type.value.upper()
    if obj.mode is PinMode.DIRECT:
        kind += "-DIRECT"
    text = f"{obj.cid} | {obj.name} | {kind} | "
    if obj.is_pin_everywhere:
        text += "Repl. Factor: -1 | Allocations: [everywhere]"
    else:
        allocs = " ".join(sorted(str(p) for p in obj.allocations))
        text += (f"Repl. Factor: {obj.replication_factor_min}--{obj.replication_factor_max}"
                 f" | Allocations: [{allocs}]")
    if obj.max_depth == 0:
        depth = "Direct"
    elif obj.max_depth == -1:
        depth = "Recursive"
    else:
        depth = f"Recursive-{obj.max_depth}"
    text += f" | {depth} | Metadata: {'yes' if obj.metadata else 'no'}"
    text += f" | Exp: {'∞' if is_zero_time(obj.expire_at) else _go_clock(obj.expire_at)}"
    text += f" | Added: {'unknown' if is_zero_time(obj.timestamp) else _go_clock(obj.timestamp)}\n"
    return text


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


def format_bandwidth(obj: Mapping[str, Any] | None) -> str:
    """Per libp2p protocol (sorted): totals humanized, rates in bytes per second."""
    out = []
    for proto in sorted(obj or {}):
        stats = obj[proto] if obj is not None else {}
        if not isinstance(stats, Mapping):
            stats = {}
        tin = humanize_bytes(max(0, int(stats.get("total_in", 0) or 0)))
        tout = humanize_bytes(max(0, int(stats.get("total_out", 0) or 0)))
        rin = float(stats.get("rate_in", 0) or 0)
        rout = float(stats.get("rate_out", 0) or 0)
        out.append(f"{proto:>25}: In: {tin:>7}. Out: {tout:>7}. RateIn: {rin:.2f}B/s. RateOut: {rout:.2f}B/s\n")
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
