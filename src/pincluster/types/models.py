"""The cluster's data model: pins, pin options, statuses, peer identities, metrics (spec §2, §3).

Every object is an immutable ``msgspec.Struct`` holding typed values (``CID``, ``PeerID``, ``Multiaddr``,
tz-aware ``datetime``; Go's zero time :data:`~pincluster.types.gotime.ZERO_TIME` means "unset"); text appears
only at the edges, through :mod:`pincluster.types.codec`. Field order is Go's struct order, because that is
the order Go writes JSON in and clients diff outputs byte for byte.

``None`` versus empty is kept where Go distinguishes ``null`` from ``[]``/``{}`` (e.g. ``user_allocations``,
``origins``, ``metadata``). Dict fields are plain dicts inside frozen structs: treat them as read-only.

Where a field is written only when set (``omitempty`` in Go), the struct uses ``omit_defaults=True``, and the
fields Go always writes get a ``default_factory`` (msgspec never omits those), so one struct serves both the
Go shape and lenient decoding (missing fields take Go's zero values).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Annotated, Any, Final

import msgspec
from msgspec import Struct, field
from msgspec.structs import force_setattr

from pincluster.errors import InvalidInput
from pincluster.types.cid import CID
from pincluster.types.gotime import (
    ZERO_TIME,
    InvalidDuration,
    InvalidTime,
    format_time,
    go_now,
    is_zero_time,
    parse_duration_ns,
    parse_time,
    unix_nano,
)
from pincluster.types.multiaddr import Multiaddr
from pincluster.types.peer import PeerID
from pincluster.types.status import IPFSPinStatus, PinMode, PinType, TrackerStatus

__all__ = [
    "ID",
    "IPFSID",
    "MAX_DEPTH_FROM_MODE",
    "RPC_PROTOCOL_VERSION",
    "VERSION",
    "AddedOutput",
    "Alert",
    "Bandwidth",
    "ConnectGraph",
    "Error",
    "GlobalPinInfo",
    "GlobalRepoGC",
    "IPFSPinInfo",
    "IPFSRepoGC",
    "IPFSRepoStat",
    "InvalidReplication",
    "Metric",
    "Pin",
    "PinInfo",
    "PinInfoShort",
    "PinOptions",
    "PingValue",
    "RepoGC",
    "Time",
    "Version",
    "resolve_replication",
    "validate_replication",
]

#: The IPFS Cluster release whose API this implements.
VERSION: Final = "1.1.6"
#: The libp2p protocol of cluster RPC, as reported in ``ID.rpc_protocol_version``.
RPC_PROTOCOL_VERSION: Final = "/ipfscluster/1.0/rpc"

#: Default of ``Pin.max_depth`` meaning "derive it from ``mode``" (never stored or sent).
MAX_DEPTH_FROM_MODE: Final = -(2**62)
_RECURSIVE: Final = PinMode.RECURSIVE
_DIRECT: Final = PinMode.DIRECT


#: A tz-aware ``datetime`` (decoding refuses times without a timezone, as Go does).
Time = Annotated[datetime, msgspec.Meta(tz=True)]


def _none() -> None:
    """Default factory for fields Go always writes even when null (msgspec never omits factory defaults)."""
    return None


# --- replication factors (§3.5) -----------------------------------------------------------------------------
class InvalidReplication(InvalidInput):
    """Replication factors that break the rules of spec §3.5; the message is Go's."""


def validate_replication(rmin: int, rmax: int) -> None:
    """Check factors after defaults were applied: neither 0, min ≤ max, both ≥ -1, -1 on both or none.

    Raises :class:`InvalidReplication` with Go's text (checks in Go's order, so the same input gives the same
    message).
    """
    if rmin == 0 or rmax == 0:
        raise InvalidReplication("cluster.replication_factor_min and max must be set")
    if rmin > rmax:
        raise InvalidReplication("cluster.replication_factor_min is larger than max")
    if rmin < -1:
        raise InvalidReplication("cluster.replication_factor_min is wrong")
    if rmax < -1:
        raise InvalidReplication("cluster.replication_factor_max is wrong")
    if (rmin == -1) != (rmax == -1):
        raise InvalidReplication("cluster.replication_factor_min and max must be -1 when one of them is")


def resolve_replication(rmin: int, rmax: int, default_min: int, default_max: int) -> tuple[int, int]:
    """A pin's factors with 0 replaced by the cluster defaults, then validated (Go's
    ``setupReplicationFactor``)."""
    rmin = rmin or default_min
    rmax = rmax or default_max
    validate_replication(rmin, rmax)
    return rmin, rmax


# --- pin options and pins (§2.3, §2.4, §1.9a) ----------------------------------------------------------------
class PinOptions(Struct, frozen=True, gc=False, kw_only=True):
    """What a user asks for when pinning (query parameters, ctl flags); embedded first in :class:`Pin`."""

    replication_factor_min: int = 0
    replication_factor_max: int = 0
    name: str = ""
    mode: PinMode = PinMode.RECURSIVE
    shard_size: int = 0
    user_allocations: tuple[PeerID, ...] | None = None
    expire_at: Time = ZERO_TIME
    metadata: dict[str, str] | None = None
    pin_update: CID | None = None
    origins: tuple[Multiaddr, ...] | None = None

    @classmethod
    def from_query(cls, query: Mapping[str, str], now: datetime | None = None) -> PinOptions:
        """Parse REST query parameters as Go's ``PinOptions.FromQuery`` (spec §1.9a).

        ``query`` maps a name to its first value (a ``dict``, or aiohttp's ``MultiDictProxy``). ``now`` is the
        clock for ``expire-in`` (default: the current time). Raises :class:`InvalidInput` with Go's texts.
        """

        def get(key: str) -> str:
            return query.get(key) or ""

        replication = get("replication")
        rmin = _int_param(replication or get("replication-min"), "replication-min")
        rmax = _int_param(replication or get("replication-max"), "replication-max")
        shard_size = 0
        if v := get("shard-size"):
            if not v.isascii() or not v.isdigit() or int(v) >= 1 << 64:
                raise InvalidInput("parameter shard_size is invalid")
            shard_size = int(v)
        user_allocations: tuple[PeerID, ...] | None = None
        if v := get("user-allocations"):
            user_allocations = tuple(_peers_lenient(v.split(",")))
        expire_at: Time = ZERO_TIME
        if v := get("expire-at"):
            try:
                expire_at = parse_time(v)
            except InvalidTime as exc:
                raise InvalidInput(f"expire-at cannot be parsed: {exc}") from None
        elif v := get("expire-in"):
            try:
                ns = parse_duration_ns(v)
            except InvalidDuration as exc:
                raise InvalidInput(f"expire-in cannot be parsed: {exc}") from None
            if ns < 1_000_000_000:
                raise InvalidInput("expire-in duration too short")
            base = now if now is not None else go_now()
            expire_at = base + timedelta(microseconds=ns // 1000)
        metadata = {k[5:]: (query.get(k) or "") for k in query if k.startswith("meta-") and len(k) > 5}
        pin_update: CID | None = None
        if v := get("pin-update"):
            try:
                pin_update = CID.decode(v)
            except InvalidInput as exc:
                raise InvalidInput(f"error decoding update option parameter: {exc}") from None
        origins: tuple[Multiaddr, ...] | None = None
        if v := get("origins"):
            parsed = []
            for text in v.split(","):
                try:
                    ma = Multiaddr(text)
                except InvalidInput as exc:
                    raise InvalidInput(f"error decoding multiaddress: {exc}") from None
                if ma.peer_id is None:
                    raise InvalidInput(f"multiaddress does not contain peer ID: {text!r} has no /p2p/ part")
                parsed.append(ma)
            origins = tuple(parsed)
        return cls(
            replication_factor_min=rmin,
            replication_factor_max=rmax,
            name=get("name"),
            mode=PinMode.from_string(get("mode")),
            shard_size=shard_size,
            user_allocations=user_allocations,
            expire_at=expire_at,
            metadata=metadata,
            pin_update=pin_update,
            origins=origins,
        )

    def to_query(self) -> str:
        """The query string the Go client sends (``ToQuery``): keys sorted, ``+`` for spaces."""
        q: dict[str, str] = {
            "replication-min": str(self.replication_factor_min),
            "replication-max": str(self.replication_factor_max),
            "name": self.name,
            "mode": self.mode.value,
            "shard-size": str(self.shard_size),
            "user-allocations": ",".join(str(p) for p in self.user_allocations or ()),
        }
        if not is_zero_time(self.expire_at):
            q["expire-at"] = format_time(self.expire_at)
        for k, v in (self.metadata or {}).items():
            if k:
                q["meta-" + k] = v
        if self.pin_update is not None:
            q["pin-update"] = str(self.pin_update)
        if self.origins:
            q["origins"] = ",".join(str(o) for o in self.origins)
        return urllib.parse.urlencode(sorted(q.items()))


_INT_RE = re.compile(r"[+-]?[0-9]+")


def _int_param(value: str, name: str) -> int:
    """Go's ``parseIntParam``: empty → 0 (use the default), else a base-10 integer."""
    if not value:
        return 0
    if _INT_RE.fullmatch(value) is None or not -(1 << 63) <= int(value) < 1 << 63:
        raise InvalidInput(f"parameter {name} invalid")
    return int(value)


def _peers_lenient(texts: Iterable[str]) -> list[PeerID]:
    """Go's ``StringsToPeers``: entries that do not decode are dropped (with no error)."""
    out = []
    for t in texts:
        try:
            out.append(PeerID.decode(t))
        except InvalidInput:
            continue
    return out


def _option_fields(obj: PinOptions | Pin) -> dict[str, Any]:
    """The PinOptions fields of a PinOptions or of a Pin (which embeds them first, as Go does)."""
    return {f: getattr(obj, f) for f in PinOptions.__struct_fields__}


class Pin(Struct, frozen=True, gc=False, kw_only=True):
    """A CID in the shared pinset, with its options, allocations and type (Go embeds PinOptions first).

    ``mode`` always agrees with ``max_depth`` (-1 recursive, 0 direct, >0 recursive with a depth): when
    ``max_depth`` is not given it is taken from ``mode``; when it is given, ``mode`` is derived from it, as
    Go does for stored pins. This also makes a bare ``{"cid": …}`` (as in the ``state import`` sample) a
    recursive pin instead of Go's accidental direct pin of "bad type" (spec §11.2).
    """

    # PinOptions (Go embeds them first)
    replication_factor_min: int = 0
    replication_factor_max: int = 0
    name: str = ""
    mode: PinMode = PinMode.RECURSIVE
    shard_size: int = 0
    user_allocations: tuple[PeerID, ...] | None = None
    expire_at: Time = ZERO_TIME
    metadata: dict[str, str] | None = None
    pin_update: CID | None = None
    origins: tuple[Multiaddr, ...] | None = None
    # Pin
    cid: CID
    type: PinType = PinType.DATA
    allocations: tuple[PeerID, ...] = ()
    max_depth: int = MAX_DEPTH_FROM_MODE
    reference: CID | None = None
    timestamp: Time = ZERO_TIME

    def __post_init__(self) -> None:
        depth = self.max_depth
        if depth == -1:
            if self.mode is not _RECURSIVE:
                force_setattr(self, "mode", _RECURSIVE)
        elif depth == MAX_DEPTH_FROM_MODE:
            force_setattr(self, "max_depth", self.mode.to_max_depth())
        elif (depth == 0) != (self.mode is _DIRECT):
            force_setattr(self, "mode", PinMode.from_max_depth(depth))

    @classmethod
    def with_options(
        cls,
        cid: CID,
        options: PinOptions,
        *,
        type: PinType = PinType.DATA,
        allocations: Iterable[PeerID] = (),
        reference: CID | None = None,
        timestamp: datetime | None = None,
    ) -> Pin:
        """Go's ``PinWithOpts``: a pin of ``cid`` with ``options`` (max_depth from the mode), stamped now."""
        return cls(
            **_option_fields(options),
            cid=cid,
            type=type,
            allocations=tuple(allocations),
            max_depth=options.mode.to_max_depth(),
            reference=reference,
            timestamp=timestamp if timestamp is not None else go_now(),
        )

    @property
    def options(self) -> PinOptions:
        """The PinOptions part of this pin."""
        return PinOptions(**_option_fields(self))

    def replace(self, **changes: Any) -> Pin:
        """A copy with some fields changed (``max_depth``/``mode`` are kept consistent)."""
        if "mode" in changes and "max_depth" not in changes:
            changes["max_depth"] = MAX_DEPTH_FROM_MODE
        return msgspec.structs.replace(self, **changes)

    def with_replication_defaults(self, default_min: int, default_max: int) -> Pin:
        """Apply the cluster defaults to factors left at 0 and validate them (raises InvalidReplication).
        A pin-everywhere pin (-1/-1) gets its allocations cleared, as in Go."""
        rmin, rmax = resolve_replication(
            self.replication_factor_min, self.replication_factor_max, default_min, default_max
        )
        allocations = () if rmin == -1 else self.allocations
        if (rmin, rmax, allocations) == (
            self.replication_factor_min,
            self.replication_factor_max,
            self.allocations,
        ):
            return self
        return msgspec.structs.replace(
            self, replication_factor_min=rmin, replication_factor_max=rmax, allocations=allocations
        )

    @property
    def is_pin_everywhere(self) -> bool:
        return self.replication_factor_min == -1 and self.replication_factor_max == -1

    def is_remote_pin(self, peer: PeerID) -> bool:
        """Whether ``peer`` should not hold this pin (not everywhere, and not among the allocations)."""
        return not self.is_pin_everywhere and peer not in self.allocations

    def expired_at(self, t: datetime) -> bool:
        """Whether the pin's expiry is set and before ``t``."""
        if is_zero_time(self.expire_at) or unix_nano(self.expire_at) == 0:
            return False
        return self.expire_at < t


# --- statuses (§2.5) ----------------------------------------------------------------------------------------
class PinInfoShort(Struct, frozen=True, gc=False, kw_only=True):
    """The status of a CID on one peer, as in ``GlobalPinInfo.peer_map``.

    In JSON, ``ipfs_peer_id`` is left out when None and ``ipfs_peer_addresses`` when empty (see codec).
    """

    peername: str = ""
    ipfs_peer_id: PeerID | None = None
    ipfs_peer_addresses: tuple[Multiaddr, ...] = ()
    status: TrackerStatus = TrackerStatus.UNDEFINED
    timestamp: Time = ZERO_TIME
    error: str = ""
    attempt_count: int = 0
    priority_pin: bool = False


class PinInfo(Struct, frozen=True, gc=False, kw_only=True):
    """A CID's status on one peer with the pin's details (RPC and pin trackers; REST shows GlobalPinInfo)."""

    cid: CID
    name: str = ""
    peer: PeerID
    allocations: tuple[PeerID, ...] | None = None
    origins: tuple[Multiaddr, ...] | None = None
    created: Time = ZERO_TIME
    metadata: dict[str, str] | None = None
    # PinInfoShort, inline
    peername: str = ""
    ipfs_peer_id: PeerID | None = None
    ipfs_peer_addresses: tuple[Multiaddr, ...] = ()
    status: TrackerStatus = TrackerStatus.UNDEFINED
    timestamp: Time = ZERO_TIME
    error: str = ""
    attempt_count: int = 0
    priority_pin: bool = False

    @property
    def short(self) -> PinInfoShort:
        """The per-peer part (what goes into ``peer_map``)."""
        return PinInfoShort(
            peername=self.peername,
            ipfs_peer_id=self.ipfs_peer_id,
            ipfs_peer_addresses=self.ipfs_peer_addresses,
            status=self.status,
            timestamp=self.timestamp,
            error=self.error,
            attempt_count=self.attempt_count,
            priority_pin=self.priority_pin,
        )

    def to_global(self) -> GlobalPinInfo:
        """A GlobalPinInfo with just this peer."""
        return GlobalPinInfo.from_pin_infos((self,))


class GlobalPinInfo(Struct, frozen=True, gc=False, kw_only=True):
    """A CID's status on every peer (all ``/pins*`` responses)."""

    cid: CID
    name: str = ""
    allocations: tuple[PeerID, ...] | None = None
    origins: tuple[Multiaddr, ...] | None = None
    created: Time = ZERO_TIME
    metadata: dict[str, str] | None = None
    peer_map: dict[PeerID, PinInfoShort] = {}

    @staticmethod
    def _takes_over(info: PinInfo) -> bool:
        """Go's merge rule: a PinInfo sets the top-level fields unless its status matches cluster_error
        (``Match`` is also true for the undefined status 0)."""
        return not info.status.match(TrackerStatus.CLUSTER_ERROR)

    def add(self, info: PinInfo) -> GlobalPinInfo:
        """Go's ``GlobalPinInfo.Add``, returning a new object: ``peer_map[info.peer] = info.short``; the
        top-level fields come from ``info`` unless its status is cluster_error."""
        peer_map = dict(self.peer_map)
        peer_map[info.peer] = info.short
        if self._takes_over(info):
            return GlobalPinInfo._from_top(info, peer_map)
        return msgspec.structs.replace(self, peer_map=peer_map)

    @classmethod
    def _from_top(cls, top: PinInfo, peer_map: dict[PeerID, PinInfoShort]) -> GlobalPinInfo:
        """The top-level fields come from one PinInfo (Go's merge rule picks which)."""
        return cls(
            cid=top.cid,
            name=top.name,
            allocations=top.allocations,
            origins=top.origins,
            created=top.created,
            metadata=top.metadata,
            peer_map=peer_map,
        )

    @classmethod
    def from_pin_infos(cls, infos: Iterable[PinInfo]) -> GlobalPinInfo:
        """Merge PinInfos from several peers (Go: ``Add`` in turn, starting from an empty object).

        Raises InvalidInput when ``infos`` is empty (a GlobalPinInfo needs a CID).
        """
        top: PinInfo | None = None
        peer_map: dict[PeerID, PinInfoShort] = {}
        for info in infos:
            if top is None or cls._takes_over(info):
                top = info
            peer_map[info.peer] = info.short
        if top is None:
            raise InvalidInput("GlobalPinInfo needs at least one PinInfo")
        return cls._from_top(top, peer_map)

    def match(self, flt: TrackerStatus | int) -> bool:
        """Whether any peer's status matches the filter (Go's ``GlobalPinInfo.Match``)."""
        return any(s.status.match(flt) for s in self.peer_map.values())


# --- peers and versions (§2.1, §2.2) ------------------------------------------------------------------------
class IPFSID(Struct, frozen=True, gc=False, kw_only=True, omit_defaults=True):
    """The IPFS daemon behind a cluster peer: ``id`` is left out when unknown (e.g. the daemon is down)."""

    id: PeerID | None = None
    addresses: tuple[Multiaddr, ...] | None = field(default_factory=_none)
    error: str = field(default_factory=str)


class ID(Struct, frozen=True, gc=False, kw_only=True):
    """A cluster peer's identity and view (``GET /id``, ``/peers`` items)."""

    id: PeerID
    addresses: tuple[Multiaddr, ...] | None = None
    cluster_peers: tuple[PeerID, ...] | None = None
    cluster_peers_addresses: tuple[Multiaddr, ...] | None = None
    version: str = ""
    commit: str = ""
    rpc_protocol_version: str = ""
    error: str = ""
    ipfs: IPFSID = field(default_factory=IPFSID)
    peername: str = ""


class Version(Struct, frozen=True, gc=False, kw_only=True):
    """``GET /version``."""

    version: str = ""


# --- add (§2.6) ---------------------------------------------------------------------------------------------
class AddedOutput(Struct, frozen=True, gc=False, kw_only=True, omit_defaults=True):
    """One event of ``/add``: a written node, or progress (``cid`` None, ``bytes`` set)."""

    name: str = field(default_factory=str)
    cid: CID | None = field(default_factory=_none)
    bytes: int = 0
    size: int = 0
    allocations: tuple[PeerID, ...] = ()


# --- metrics and alerts (§2.7, §2.8) ------------------------------------------------------------------------
class Metric(Struct, frozen=True, gc=False, kw_only=True):
    """A value a peer reports about itself, valid until ``expire`` (Unix ns)."""

    name: str = ""
    peer: PeerID | None = None
    value: str = ""
    expire: int = 0
    valid: bool = False
    weight: int = 0
    partitionable: bool = False
    received_at: int = 0

    def with_ttl(self, ttl: timedelta | int, now_ns: int) -> Metric:
        """Go's ``SetTTL`` with an injected clock: expire ``ttl`` (timedelta or ns) after ``now_ns``."""
        ttl_ns = (
            ttl if isinstance(ttl, int) else (((ttl.days * 86400 + ttl.seconds) * 1_000_000 + ttl.microseconds) * 1000)
        )
        return msgspec.structs.replace(self, expire=now_ns + ttl_ns)

    def ttl_ns(self, now_ns: int) -> int:
        """Nanoseconds left before expiry (0 when expired)."""
        return max(0, self.expire - now_ns)

    def expired(self, now_ns: int) -> bool:
        return now_ns > self.expire

    def discard(self, now_ns: int) -> bool:
        """Whether the allocator should ignore it: invalid or expired."""
        return not self.valid or self.expired(now_ns)

    @property
    def defined(self) -> bool:
        return self.name != ""


class Alert(Struct, frozen=True, gc=False, kw_only=True):
    """A metric that expired (the last one seen for that peer and name) and when that was noticed."""

    name: str = ""
    peer: PeerID | None = None
    value: str = ""
    expire: int = 0
    valid: bool = False
    weight: int = 0
    partitionable: bool = False
    received_at: int = 0
    triggered_at: Time = ZERO_TIME

    @classmethod
    def from_metric(cls, metric: Metric, triggered_at: datetime) -> Alert:
        return cls(**msgspec.structs.asdict(metric), triggered_at=triggered_at)

    @property
    def metric(self) -> Metric:
        d = msgspec.structs.asdict(self)
        del d["triggered_at"]
        return Metric(**d)


class Bandwidth(Struct, frozen=True, gc=False, kw_only=True):
    """What one protocol moved: bytes in and out since start, and their rates in bytes per second
    (``GET /health/bandwidth`` maps protocol names to these)."""

    total_in: int = 0
    total_out: int = 0
    rate_in: float = 0.0
    rate_out: float = 0.0


class PingValue(Struct, frozen=True, gc=False, kw_only=True, omit_defaults=True):
    """The JSON inside a ``ping`` metric's ``value``; each field is left out when empty."""

    peer_name: str = ""
    ipfs_id: PeerID | None = None
    ipfs_addresses: tuple[Multiaddr, ...] = ()


# --- graph, GC, errors, IPFS-facing shapes (§2.9–2.13) -------------------------------------------------------
class ConnectGraph(Struct, frozen=True, gc=False, kw_only=True):
    """Who is connected to whom, in the cluster and among the IPFS daemons (``GET /health/graph``)."""

    cluster_id: PeerID
    id_to_peername: dict[PeerID, str] | None = None
    ipfs_links: dict[PeerID, tuple[PeerID, ...]] | None = None
    cluster_links: dict[PeerID, tuple[PeerID, ...]] | None = None
    cluster_trust_links: dict[PeerID, bool] | None = None
    cluster_to_ipfs: dict[PeerID, PeerID] | None = None


class IPFSRepoGC(Struct, frozen=True, gc=False, kw_only=True, omit_defaults=True):
    """One key removed by IPFS ``repo/gc`` (or an error)."""

    key: CID | None = field(default_factory=_none)
    error: str = ""


class RepoGC(Struct, frozen=True, gc=False, kw_only=True, omit_defaults=True):
    """The keys one peer's IPFS daemon collected."""

    peer: PeerID | None = field(default_factory=_none)
    peername: str = field(default_factory=str)
    keys: tuple[IPFSRepoGC, ...] | None = field(default_factory=_none)
    error: str = ""


class GlobalRepoGC(Struct, frozen=True, gc=False, kw_only=True):
    """``repo/gc`` results of every peer."""

    peer_map: dict[PeerID, RepoGC] | None = None


class Error(Struct, frozen=True, gc=False, kw_only=True):
    """An API error body; ``code`` 0 is what Go clients synthesise for transport failures."""

    code: int = 0
    message: str = ""

    def __str__(self) -> str:
        return f"{self.message} ({self.code})"


class IPFSPinInfo(Struct, frozen=True, gc=False, kw_only=True):
    """One entry of kubo's ``pin/ls`` stream: JSON ``{"Cid": …, "Type": …}`` (see codec for ``Type``)."""

    cid: CID
    type: IPFSPinStatus = IPFSPinStatus.BUG


class IPFSRepoStat(Struct, frozen=True, gc=False, kw_only=True, rename="pascal"):
    """kubo's ``repo/stat`` subset: JSON ``{"RepoSize": …, "StorageMax": …}``."""

    repo_size: int = 0
    storage_max: int = 0
