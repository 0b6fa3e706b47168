"""The one encoder of the data model: Go-compatible JSON (REST, export, ctl), msgpack (RPC), state bytes.

JSON (``to_json``/``from_json``) is byte-compatible with IPFS Cluster's Go output: Go's field names and order,
its ``null``/``[]``/omitted rules (spec §2), map keys sorted, times as Go writes them, and Go's HTML-safe
escaping of ``<``, ``>``, ``&``, U+2028 and U+2029. ``to_json`` returns one compact value without a newline;
bodies and NDJSON streams add ``\\n`` (see ``ndjson_lines``). Decoding accepts what Go emits and what Go clients
send: missing fields take Go's zero values (with the pin ``mode``/``max_depth`` rule of :class:`Pin`), unknown
fields are ignored, and bad values raise :class:`~pincluster.errors.InvalidInput` naming the field.

msgpack (``to_msgpack``/``from_msgpack``) is for RPC between pincluster peers: the same structs as maps,
with CIDs and peer IDs as bytes, statuses as their bit values, times as msgpack timestamps (UTC instants).

Times keep Go's nanoseconds through JSON (a :class:`~pincluster.types.gotime.GoTime` when below the
microsecond); msgpack and the state keep microseconds.

State (``pin_to_state``/``pin_from_state``) is the compact on-disk form of one :class:`Pin`; its format is
documented at ``pin_to_state`` and must stay stable (the state store versions it on disk).
"""

from __future__ import annotations

import contextlib
import decimal
import math
import re
import typing
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import msgspec
from msgspec import Struct

from pincluster.cache import cached as _cached
from pincluster.errors import InvalidInput, PinclusterError, StateError
from pincluster.types.cid import CID, b58encode
from pincluster.types.gotime import ZERO_TIME, GoTime, format_time, is_zero_time, parse_time, to_gotime
from pincluster.types.models import (
    MAX_DEPTH_FROM_MODE,
    Alert,
    Bandwidth,
    ConnectGraph,
    GlobalPinInfo,
    GlobalRepoGC,
    IPFSPinInfo,
    Pin,
    PinInfo,
    PinInfoShort,
    PinOptions,
    RepoGC,
    Time,
)
from pincluster.types.multiaddr import Multiaddr
from pincluster.types.peer import PeerID
from pincluster.types.status import IPFSPinStatus, PinMode, PinType, TrackerStatus

__all__ = [
    "STATE_FORMAT",
    "DecodeError",
    "GlobalPinInfoText",
    "PeerEntryText",
    "PinText",
    "StatusFields",
    "StatusKey",
    "StoredPin",
    "aiter_json_values",
    "blank_head_json",
    "canonical_addr_text",
    "canonical_cid_text",
    "canonical_peer_text",
    "canonical_time_text",
    "cid_multihash",
    "cid_text",
    "decode_state",
    "decode_status_fields",
    "decode_status_key",
    "from_json",
    "from_msgpack",
    "global_head_json",
    "global_text_pretty",
    "go_float_json",
    "go_float_raw",
    "go_json_plain",
    "held_status_keys",
    "iter_json_values",
    "ndjson_batches",
    "ndjson_lines",
    "pin_from_state",
    "pin_text_pretty",
    "pin_to_state",
    "state_pin_json",
    "state_pin_lines",
    "status_entry_prefix",
    "status_entry_rest",
    "status_json_name",
    "status_key",
    "stored_pin_modes",
    "text_max_depth",
    "to_json",
    "to_json_lines",
    "to_json_pretty",
    "to_msgpack",
]

T = TypeVar("T")


class DecodeError(InvalidInput):
    """Bytes that are not a valid encoding of the expected type; the message names the field."""


# --- leaf hooks ---------------------------------------------------------------------------------------------
def _json_enc_hook(obj: Any) -> Any:
    t = type(obj)
    if t is PeerID:
        return _peer_text(obj)
    if t is CID or t is Multiaddr:
        return str(obj)
    if isinstance(obj, datetime):  # GoTime, or a datetime subclass msgspec does not take natively
        return format_time(obj)
    raise NotImplementedError(f"cannot encode {t.__name__} as JSON")


def _json_dec_hook(t: type, obj: Any) -> Any:
    if t is CID:
        if isinstance(obj, dict) and isinstance(obj.get("/"), str):
            obj = obj["/"]  # the pre-1.0 {"/": "<cid>"} form
        if isinstance(obj, str):
            return CID.decode(obj)
        raise TypeError(f"expected a CID string, got {type(obj).__name__}")
    if t is PeerID:
        if isinstance(obj, str):
            return _peer_from_text(obj)
        raise TypeError(f"expected a peer ID string, got {type(obj).__name__}")
    if t is Multiaddr:
        if isinstance(obj, str):
            return _multiaddr_from_text(obj)
        raise TypeError(f"expected a multiaddr string, got {type(obj).__name__}")
    if t is GoTime:  # only in the exact twins (see _FINE_FRACTION_RE)
        if isinstance(obj, str):
            return _cached(_GOTIME_FROM_TEXT, obj, _parse_gotime, _CACHE_MAX)
        raise TypeError(f"expected an RFC 3339 time string, got {type(obj).__name__}")
    raise NotImplementedError(f"cannot decode {t!r} from JSON")


#: Times repeat across the items of a listing (a peer's derived statuses share the time it looked, written
#: with nanoseconds, which takes the exact twins): each text is parsed once. GoTime is immutable.
_GOTIME_FROM_TEXT: dict[str, GoTime] = {}


def _parse_gotime(text: str) -> GoTime:
    value = parse_time(text)
    return value if type(value) is GoTime else to_gotime(value)


_STATUS_FROM_TEXT: dict[str, TrackerStatus] = {}


def _status_from_text(text: str) -> TrackerStatus:
    """``TrackerStatus.from_string``, once per distinct text (a listing repeats a few)."""
    return _cached(_STATUS_FROM_TEXT, text, TrackerStatus.from_string, 256)


_PEER_FROM_TEXT: dict[str, PeerID] = {}


def _peer_from_text(text: str) -> PeerID:
    """Peer IDs repeat across pins: parse each text once (a bounded cache of valid IDs only)."""
    return _cached(_PEER_FROM_TEXT, text, PeerID.decode)


_MULTIADDR_FROM_TEXT: dict[str, Multiaddr] = {}


def _multiaddr_from_text(text: str) -> Multiaddr:
    """Every status item carries its peer's IPFS addresses: parse each text once (parsing validates IPs and
    peer IDs, ~25 µs each) and share the immutable object (only valid ones are cached: Multiaddr raises)."""
    return _cached(_MULTIADDR_FROM_TEXT, text, Multiaddr)


def _plain_datetime(t: datetime) -> datetime:
    """A ``datetime`` subclass (GoTime) as a plain one, which msgspec encodes natively (drops extra ns)."""
    return datetime(t.year, t.month, t.day, t.hour, t.minute, t.second, t.microsecond, t.tzinfo, fold=t.fold)


def _msgpack_enc_hook(obj: Any) -> Any:
    t = type(obj)
    if t is CID:  # the slots directly: this runs for every CID and peer ID of every RPC item
        return obj._b
    if t is PeerID:
        return obj._mh
    if t is Multiaddr:
        return str(obj)
    if isinstance(obj, datetime):
        return _plain_recent(obj)
    raise NotImplementedError(f"cannot encode {t.__name__} as msgpack")


_RECENT_PLAIN: dict[int, tuple[datetime, datetime]] = {}


def _plain_recent(t: datetime) -> datetime:
    """``_plain_datetime`` for RPC: a tracker stamps a whole listing with one GoTime object, so the last few
    conversions are kept by identity (each entry holds its object, so an id is not reused while cached)."""
    hit = _RECENT_PLAIN.get(id(t))
    if hit is not None and hit[0] is t:
        return hit[1]
    plain = _plain_datetime(t)
    if len(_RECENT_PLAIN) >= 64:
        _RECENT_PLAIN.clear()
    _RECENT_PLAIN[id(t)] = (t, plain)
    return plain


def _msgpack_dec_hook(t: type, obj: Any) -> Any:
    if t is CID:
        if type(obj) is bytes:
            if len(obj) == 34 and obj[0] == 0x12 and obj[1] == 0x20:
                return CID(obj)  # the common CIDv0, already well-formed (what from_bytes checks first)
            return CID.from_bytes(obj)
        raise TypeError(f"expected CID bytes, got {type(obj).__name__}")
    if t is PeerID:
        if isinstance(obj, bytes):
            return _peer_from_bytes(obj)
        raise TypeError(f"expected peer ID bytes, got {type(obj).__name__}")
    if t is Multiaddr:
        if isinstance(obj, str):
            return _multiaddr_from_text(obj)
        raise TypeError(f"expected a multiaddr string, got {type(obj).__name__}")
    raise NotImplementedError(f"cannot decode {t!r} from msgpack")


_PEER_CACHE: dict[bytes, PeerID] = {}
_PEER_TEXT: dict[PeerID, str] = {}


def _peer_text(pid: PeerID) -> str:
    """Peer IDs repeat across pins and statuses: encode each to base58 once."""
    return _cached(_PEER_TEXT, pid, str)


def _peer_from_bytes(raw: bytes) -> PeerID:
    """Peer IDs repeat across pins (a cluster has few peers): validate each once and share the object."""
    return _cached(_PEER_CACHE, raw, PeerID.from_bytes)


# --- JSON mirrors --------------------------------------------------------------------------------------------
# Go writes times with trimmed nanoseconds (msgspec would write ``.120000``), names for TrackerStatus (msgspec
# would write the IntFlag's number) and IPFSPinStatus, and sorted map keys (msgspec sorts only str keys). So
# objects holding those are written through these encode-only mirrors, whose fields are already text. A
# mirror field with no default is always written; one with a default is left out when equal to it (Go's
# ``omitempty``).
_Peers = tuple[PeerID, ...]
_Addrs = tuple[Multiaddr, ...]


class _PinOptionsOut(Struct, gc=False):
    replication_factor_min: int
    replication_factor_max: int
    name: str
    mode: PinMode
    shard_size: int
    user_allocations: _Peers | None
    expire_at: str
    metadata: dict[str, str] | None
    pin_update: CID | None
    origins: _Addrs | None


class _PinOut(Struct, gc=False):
    # str where a value is already its text (pin_text_pretty)
    replication_factor_min: int
    replication_factor_max: int
    name: str
    mode: PinMode | str
    shard_size: int
    user_allocations: _Peers | tuple[str, ...] | None
    expire_at: str
    metadata: dict[str, str] | None
    pin_update: CID | str | None
    origins: _Addrs | tuple[str, ...] | None
    cid: CID | str
    type: PinType | str
    allocations: _Peers | tuple[str, ...]
    max_depth: int
    reference: CID | str | None
    timestamp: str


class _ShortOut(Struct, gc=False, kw_only=True, omit_defaults=True):
    peername: str
    ipfs_peer_id: PeerID | str | None = None  # str: already the ID's text (global_text_pretty)
    ipfs_peer_addresses: _Addrs | tuple[str, ...] = ()
    status: str
    timestamp: str
    error: str
    attempt_count: int
    priority_pin: bool


class _PinInfoOut(Struct, gc=False, kw_only=True, omit_defaults=True):
    cid: CID
    name: str
    peer: PeerID
    allocations: _Peers | None
    origins: _Addrs | None
    created: str
    metadata: dict[str, str] | None
    peername: str
    ipfs_peer_id: PeerID | None = None
    ipfs_peer_addresses: _Addrs = ()
    status: str
    timestamp: str
    error: str
    attempt_count: int
    priority_pin: bool


class _GlobalOut(Struct, gc=False):
    cid: CID | str  # str: already the values' texts (global_text_pretty)
    name: str
    allocations: _Peers | tuple[str, ...] | None
    origins: _Addrs | tuple[str, ...] | None
    created: str
    metadata: dict[str, str] | None
    peer_map: dict[str, _ShortOut]


class _AlertOut(Struct, gc=False):
    name: str
    peer: PeerID | None
    value: str
    expire: int
    valid: bool
    weight: int
    partitionable: bool
    received_at: int
    triggered_at: str


class _BandwidthOut(Struct, gc=False):
    total_in: int
    total_out: int
    rate_in: msgspec.Raw
    rate_out: msgspec.Raw


class _ConnectGraphOut(Struct, gc=False):
    cluster_id: PeerID
    id_to_peername: dict[str, str] | None
    ipfs_links: dict[str, _Peers] | None
    cluster_links: dict[str, _Peers] | None
    cluster_trust_links: dict[str, bool] | None
    cluster_to_ipfs: dict[str, PeerID] | None


class _GlobalRepoGCOut(Struct, gc=False):
    peer_map: dict[str, RepoGC] | None


class _IPFSPinInfoOut(Struct, gc=False, rename="pascal"):
    cid: CID
    type: str


def _str_keys(d: dict[PeerID, T] | None) -> dict[str, T] | None:
    return None if d is None else {_peer_text(k): v for k, v in d.items()}


def _options_out(o: PinOptions) -> _PinOptionsOut:
    return _PinOptionsOut(
        o.replication_factor_min,
        o.replication_factor_max,
        o.name,
        o.mode,
        o.shard_size,
        o.user_allocations,
        format_time(o.expire_at),
        o.metadata,
        o.pin_update,
        o.origins,
    )


def _pin_out(p: Pin) -> _PinOut:
    return _PinOut(
        p.replication_factor_min,
        p.replication_factor_max,
        p.name,
        p.mode,
        p.shard_size,
        p.user_allocations,
        format_time(p.expire_at),
        p.metadata,
        p.pin_update,
        p.origins,
        p.cid,
        p.type,
        p.allocations,
        p.max_depth,
        p.reference,
        format_time(p.timestamp),
    )


def _short_out(s: PinInfoShort) -> _ShortOut:
    return _ShortOut(
        peername=s.peername,
        ipfs_peer_id=s.ipfs_peer_id,
        ipfs_peer_addresses=s.ipfs_peer_addresses,
        status=s.status.json_name,
        timestamp=format_time(s.timestamp),
        error=s.error,
        attempt_count=s.attempt_count,
        priority_pin=s.priority_pin,
    )


def _pininfo_out(p: PinInfo) -> _PinInfoOut:
    return _PinInfoOut(
        cid=p.cid,
        name=p.name,
        peer=p.peer,
        allocations=p.allocations,
        origins=p.origins,
        created=format_time(p.created),
        metadata=p.metadata,
        peername=p.peername,
        ipfs_peer_id=p.ipfs_peer_id,
        ipfs_peer_addresses=p.ipfs_peer_addresses,
        status=p.status.json_name,
        timestamp=format_time(p.timestamp),
        error=p.error,
        attempt_count=p.attempt_count,
        priority_pin=p.priority_pin,
    )


def _global_out(g: GlobalPinInfo) -> _GlobalOut:
    return _GlobalOut(
        g.cid,
        g.name,
        g.allocations,
        g.origins,
        format_time(g.created),
        g.metadata,
        {_peer_text(k): _short_out(v) for k, v in g.peer_map.items()},
    )


def _alert_out(a: Alert) -> _AlertOut:
    return _AlertOut(
        a.name,
        a.peer,
        a.value,
        a.expire,
        a.valid,
        a.weight,
        a.partitionable,
        a.received_at,
        format_time(a.triggered_at),
    )


def _graph_out(g: ConnectGraph) -> _ConnectGraphOut:
    return _ConnectGraphOut(
        g.cluster_id,
        _str_keys(g.id_to_peername),
        _str_keys(g.ipfs_links),
        _str_keys(g.cluster_links),
        _str_keys(g.cluster_trust_links),
        _str_keys(g.cluster_to_ipfs),
    )


def _repogc_out(g: GlobalRepoGC) -> _GlobalRepoGCOut:
    return _GlobalRepoGCOut(_str_keys(g.peer_map))


def _ipfspin_out(p: IPFSPinInfo) -> _IPFSPinInfoOut:
    return _IPFSPinInfoOut(p.cid, p.type.json_name)


# decode-side mirrors: only where a status arrives as a name
class _ShortIn(Struct, gc=False, kw_only=True):
    peername: str = ""
    ipfs_peer_id: PeerID | None = None
    ipfs_peer_addresses: _Addrs = ()
    status: str = ""
    timestamp: Time = ZERO_TIME
    error: str = ""
    attempt_count: int = 0
    priority_pin: bool = False


class _PinInfoIn(Struct, gc=False, kw_only=True):
    cid: CID
    name: str = ""
    peer: PeerID
    allocations: _Peers | None = None
    origins: _Addrs | None = None
    created: Time = ZERO_TIME
    metadata: dict[str, str] | None = None
    peername: str = ""
    ipfs_peer_id: PeerID | None = None
    ipfs_peer_addresses: _Addrs = ()
    status: str = ""
    timestamp: Time = ZERO_TIME
    error: str = ""
    attempt_count: int = 0
    priority_pin: bool = False


class _GlobalIn(Struct, gc=False, kw_only=True):
    cid: CID
    name: str = ""
    allocations: _Peers | None = None
    origins: _Addrs | None = None
    created: Time = ZERO_TIME
    metadata: dict[str, str] | None = None
    peer_map: dict[PeerID, _ShortIn] | None = None


class _IPFSPinInfoIn(Struct, gc=False, kw_only=True, rename="pascal"):
    cid: CID
    type: str = ""


def _short_in(w: _ShortIn) -> PinInfoShort:
    return PinInfoShort(
        peername=w.peername,
        ipfs_peer_id=w.ipfs_peer_id,
        ipfs_peer_addresses=w.ipfs_peer_addresses,
        status=_status_from_text(w.status),
        timestamp=w.timestamp,
        error=w.error,
        attempt_count=w.attempt_count,
        priority_pin=w.priority_pin,
    )


def _pininfo_in(w: _PinInfoIn) -> PinInfo:
    d = msgspec.structs.asdict(w)
    d["status"] = _status_from_text(w.status)
    return PinInfo(**d)


def _global_in(w: _GlobalIn) -> GlobalPinInfo:
    return GlobalPinInfo(
        cid=w.cid,
        name=w.name,
        allocations=w.allocations,
        origins=w.origins,
        created=w.created,
        metadata=w.metadata,
        peer_map={k: _short_in(v) for k, v in (w.peer_map or {}).items()},
    )


def _ipfspin_in(w: _IPFSPinInfoIn) -> IPFSPinInfo:
    return IPFSPinInfo(cid=w.cid, type=IPFSPinStatus.from_string(w.type))


def go_float_json(x: float) -> str:
    """A ``float64`` as Go's ``encoding/json`` writes it: the shortest digits that read back as ``x`` (as
    Python's ``repr``), in plain decimal for 1e-6 <= |x| < 1e21 and without a ``.0`` ("5", not "5.0"),
    otherwise with an exponent ("1e+21"; a negative one loses its leading zero: "1e-7")."""
    if not math.isfinite(x):
        raise ValueError(f"JSON has no {x!r}")  # Go's encoder refuses these too
    text = repr(x)
    if x != 0 and not 1e-6 <= abs(x) < 1e21:
        return text[:-2] + text[-1] if text[-4:-1] == "e-0" else text
    if "e" in text:
        text = format(decimal.Decimal(text), "f")
    return text.removesuffix(".0")


def go_float_raw(x: float) -> msgspec.Raw:
    """``go_float_json(x)`` to embed in a value msgspec encodes (its own float form would be ``0.0``)."""
    return msgspec.Raw(go_float_json(x).encode())


def _bandwidth_out(b: Bandwidth) -> _BandwidthOut:
    return _BandwidthOut(b.total_in, b.total_out, go_float_raw(b.rate_in), go_float_raw(b.rate_out))


_WIRE_OUT: Final[dict[type, Callable[[Any], Any]]] = {
    Bandwidth: _bandwidth_out,
    Pin: _pin_out,
    PinOptions: _options_out,
    PinInfoShort: _short_out,
    PinInfo: _pininfo_out,
    GlobalPinInfo: _global_out,
    Alert: _alert_out,
    IPFSPinInfo: _ipfspin_out,
    ConnectGraph: _graph_out,
    GlobalRepoGC: _repogc_out,
}
_WIRE_IN: Final[dict[type, tuple[type, Callable[[Any], Any]]]] = {
    PinInfoShort: (_ShortIn, _short_in),
    PinInfo: (_PinInfoIn, _pininfo_in),
    GlobalPinInfo: (_GlobalIn, _global_in),
    IPFSPinInfo: (_IPFSPinInfoIn, _ipfspin_in),
}


def _wire(obj: Any) -> Any:
    """Swap objects that need a JSON mirror (at the top level or inside a list/tuple/dict)."""
    conv = _WIRE_OUT.get(type(obj))
    if conv is not None:
        return conv(obj)
    if type(obj) in (list, tuple):
        return [_wire(o) for o in obj]
    if type(obj) is dict:
        return {(str(k) if type(k) is PeerID else k): _wire(v) for k, v in obj.items()}
    if isinstance(obj, datetime):
        return format_time(obj)
    return obj


# --- JSON ----------------------------------------------------------------------------------------------------
_JSON_ENC: Final = msgspec.json.Encoder(enc_hook=_json_enc_hook, order="deterministic")
_GO_ESCAPE_RE: Final = re.compile(rb"[<>&]|\xe2\x80[\xa8\xa9]")
_GO_ESCAPES: Final = {
    b"<": b"\\u003c",
    b">": b"\\u003e",
    b"&": b"\\u0026",
    b"\xe2\x80\xa8": b"\\u2028",
    b"\xe2\x80\xa9": b"\\u2029",
}


def _go_escape(data: bytes) -> bytes:
    """Go's ``encoding/json`` HTML-safe escaping. These characters only occur inside JSON strings, so a
    byte replacement is exact."""
    if (
        data.find(b"<") < 0
        and data.find(b">") < 0
        and data.find(b"&") < 0
        and (data.isascii() or data.find(b"\xe2\x80") < 0)
    ):
        return data  # a few fast scans beat one regex with an alternation (and ``find`` beats ``in`` on bytes)
    return _GO_ESCAPE_RE.sub(lambda m: _GO_ESCAPES[m.group(0)], data)


def go_json_plain(obj: Any) -> bytes:
    """Compact JSON of plain values (dicts in their own key order, lists, strings, numbers) as Go's
    ``encoding/json`` writes a struct with those fields: UTF-8 as it is, ``<``, ``>``, ``&``, U+2028 and U+2029
    escaped (kubo's RPC answers)."""
    return _go_escape(msgspec.json.encode(obj))


def to_json(obj: Any) -> bytes:
    """Compact JSON exactly as Go's ``encoding/json`` writes ``obj`` (no trailing newline).

    ``obj`` is a model object, or a list/tuple/dict of them (a list gives a JSON array).
    """
    fast = _FAST_JSON.get(type(obj))
    if fast is not None:
        return fast(obj).encode()
    return _go_escape(_JSON_ENC.encode(_wire(obj)))


def to_json_lines(objs: Iterable[Any]) -> bytes:
    """``to_json(obj) + b"\\n"`` for each object, as one bytes (a chunk of an NDJSON stream)."""
    fast_get = _FAST_JSON.get
    parts: list[str] = []
    for obj in objs:
        fast = fast_get(type(obj))
        parts.append(fast(obj) if fast is not None else _go_escape(_JSON_ENC.encode(_wire(obj))).decode())
    parts.append("")
    return "\n".join(parts).encode()


def _to_json_generic(obj: Any) -> bytes:
    """``to_json`` through the JSON mirrors only: the reference the fast writers are tested against."""
    return _go_escape(_JSON_ENC.encode(_wire(obj)))


# --- fast JSON writers ---------------------------------------------------------------------------------------
# Status listings write one GlobalPinInfo per pin, and the mirror path above costs ~50 µs per item (mirror
# structs, one enc_hook call per CID/peer/multiaddr, time formatting). These writers build the same text
# directly from per-value fragments: texts that repeat across a listing (peer IDs, peer names, multiaddrs,
# status names) come from small caches; strings that may need escaping go through msgspec plus Go's HTML
# escaping, exactly as the mirror path does. tests/unit/test_types_fastjson.py checks the two agree byte for
# byte on generated objects.
_STR_ENC: Final = msgspec.json.Encoder().encode
_CACHE_MAX: Final = 4096


def _jstr(s: str) -> str:
    """A JSON string literal, escaped as Go's encoder does (scanning the ``str`` is cheaper than the bytes)."""
    if not s:
        return '""'
    if s.isascii() and "<" not in s and ">" not in s and "&" not in s:
        return _STR_ENC(s).decode()
    return _go_escape(_STR_ENC(s)).decode()


_TEXT_JSON: dict[str, str] = {}


def _jstr_cached(s: str) -> str:
    """``_jstr`` for texts that repeat across items (peer names, multiaddrs, status names)."""
    return _cached(_TEXT_JSON, s, _jstr, _CACHE_MAX)


def _jpeers(peers: tuple[PeerID, ...] | None) -> str:
    """A list of peer IDs (base58: never escaped), or null."""
    if peers is None:
        return "null"
    if not peers:
        return "[]"
    return '["' + '","'.join([str(p) for p in peers]) + '"]'


def _jaddrs(addrs: tuple[Multiaddr, ...] | None) -> str:
    if addrs is None:
        return "null"
    return "[" + ",".join([_jstr_cached(str(a)) for a in addrs]) + "]"


def _jmeta(metadata: dict[str, str] | None) -> str:
    if metadata is None:
        return "null"
    if not metadata:
        return "{}"
    return _go_escape(_JSON_ENC.encode(metadata)).decode()


def _jcid(cid: CID | None) -> str:
    return "null" if cid is None else '"' + str(cid) + '"'


_STATUS_JSON: dict[int, str] = {}


def _jstatus(status: TrackerStatus) -> str:
    value: int = status._value_
    j = _STATUS_JSON.get(value)
    if j is None:
        j = _STATUS_JSON[value] = _jstr(status.json_name)
    return j


def _jtime(t: datetime) -> str:
    return '"' + format_time(t) + '"'


_IPFS_JSON: dict[tuple[PeerID | None, tuple[Multiaddr, ...]], str] = {}


def _jipfs(ipfs_id: PeerID | None, addrs: tuple[Multiaddr, ...]) -> str:
    """The optional ``ipfs_peer_id``/``ipfs_peer_addresses`` fields, with their leading commas. Every item of
    a listing repeats its peer's IPFS identity: cached by value (equal IDs and addresses have equal texts)."""
    if type(addrs) is not tuple:
        return _jipfs_text(ipfs_id, addrs)
    return _cached(_IPFS_JSON, (ipfs_id, addrs), _jipfs_from_key, _CACHE_MAX)


def _jipfs_from_key(key: tuple[PeerID | None, tuple[Multiaddr, ...]]) -> str:
    return _jipfs_text(*key)


def _jipfs_text(ipfs_id: PeerID | None, addrs: tuple[Multiaddr, ...]) -> str:
    text = "" if ipfs_id is None else ',"ipfs_peer_id":"' + str(ipfs_id) + '"'
    if addrs:
        text += ',"ipfs_peer_addresses":' + _jaddrs(addrs)
    return text


# The writers below are single f-strings: one allocation per object, where chained ``+`` copies the growing
# text once per piece.
def _short_fields(s: PinInfoShort | PinInfo) -> str:
    """The PinInfoShort fields (also inline in PinInfo), without braces."""
    return (
        f'"peername":{_jstr_cached(s.peername)}{_jipfs(s.ipfs_peer_id, s.ipfs_peer_addresses)}'
        f',"status":{_jstatus(s.status)},"timestamp":"{format_time(s.timestamp)}","error":{_jstr(s.error)}'
        f',"attempt_count":{int(s.attempt_count)},"priority_pin":{"true" if s.priority_pin else "false"}'
    )


def _fast_short(s: PinInfoShort) -> str:
    return f"{{{_short_fields(s)}}}"


def _fast_global(g: GlobalPinInfo) -> str:
    pm = g.peer_map
    if len(pm) == 1:
        ((peer, short),) = pm.items()
        entries = f'"{peer}":{{{_short_fields(short)}}}'
    else:
        by_text = sorted([(str(k), v) for k, v in pm.items()], key=_first)
        entries = ",".join([f'"{k}":{{{_short_fields(v)}}}' for k, v in by_text])
    return (
        f'{{"cid":"{g.cid}","name":{_jstr(g.name)},"allocations":{_jpeers(g.allocations)}'
        f',"origins":{_jaddrs(g.origins)},"created":"{format_time(g.created)}","metadata":{_jmeta(g.metadata)}'
        f',"peer_map":{{{entries}}}}}'
    )


def _first(item: tuple[str, Any]) -> str:
    return item[0]


def _fast_pininfo(p: PinInfo) -> str:
    return (
        f'{{"cid":"{p.cid}","name":{_jstr(p.name)},"peer":"{p.peer}","allocations":{_jpeers(p.allocations)}'
        f',"origins":{_jaddrs(p.origins)},"created":"{format_time(p.created)}","metadata":{_jmeta(p.metadata)}'
        f",{_short_fields(p)}}}"
    )


def _fast_pin(p: Pin) -> str:
    return (
        f'{{"replication_factor_min":{int(p.replication_factor_min)}'
        f',"replication_factor_max":{int(p.replication_factor_max)},"name":{_jstr(p.name)}'
        f',"mode":"{p.mode._value_}","shard_size":{int(p.shard_size)}'
        f',"user_allocations":{_jpeers(p.user_allocations)},"expire_at":"{format_time(p.expire_at)}"'
        f',"metadata":{_jmeta(p.metadata)},"pin_update":{_jcid(p.pin_update)},"origins":{_jaddrs(p.origins)}'
        f',"cid":"{p.cid}","type":"{p.type._value_}","allocations":{_jpeers(p.allocations)}'
        f',"max_depth":{int(p.max_depth)},"reference":{_jcid(p.reference)}'
        f',"timestamp":"{format_time(p.timestamp)}"}}'
    )


_FAST_JSON: Final[dict[type, Callable[[Any], str]]] = {
    GlobalPinInfo: _fast_global,
    PinInfo: _fast_pininfo,
    Pin: _fast_pin,
    PinInfoShort: _fast_short,
}


def to_json_pretty(obj: Any) -> bytes:
    """Go's ``json.MarshalIndent(obj, "", "    ")`` (ctl ``--enc=json``), without the trailing newline."""
    return _pretty(_wire(obj))


def _pretty(wire: Any) -> bytes:
    """``to_json_pretty`` of a value already in its wire form (a mirror)."""
    return _go_escape(msgspec.json.format(_JSON_ENC.encode(wire), indent=4))


# --- values as sent: views that skip building objects ------------------------------------------------------
# A client that only prints an item (the ctl over a listing of 100k pins) decodes it into a view whose fields
# are the JSON texts, and puts each text into the form Go prints through a cache (peer IDs, addresses, times
# and statuses repeat across items). A text that is not a valid value is kept as sent.


def _as_printed(render: Callable[[str], str]) -> Callable[[str], str]:
    """``render`` of a value's text, or the text as sent when it is not a valid value."""

    def convert(text: str) -> str:
        try:
            return render(text)
        except InvalidInput:
            return text

    return convert


_canonical_cid = _as_printed(lambda t: str(CID.decode(t)))
_canonical_peer = _as_printed(lambda t: _peer_text(_peer_from_text(t)))
_canonical_addr = _as_printed(lambda t: str(_multiaddr_from_text(t)))
_canonical_time = _as_printed(lambda t: format_time(parse_time(t)))


def canonical_cid_text(cid: str | dict[str, str]) -> str:
    """A CID text (or pre-1.0 ``{"/": cid}``) as Go prints the CID: v0 in base58, v1 in base32."""
    text = cid if isinstance(cid, str) else cid.get("/", "")
    if (len(text) == 46 and text.startswith("Qm")) or text.startswith("b"):
        return text
    return _canonical_cid(text)


_CANONICAL_PEER: dict[str, str] = {}
_CANONICAL_ADDR: dict[str, str] = {}
_CANONICAL_TIME: dict[str, str] = {}
_STATUS_JSON_NAME: dict[str, str] = {}


def canonical_peer_text(text: str) -> str:
    """A peer ID text as Go prints the ID (base58)."""
    return _cached(_CANONICAL_PEER, text, _canonical_peer, _CACHE_MAX)


def canonical_addr_text(text: str) -> str:
    """A multiaddr text as Go prints the address."""
    return _cached(_CANONICAL_ADDR, text, _canonical_addr, _CACHE_MAX)


#: A UTC time exactly as Go writes one (no trailing zero in the fraction, at most 9 digits): kept as it is.
_GO_UTC_TIME_RE: Final = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{0,8}[1-9])?Z")


def canonical_time_text(text: str | None) -> str:
    """A time text as Go writes the parsed time (None: absent, the zero time)."""
    if text is None:
        return _ZERO_TIME_TEXT
    if _GO_UTC_TIME_RE.fullmatch(text) is not None:  # the norm; and pins' times are unique: not cached
        return text
    return _cached(_CANONICAL_TIME, text, _canonical_time, _CACHE_MAX)


def status_json_name(text: str) -> str:
    """A status text as Go writes the status it parses (``TrackerStatusFromString``)."""
    return _cached(_STATUS_JSON_NAME, text, lambda t: _status_from_text(t).json_name, 256)


class PeerEntryText(Struct, gc=False, kw_only=True):
    """A ``peer_map`` entry as sent (see :class:`GlobalPinInfoText`)."""

    peername: str = ""
    ipfs_peer_id: str | None = None
    ipfs_peer_addresses: list[str] = []
    status: str = ""
    timestamp: str | None = None
    error: str = ""
    attempt_count: int = 0
    priority_pin: bool = False


class GlobalPinInfoText(Struct, gc=False, kw_only=True):
    """A GlobalPinInfo with its values as sent, for output that writes it again (``ctl --enc json``):
    :func:`global_text_pretty` gives what ``to_json_pretty`` gives for the GlobalPinInfo, at a fraction of
    the cost of building one."""

    cid: str | dict[str, str]
    name: str = ""
    allocations: list[str] | None = None
    origins: list[str] | None = None
    created: str | None = None
    metadata: dict[str, str] | None = None
    peer_map: dict[str, PeerEntryText] | None = None


def global_text_pretty(v: GlobalPinInfoText) -> bytes:
    """``to_json_pretty(from_json(line, GlobalPinInfo))`` of the (valid) line ``v`` was decoded from."""
    peer_map = {
        canonical_peer_text(k): _ShortOut(
            peername=e.peername,
            ipfs_peer_id=None if e.ipfs_peer_id is None else canonical_peer_text(e.ipfs_peer_id),
            ipfs_peer_addresses=tuple([canonical_addr_text(a) for a in e.ipfs_peer_addresses]),
            status=status_json_name(e.status),
            timestamp=canonical_time_text(e.timestamp),
            error=e.error,
            attempt_count=e.attempt_count,
            priority_pin=e.priority_pin,
        )
        for k, e in (v.peer_map or {}).items()
    }
    out = _GlobalOut(
        canonical_cid_text(v.cid),
        v.name,
        None if v.allocations is None else tuple([canonical_peer_text(p) for p in v.allocations]),
        None if v.origins is None else tuple([canonical_addr_text(a) for a in v.origins]),
        canonical_time_text(v.created),
        v.metadata,
        peer_map,
    )
    return _pretty(out)


class PinText(Struct, gc=False, kw_only=True):
    """A Pin with its values as sent (see :class:`GlobalPinInfoText`; :func:`pin_text_pretty`)."""

    replication_factor_min: int = 0
    replication_factor_max: int = 0
    name: str = ""
    mode: str = "recursive"
    shard_size: int = 0
    user_allocations: list[str] | None = None
    expire_at: str | None = None
    metadata: dict[str, str] | None = None
    pin_update: str | dict[str, str] | None = None
    origins: list[str] | None = None
    cid: str | dict[str, str]
    type: str = "pin"
    allocations: list[str] = []
    max_depth: int | None = None  # absent: from the mode, as Pin does
    reference: str | dict[str, str] | None = None
    timestamp: str | None = None


def text_max_depth(max_depth: int | None, mode: str) -> int:
    """A pin's ``max_depth`` as Pin takes it from the values sent: absent, from the ``mode``."""
    if max_depth is None or max_depth == MAX_DEPTH_FROM_MODE:
        return 0 if mode == "direct" else -1
    return max_depth


def pin_text_pretty(v: PinText) -> bytes:
    """``to_json_pretty(from_json(line, Pin))`` of the (valid) line ``v`` was decoded from."""
    depth = text_max_depth(v.max_depth, v.mode)
    out = _PinOut(
        v.replication_factor_min,
        v.replication_factor_max,
        v.name,
        "direct" if depth == 0 else "recursive",  # Pin: the mode always agrees with max_depth
        v.shard_size,
        None if v.user_allocations is None else tuple([canonical_peer_text(p) for p in v.user_allocations]),
        canonical_time_text(v.expire_at),
        v.metadata,
        None if v.pin_update is None else canonical_cid_text(v.pin_update),
        None if v.origins is None else tuple([canonical_addr_text(a) for a in v.origins]),
        canonical_cid_text(v.cid),
        v.type,
        tuple([canonical_peer_text(p) for p in v.allocations]),
        depth,
        None if v.reference is None else canonical_cid_text(v.reference),
        canonical_time_text(v.timestamp),
    )
    return _pretty(out)


# Times: msgspec parses RFC 3339 in C but rounds a 7–9 digit fraction to microseconds, where Go keeps
# nanoseconds. Such fractions are rare (Go peers and clients; this package writes microseconds), so a value
# whose bytes contain one is decoded through "exact" twins of the structs, whose time fields go through
# parse_time (nanoseconds kept in a GoTime, as Go); every other value takes the fast path.
_FINE_FRACTION_RE: Final = re.compile(rb"\.[0-9]{7}")


def _is_time_type(t: Any) -> bool:
    return t is datetime or (typing.get_origin(t) is typing.Annotated and typing.get_args(t)[0] is datetime)


def _exact_twin(cls: type[Struct], swap: dict[Any, Any] | None = None) -> type[Struct] | None:
    """``cls`` with its time fields typed GoTime (decoded by the hook); None when it has no time field."""
    fields: list[Any] = []
    changed = False
    rename = {}
    for f in msgspec.structs.fields(cls):
        t: Any = f.type
        if _is_time_type(t):
            t = GoTime
            changed = True
        elif swap and t in swap:
            t = swap[t]
            changed = True
        if f.encode_name != f.name:
            rename[f.name] = f.encode_name
        if f.default_factory is not msgspec.NODEFAULT:
            fields.append((f.name, t, msgspec.field(default_factory=f.default_factory)))
        elif f.default is not msgspec.NODEFAULT:
            fields.append((f.name, t, f.default))
        else:
            fields.append((f.name, t))
    if not changed:
        return None
    return msgspec.defstruct(f"_Exact{cls.__name__}", fields, kw_only=True, gc=False, rename=rename or None)


def _as(cls: type[T]) -> Callable[[Any], T]:
    def convert(twin: Any) -> T:
        return cls(**msgspec.structs.asdict(twin))

    return convert


_EXACT_SHORT: Final = _exact_twin(_ShortIn)
_EXACT_IN: Final[dict[type, tuple[Any, Callable[[Any], Any]]]] = {
    PinInfoShort: (_EXACT_SHORT, _short_in),
    PinInfo: (_exact_twin(_PinInfoIn), _pininfo_in),
    GlobalPinInfo: (
        _exact_twin(_GlobalIn, {dict[PeerID, _ShortIn] | None: dict[PeerID, _EXACT_SHORT] | None}),  # type: ignore[valid-type]
        _global_in,
    ),
    Pin: (_exact_twin(Pin), _as(Pin)),
    PinOptions: (_exact_twin(PinOptions), _as(PinOptions)),
    Alert: (_exact_twin(Alert), _as(Alert)),
}


class _JSONDecoder:
    """The fast decoder of a type, plus its exact twin for values with sub-microsecond times."""

    __slots__ = ("_exact", "_exact_post", "_fast", "_post")

    def __init__(self, typ: Any) -> None:
        post: Callable[[Any], Any] | None = None
        wire_type: Any = typ
        exact_type: Any = None
        exact_post: Callable[[Any], Any] | None = None
        item = typing.get_args(typ)[0] if typing.get_origin(typ) is list and len(typing.get_args(typ)) == 1 else None
        if typ in _WIRE_IN:
            wire_type, post = _WIRE_IN[typ]
        elif item is not None and item in _WIRE_IN:
            item_wire, item_post = _WIRE_IN[item]
            wire_type = list[item_wire]  # type: ignore[valid-type]
            post = _each(item_post)
        if typ in _EXACT_IN:
            exact_type, exact_post = _EXACT_IN[typ]
        elif item is not None and item in _EXACT_IN:
            item_exact, item_exact_post = _EXACT_IN[item]
            exact_type, exact_post = list[item_exact], _each(item_exact_post)  # type: ignore[valid-type]
        self._fast = msgspec.json.Decoder(wire_type, dec_hook=_json_dec_hook)
        self._post = post
        self._exact = None if exact_type is None else msgspec.json.Decoder(exact_type, dec_hook=_json_dec_hook)
        self._exact_post = exact_post

    def decode(self, buf: bytes | memoryview) -> Any:
        """Decode one whole value, through the exact twin when it holds a sub-microsecond time."""
        if self._exact is not None and _FINE_FRACTION_RE.search(buf) is not None:
            value = self._exact.decode(buf)
            return self._exact_post(value) if self._exact_post is not None else value
        return self.fast(buf)

    def fast(self, buf: bytes | memoryview) -> Any:
        """Decode with the fast decoder only (the stream splitter uses it to find where a value ends)."""
        value = self._fast.decode(buf)
        return self._post(value) if self._post is not None else value

    def needs_exact(self, buf: bytes | memoryview) -> bool:
        return self._exact is not None and _FINE_FRACTION_RE.search(buf) is not None


def _each(conv: Callable[[Any], Any]) -> Callable[[list[Any]], list[Any]]:
    def convert(values: list[Any]) -> list[Any]:
        return [conv(v) for v in values]

    return convert


_json_decoders: dict[Any, _JSONDecoder] = {}


def _json_decoder(typ: Any) -> _JSONDecoder:
    dec = _json_decoders.get(typ)
    if dec is None:
        dec = _json_decoders[typ] = _JSONDecoder(typ)
    return dec


@typing.overload
def from_json(data: bytes | str, typ: type[T]) -> T: ...
@typing.overload
def from_json(data: bytes | str, typ: Any = ...) -> Any: ...
def from_json(data: bytes | str, typ: Any = Any) -> Any:
    """Decode one JSON value as ``typ`` (a model class, ``list[Model]``, or any type msgspec knows).

    Raises :class:`DecodeError` (an InvalidInput) naming the bad field, e.g. ``invalid CID 'x' - at `$.cid```.
    """
    dec = _json_decoder(typ)
    try:
        return dec.decode(data.encode() if isinstance(data, str) else data)
    except msgspec.ValidationError as exc:
        raise DecodeError(f"invalid {_type_name(typ)} JSON: {exc}") from None
    except msgspec.DecodeError as exc:
        raise DecodeError(f"malformed JSON for {_type_name(typ)}: {exc}") from None
    except InvalidInput as exc:
        raise DecodeError(f"invalid {_type_name(typ)} JSON: {exc}") from None


def _type_name(typ: Any) -> str:
    return getattr(typ, "__name__", None) or repr(typ)


# --- msgpack (RPC) -------------------------------------------------------------------------------------------
_MSGPACK_ENC: Final = msgspec.msgpack.Encoder(enc_hook=_msgpack_enc_hook)
_msgpack_decoders: dict[Any, msgspec.msgpack.Decoder[Any]] = {}


def msgpack_encoder() -> msgspec.msgpack.Encoder:
    """The msgpack encoder with our type hooks (CID/PeerID as bytes, Multiaddr as text, GoTime as datetime);
    the RPC layer frames its messages with it."""
    return _MSGPACK_ENC


def msgpack_decoder(typ: Any) -> msgspec.msgpack.Decoder[Any]:
    """The (cached) msgpack decoder of ``typ`` with our type hooks; raises msgspec errors as they are."""
    dec = _msgpack_decoders.get(typ)
    if dec is None:
        dec = _msgpack_decoders[typ] = msgspec.msgpack.Decoder(typ, dec_hook=_msgpack_dec_hook)
    return dec


def to_msgpack(obj: Any) -> bytes:
    """Compact binary form for RPC between pincluster peers (not a Go wire format)."""
    return _MSGPACK_ENC.encode(obj)


@typing.overload
def from_msgpack(data: bytes, typ: type[T]) -> T: ...
@typing.overload
def from_msgpack(data: bytes, typ: Any = ...) -> Any: ...
def from_msgpack(data: bytes, typ: Any = Any) -> Any:
    """Decode ``to_msgpack`` output as ``typ``; raises :class:`DecodeError` naming the bad field."""
    dec = msgpack_decoder(typ)
    try:
        return dec.decode(data)
    except msgspec.ValidationError as exc:
        raise DecodeError(f"invalid {_type_name(typ)} msgpack: {exc}") from None
    except msgspec.DecodeError as exc:
        raise DecodeError(f"malformed msgpack for {_type_name(typ)}: {exc}") from None
    except InvalidInput as exc:
        raise DecodeError(f"invalid {_type_name(typ)} msgpack: {exc}") from None


# --- state (on-disk pin) -------------------------------------------------------------------------------------
#: Format tag stored as the first element of every ``pin_to_state`` value.
STATE_FORMAT: Final = 1

_TYPE_CODE: Final[dict[PinType, int]] = {t: t.bits for t in PinType}
_CODE_TYPE: Final[dict[int, PinType]] = {t.bits: t for t in PinType}


class _StatePin(Struct, array_like=True, gc=False):
    """Positional msgpack array; trailing fields equal to their default may be left out (see pin_to_state).
    CIDs and peer IDs stay bytes here: building them afterwards in Python is several times faster than
    through msgspec's ``dec_hook``."""

    fmt: int
    cid: bytes
    type: int
    max_depth: int
    timestamp: datetime | None = None
    rf_min: int = 0
    rf_max: int = 0
    allocations: list[bytes] = []
    name: str = ""
    metadata: dict[str, str] | None = None
    expire_at: datetime | None = None
    reference: bytes | None = None
    shard_size: int = 0
    pin_update: bytes | None = None
    origins: list[str] | None = None


#: A decoded stored pin, for listings that skip building a :class:`Pin` (see ``decode_state``).
StoredPin = _StatePin

_STATE_ENC: Final = msgspec.msgpack.Encoder()
_STATE_DEC: Final = msgspec.msgpack.Decoder(_StatePin)
_STATE_REQUIRED: Final = 4
# defaults of _StatePin by position (the required ones are never compared)
_STATE_DEFAULTS: Final[tuple[Any, ...]] = (None, None, None, None, None, 0, 0, [], "", None, None, None, 0, None, None)


def _time_to_state(t: datetime) -> datetime | None:
    if t.year == 1 and is_zero_time(t):
        return None
    if t.tzinfo is UTC and type(t) is datetime:
        return t
    if t.utcoffset() is None:
        raise InvalidInput(f"time {t.isoformat()!r} has no timezone; pins need tz-aware times")
    return _plain_datetime(t).astimezone(UTC)


def pin_to_state(pin: Pin) -> bytes:
    """The compact, stable on-disk form of a pin (format 1): about 50 bytes for a pin-everywhere pin.

    A msgpack array, in this order; trailing elements equal to their default are left out:

    ====  ==============  =====================================================================
    #     field           encoding (default)
    ====  ==============  =====================================================================
    0     format          int, always ``1`` (a reader refuses other values)
    1     cid             binary CID (bytes)
    2     type            Go's PinType bit: 1 bad, 2 pin, 4 meta, 8 clusterdag, 16 shard, 30 all
    3     max_depth       int (-1 recursive, 0 direct, n); ``mode`` is derived from it
    4     timestamp       msgpack timestamp (ext -1), UTC; nil for Go's zero time (nil)
    5     rf_min          int (0)
    6     rf_max          int (0)
    7     allocations     array of peer-ID multihash bytes (empty)
    8     name            str ("")
    9     metadata        map str→str, nil when empty (nil)
    10    expire_at       msgpack timestamp or nil, as timestamp (nil)
    11    reference       binary CID or nil (nil)
    12    shard_size      int (0)
    13    pin_update      binary CID or nil (nil)
    14    origins         array of multiaddr strings, or nil (nil)
    ====  ==============  =====================================================================

    Times are stored as UTC instants with microsecond precision (Go stores whole seconds and shows them in
    local time: QUIRK not copied). ``user_allocations`` is not stored (request-time only, as in Go).
    New fields may only be appended, with a default that means "absent".
    """
    ts = pin.timestamp
    ts_state = ts if (ts.tzinfo is UTC and type(ts) is datetime and ts.year != 1) else _time_to_state(ts)
    allocations = [p.bytes for p in pin.allocations] if pin.allocations else []
    expire = pin.expire_at
    expire_state = None if expire is ZERO_TIME else _time_to_state(expire)
    ref = pin.reference
    upd = pin.pin_update
    if (
        expire_state is None
        and ref is None
        and upd is None
        and not pin.name
        and not pin.metadata
        and not pin.shard_size
        and not pin.origins
    ):  # the common short form: nothing after the allocations
        short: list[Any] = [
            STATE_FORMAT,
            pin.cid.bytes,
            _TYPE_CODE[pin.type],
            pin.max_depth,
            ts_state,
            pin.replication_factor_min,
            pin.replication_factor_max,
            allocations,
        ]
        n = 8
        while n > _STATE_REQUIRED and short[n - 1] == _STATE_DEFAULTS[n - 1]:
            n -= 1
        return _STATE_ENC.encode(short if n == 8 else short[:n])
    fields: list[Any] = [
        STATE_FORMAT,
        pin.cid.bytes,
        _TYPE_CODE[pin.type],
        pin.max_depth,
        ts_state,
        pin.replication_factor_min,
        pin.replication_factor_max,
        allocations,
        pin.name,
        pin.metadata or None,
        expire_state,
        None if ref is None else ref.bytes,
        pin.shard_size,
        None if upd is None else upd.bytes,
        [str(o) for o in pin.origins] if pin.origins else None,
    ]
    n = len(fields)
    while n > _STATE_REQUIRED and fields[n - 1] == _STATE_DEFAULTS[n - 1]:
        n -= 1
    return _STATE_ENC.encode(fields[:n] if n < len(fields) else fields)


def pin_from_state(raw: bytes) -> Pin:
    """Decode ``pin_to_state`` output. As Go shows stored pins: ``user_allocations`` None, ``metadata``
    None when empty, ``origins`` ``()`` when empty, ``mode`` from ``max_depth``; times in UTC.

    Raises :class:`StateError` for another format and :class:`DecodeError` for corrupt bytes.
    """
    # only fields up to allocations were stored: fewer arguments, faster
    return pin_from_stored(decode_state(raw), short=0x94 <= raw[0] <= 0x98)


def pin_from_stored(s: StoredPin, *, short: bool = False) -> Pin:
    """The :class:`Pin` of ``decode_state`` output (``pin_from_state`` without the decoding); ``short`` says
    that only the fields up to the allocations were stored."""
    pin_type = _CODE_TYPE[s.type]
    timestamp = ZERO_TIME if s.timestamp is None else s.timestamp
    try:
        c = s.cid
        n = len(c)
        if (n == 34 and c[0] == 0x12 and c[1] == 0x20) or (
            n == 36 and c[0] == 1 and c[1] < 0x80 and c[2] == 0x12 and c[3] == 0x20
        ):
            cid = CID(c)  # CIDv0 / CIDv1 with sha2-256: well-formed as they are (from_bytes' own fast path)
        else:
            cid = CID.from_bytes(c)
        allocations = tuple(map(_peer_from_bytes, s.allocations)) if s.allocations else ()
        if short:
            return Pin(
                replication_factor_min=s.rf_min,
                replication_factor_max=s.rf_max,
                origins=(),
                cid=cid,
                type=pin_type,
                allocations=allocations,
                max_depth=s.max_depth,
                timestamp=timestamp,
            )
        return Pin(
            replication_factor_min=s.rf_min,
            replication_factor_max=s.rf_max,
            name=s.name,
            shard_size=s.shard_size,
            expire_at=ZERO_TIME if s.expire_at is None else s.expire_at,
            metadata=s.metadata or None,
            pin_update=None if s.pin_update is None else CID.from_bytes(s.pin_update),
            origins=tuple(Multiaddr(o) for o in s.origins) if s.origins else (),
            cid=cid,
            type=pin_type,
            allocations=allocations,
            max_depth=s.max_depth,
            reference=None if s.reference is None else CID.from_bytes(s.reference),
            timestamp=timestamp,
        )
    except InvalidInput as exc:
        raise DecodeError(f"corrupt pin in the state store: {exc}") from None


# --- listings straight from the state bytes ------------------------------------------------------------------
# ``GET /allocations`` and the status listings write one line per pin of the pinset. Building a Pin (CID, peer
# IDs, multiaddrs, datetimes) and then its JSON costs ~25 µs per pin; these writers go from the stored bytes to
# the same text, with the repeating pieces (peer IDs, allocation lists) cached by their stored bytes.
# tests/unit/test_types_statejson.py checks them byte for byte against ``to_json`` of the decoded objects.
_ALLOC_JSON: dict[bytes | tuple[bytes, ...], str] = {}
_ZERO_TIME_TEXT: Final = format_time(ZERO_TIME)
_ZERO_TIME_JSON: Final = '"' + _ZERO_TIME_TEXT + '"'
_V0_SHA256: Final = b"\x12\x20"


class _StatusFields(Struct, array_like=True, gc=False):
    """The leading fields of a stored pin, which are all a peer needs to derive its status for the pin (the
    rest of the array is skipped unread: no datetime, name or metadata objects)."""

    fmt: int
    cid: bytes
    type: int
    max_depth: int
    timestamp: msgspec.Raw = msgspec.Raw(b"")
    rf_min: int = 0
    rf_max: int = 0
    allocations: list[bytes] = []


#: What ``decode_status_fields`` gives: the fields of a stored pin that decide a peer's status for it.
StatusFields = _StatusFields
_STATUS_DEC: Final = msgspec.msgpack.Decoder(_StatusFields)


def decode_status_fields(raw: bytes) -> StatusFields:
    """``decode_state`` of the fields a status needs only (a peer answering a merged listing; ~40% cheaper)."""
    return _decode_stored(_STATUS_DEC, raw)


def stored_pin_modes(page: Sequence[tuple[bytes, bytes]]) -> list[tuple[str, PinMode]]:
    """``(CID text, mode)`` of the stored ``(key, value)`` pairs of pins that reach IPFS (metadata pins left
    out): what the proxy's ``pin/ls`` lists, from the leading fields only."""
    meta, direct, recursive = PinType.META.bits, PinMode.DIRECT, PinMode.RECURSIVE
    out = []
    for key, raw in page:
        s = decode_status_fields(raw)
        if s.type != meta:
            out.append((cid_text(key), direct if s.max_depth == 0 else recursive))
    return out


def decode_state(raw: bytes) -> StoredPin:
    """The stored fields of a pin without building a :class:`Pin` (listings); raises like ``pin_from_state``."""
    return _decode_stored(_STATE_DEC, raw)


_S = TypeVar("_S", _StatePin, _StatusFields)


def _decode_stored(dec: msgspec.msgpack.Decoder[_S], raw: bytes) -> _S:
    try:
        s = dec.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise DecodeError(f"corrupt pin in the state store: {exc}") from None
    if s.fmt != STATE_FORMAT:
        raise StateError(
            f"stored pin has format {s.fmt}, this version reads format {STATE_FORMAT}: "
            "upgrade pincluster to read this state"
        )
    if s.type not in _CODE_TYPE:
        raise DecodeError(f"corrupt pin in the state store: unknown pin type code {s.type}")
    return s


def cid_text(c: bytes) -> str:
    """``str(CID.from_bytes(c))``; the common sha2-256 shapes skip validation (as ``pin_from_state`` does)."""
    n = len(c)
    if n == 34 and c[0] == 0x12 and c[1] == 0x20:
        return b58encode(c)
    if not (n == 36 and c[0] == 1 and c[1] < 0x80 and c[2] == 0x12 and c[3] == 0x20):
        try:
            return str(CID.from_bytes(c))
        except InvalidInput as exc:
            raise DecodeError(f"corrupt pin in the state store: {exc}") from None
    return str(CID(c))


def cid_multihash(c: bytes) -> bytes:
    """The multihash inside binary CID ``c`` (what the tracker compares, so that v0 and v1 match)."""
    if c[0] == 0x12:
        return c
    if c[1] < 0x80:
        return c[2:]
    return CID(c).multihash


def _jpeer_bytes(raw: bytes) -> str:
    return '"' + _peer_text(_peer_from_bytes(raw)) + '"'


def _jalloc_bytes(allocs: list[bytes]) -> str:
    """A stored allocation list as JSON (never null: stored pins show ``[]``)."""
    if not allocs:
        return "[]"
    key: bytes | tuple[bytes, ...] = allocs[0] if len(allocs) == 1 else tuple(allocs)
    return _cached(_ALLOC_JSON, key, _jalloc_from_key, _CACHE_MAX)


def _jalloc_from_key(key: bytes | tuple[bytes, ...]) -> str:
    """The JSON list of a ``_jalloc_bytes`` key (one peer's bytes, or a tuple of them)."""
    return "[" + ",".join([_jpeer_bytes(a) for a in ((key,) if isinstance(key, bytes) else key)]) + "]"


def _jorigins_state(origins: list[str] | None) -> str:
    if not origins:
        return "[]"
    return "[" + ",".join([_jstr_cached(str(_multiaddr_from_text(o))) for o in origins]) + "]"


def _jstate_time(t: datetime | None) -> str:
    return _ZERO_TIME_JSON if t is None else '"' + format_time(t) + '"'


def _jstate_cid(c: bytes | None) -> str:
    return "null" if c is None else '"' + cid_text(c) + '"'


def state_pin_json(raw: bytes) -> str:
    """``to_json(pin_from_state(raw))`` as text, without building the Pin (``GET /allocations``)."""
    s = decode_state(raw)
    return (
        f'{{"replication_factor_min":{s.rf_min},"replication_factor_max":{s.rf_max},"name":{_jstr(s.name)}'
        f',"mode":"{"direct" if s.max_depth == 0 else "recursive"}","shard_size":{s.shard_size}'
        f',"user_allocations":null,"expire_at":{_jstate_time(s.expire_at)}'
        f',"metadata":{_jmeta(s.metadata or None)},"pin_update":{_jstate_cid(s.pin_update)}'
        f',"origins":{_jorigins_state(s.origins)},"cid":"{cid_text(s.cid)}","type":"{_CODE_TYPE[s.type]._value_}"'
        f',"allocations":{_jalloc_bytes(s.allocations)},"max_depth":{s.max_depth}'
        f',"reference":{_jstate_cid(s.reference)},"timestamp":{_jstate_time(s.timestamp)}}}'
    )


def state_pin_lines(raws: Iterable[bytes]) -> bytes:
    """``state_pin_json`` of each value plus a newline, as one NDJSON chunk."""
    parts = [state_pin_json(r) for r in raws]
    parts.append("")
    return "\n".join(parts).encode()


def global_head_json(s: StoredPin) -> str:
    """The start of a GlobalPinInfo line whose top-level fields come from the stored pin ``s`` (up to and
    including ``"peer_map":{``)."""
    return (
        f'{{"cid":"{cid_text(s.cid)}","name":{_jstr(s.name)},"allocations":{_jalloc_bytes(s.allocations)}'
        f',"origins":{_jorigins_state(s.origins)},"created":{_jstate_time(s.timestamp)}'
        f',"metadata":{_jmeta(s.metadata or None)},"peer_map":{{'
    )


class StatusKey(Struct, array_like=True, gc=False):
    """The fields of a stored pin that decide every peer's status for it but its own IPFS pins: the state store
    keeps them beside the pin (format 3, ``status_key``) as a short byte string that a merged listing uses as it
    is, as a dict key: pins with equal keys get the same statuses and peer_map text, so a listing decodes each
    distinct key once (a handful: replication 1 on 3 peers gives 3)."""

    type: int
    max_depth: int
    rf_min: int
    rf_max: int
    allocations: tuple[bytes, ...] = ()


_SKEY_ENC: Final = msgspec.msgpack.Encoder()
_SKEY_DEC: Final = msgspec.msgpack.Decoder(StatusKey)


def status_key(value: bytes) -> bytes | None:
    """The ``StatusKey`` bytes of a stored pin (~45 bytes at replication 1), from its leading fields; None for a
    value that is not a readable stored pin (a listing then decodes it, and fails as for any unreadable pin).
    A change to it needs a state format bump whose migration rewrites the stored keys."""
    try:
        s = decode_status_fields(value)
    except (PinclusterError, ValueError):
        return None
    return _SKEY_ENC.encode((s.type, s.max_depth, s.rf_min, s.rf_max, s.allocations))


def allocated_elsewhere(s: StatusFields | StoredPin | StatusKey, me: bytes) -> bool:
    """``Pin.is_remote_pin`` of a stored pin, for peer ``me`` (peer-ID bytes): not everywhere (rf -1/-1), and
    ``me`` not among its allocations."""
    return not (s.rf_min == -1 and s.rf_max == -1) and me not in s.allocations


def held_status_keys(page: Sequence[tuple[bytes, bytes]], me: bytes) -> list[tuple[bytes, bytes]]:
    """``(key, status key)`` of the stored pins of ``page`` that peer ``me`` (peer-ID bytes) holds: allocated to
    it or to every peer (rf -1/-1). What the state's allocations index gives, for a pinset read without one."""
    held = []
    for key, raw in page:
        s = decode_status_fields(raw)
        if not allocated_elsewhere(s, me):
            held.append((key, _SKEY_ENC.encode((s.type, s.max_depth, s.rf_min, s.rf_max, s.allocations))))
    return held


def decode_status_key(skey: bytes) -> StatusKey:
    """The ``StatusKey`` stored as ``skey`` (raises DecodeError when it is not one)."""
    try:
        return _SKEY_DEC.decode(skey)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise DecodeError(f"corrupt status key in the state store: {exc}") from None


def blank_head_json(c: bytes) -> str:
    """The start of a GlobalPinInfo line for a CID whose top-level PinInfo is not from the pinset (an unpin
    in progress): empty name, null lists, zero time."""
    return (
        f'{{"cid":"{cid_text(c)}","name":"","allocations":null,"origins":null,"created":{_ZERO_TIME_JSON}'
        ',"metadata":null,"peer_map":{'
    )


def status_entry_prefix(peer: PeerID, peername: str, ipfs_id: PeerID | None, addrs: tuple[Multiaddr, ...]) -> str:
    """A peer's ``peer_map`` entry up to ``"status":`` (constant for a peer during a listing)."""
    return f'"{_peer_text(peer)}":{{"peername":{_jstr(peername)}{_jipfs_text(ipfs_id, addrs)},"status":'


def status_entry_rest(status: TrackerStatus, time_text: str, error: str, attempts: int, priority: bool) -> str:
    """The rest of a ``peer_map`` entry after ``"status":`` (``time_text`` from ``format_time``)."""
    return (
        f'{_jstatus(status)},"timestamp":"{time_text}","error":{_jstr(error)}'
        f',"attempt_count":{attempts},"priority_pin":{"true" if priority else "false"}}}'
    )


# --- streams -------------------------------------------------------------------------------------------------
_MAX_VALUE_BYTES: Final = 64 * 1024 * 1024
_TRAILING_RE: Final = re.compile(r"trailing characters \(byte (\d+)\)")
_NON_SPACE_RE: Final = re.compile(rb"[^ \t\r\n]")
_MAX_LINE_CARRY: Final = 1024 * 1024


class _ValueSplitter:
    """Cuts a byte stream into JSON values: NDJSON, or values spread over lines (pretty-printed, like
    the ``state import`` sample), or several values on a line. msgspec does the parsing: the pending bytes
    are tried when a line could end a value; "truncated" means read on, "trailing characters" gives the cut.
    Cuts move an index over a memoryview, so a long line of many values is not copied once per value."""

    def __init__(self, typ: Any) -> None:
        self._dec = _json_decoder(typ)
        self._typ = typ
        self._buf = b""  # pending bytes: the start of a value not decoded yet
        self._carry = b""  # an incomplete line
        self._offset = 0  # stream position of _buf[0], for error messages

    def feed(self, chunk: bytes) -> list[Any]:
        out: list[Any] = []
        data = self._carry + chunk if self._carry else chunk
        lines = data.split(b"\n")
        self._carry = lines.pop()
        for line in lines:
            self._line(line + b"\n", out)
        if len(self._carry) > _MAX_LINE_CARRY:  # a very long line: parse what we have so far
            carry, self._carry = self._carry, b""
            self._line(carry, out)
        return out

    def finish(self) -> list[Any]:
        out: list[Any] = []
        if self._carry:
            carry, self._carry = self._carry, b""
            self._line(carry, out)
        if self._buf:
            self._try(out, final=True)
        return out

    def _line(self, line: bytes, out: list[Any]) -> None:
        if not self._buf and line[:1] == b"{" and line.endswith(b"}\n"):  # NDJSON: try the line on its own
            try:
                value = self._dec.decode(line)
            except (msgspec.DecodeError, InvalidInput):
                pass  # not one whole value (or a bad one): the general path below cuts or reports it
            else:
                out.append(value)
                self._offset += len(line)
                return
        self._buf = self._buf + line if self._buf else line
        if len(self._buf) > _MAX_VALUE_BYTES:
            raise DecodeError(f"JSON value at byte {self._offset} is larger than {_MAX_VALUE_BYTES} bytes")
        tail = line.rstrip()
        if not tail:
            if not self._buf.strip():
                self._offset += len(self._buf)
                self._buf = b""
            return
        if tail[-1:] in b'}]"el0123456789':  # a line that can end a JSON value
            self._try(out, final=False)

    def _try(self, out: list[Any], final: bool) -> None:
        buf = self._buf
        view = memoryview(buf)
        pos = 0
        try:
            while True:
                m = _NON_SPACE_RE.search(buf, pos)
                if m is None:
                    pos = len(buf)
                    return
                pos = m.start()
                try:
                    value = self._dec.fast(view[pos:])  # the rest may hold many values: no exact scan
                except msgspec.DecodeError as exc:
                    msg = str(exc)
                    is_validation = isinstance(exc, msgspec.ValidationError)
                    if "truncated" in msg and not final and not is_validation:
                        return
                    t = _TRAILING_RE.search(msg)
                    if t is None or is_validation:
                        raise self._error(exc, pos) from None
                    cut = pos + int(t.group(1)) - 1  # msgspec counts from 1
                    out.append(self._decode_part(view[pos:cut], pos))
                    pos = cut
                    continue
                except InvalidInput as exc:
                    raise self._error(exc, pos) from None
                if self._dec.needs_exact(view[pos:]):  # the rest is exactly this one value
                    value = self._decode_part(view[pos:], pos)
                out.append(value)
                pos = len(buf)
                return
        finally:
            with contextlib.suppress(BufferError):  # a slice still referenced (e.g. by a traceback)
                view.release()
            self._offset += pos
            self._buf = buf[pos:] if pos < len(buf) else b""

    def _decode_part(self, part: memoryview, pos: int) -> Any:
        try:
            return self._dec.decode(part)
        except (msgspec.DecodeError, InvalidInput) as exc:
            raise self._error(exc, pos) from None

    def _error(self, exc: Exception, pos: int) -> DecodeError:
        where = self._offset + pos
        return DecodeError(f"invalid {_type_name(self._typ)} in JSON stream (value starting at byte {where}): {exc}")


def iter_json_values(chunks: Iterable[bytes], typ: Any = Any) -> Iterator[Any]:
    """Yield the JSON values of a byte stream one after another, decoded as ``typ``.

    ``chunks`` is any iterable of bytes (a binary file, a list of chunks); values may be NDJSON, pretty
    printed over many lines, or concatenated. Memory is bounded by the largest single value.
    """
    splitter = _ValueSplitter(typ)
    for chunk in chunks:
        yield from splitter.feed(chunk)
    yield from splitter.finish()


async def aiter_json_values(chunks: AsyncIterable[bytes], typ: Any = Any) -> AsyncIterator[Any]:
    """The async form of :func:`iter_json_values` (e.g. over ``aiohttp`` response content)."""
    splitter = _ValueSplitter(typ)
    async for chunk in chunks:
        for value in splitter.feed(chunk):
            yield value
    for value in splitter.finish():
        yield value


def ndjson_lines(objs: Iterable[Any]) -> Iterator[bytes]:
    """One ``to_json(obj) + b"\\n"`` per object, as Go's ``json.Encoder`` writes a stream."""
    for obj in objs:
        yield to_json(obj) + b"\n"


async def ndjson_batches(objs: AsyncIterable[Any] | Iterable[Any], max_bytes: int = 64 * 1024) -> AsyncIterator[bytes]:
    """NDJSON lines joined into chunks of about ``max_bytes`` (one write per line is several times slower)."""
    batch: list[bytes] = []
    size = 0
    if isinstance(objs, AsyncIterable):
        async for obj in objs:
            line = to_json(obj) + b"\n"
            batch.append(line)
            size += len(line)
            if size >= max_bytes:
                yield b"".join(batch)
                batch, size = [], 0
    else:
        for obj in objs:
            line = to_json(obj) + b"\n"
            batch.append(line)
            size += len(line)
            if size >= max_bytes:
                yield b"".join(batch)
                batch, size = [], 0
    if batch:
        yield b"".join(batch)
