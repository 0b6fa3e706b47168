"""Enumerations of the data model: tracker status, IPFS pin status, pin type and pin mode (spec §3.1–3.4).

Their JSON forms are names, not numbers; the bit values of :class:`TrackerStatus` and :class:`PinType` exist so
that filters compose with ``|`` and match with ``&`` exactly as in IPFS Cluster.
"""

from __future__ import annotations

import enum
import logging

from pincluster.errors import InvalidInput

__all__ = [
    "IPFSPinStatus",
    "InvalidFilter",
    "PinMode",
    "PinType",
    "TrackerStatus",
    "kubo_pin_args",
]

log = logging.getLogger("pincluster.types")


class InvalidFilter(InvalidInput):
    """A status or type filter with no known name in it."""


class TrackerStatus(enum.IntFlag):
    """The status of a pin on one peer (a bit set, so that several statuses form a filter)."""

    UNDEFINED = 0
    CLUSTER_ERROR = 1 << 1
    PIN_ERROR = 1 << 2
    UNPIN_ERROR = 1 << 3
    PINNED = 1 << 4
    PINNING = 1 << 5
    UNPINNING = 1 << 6
    UNPINNED = 1 << 7
    REMOTE = 1 << 8
    PIN_QUEUED = 1 << 9
    UNPIN_QUEUED = 1 << 10
    SHARDED = 1 << 11
    UNEXPECTEDLY_UNPINNED = 1 << 12
    ERROR = CLUSTER_ERROR | PIN_ERROR | UNPIN_ERROR
    QUEUED = PIN_QUEUED | UNPIN_QUEUED

    @property
    def json_name(self) -> str:
        """The JSON/REST name (``pinned``, ``pin_queued``, ``error``…).

        A combination with no name of its own gives its names sorted and joined by commas, using ``error``
        and ``queued`` when all their bits are set. Go also lists a composite when only some of its bits are
        set, which reads back as more bits than were written (QUIRK, not copied): here the text always
        parses back to the same value.
        """
        name = _STATUS_NAMES.get(int(self))
        if name is not None:
            return name
        parts = []
        rest = int(self)
        for composite in (TrackerStatus.ERROR, TrackerStatus.QUEUED):
            if rest & composite == composite:
                parts.append(_STATUS_NAMES[composite])
                rest &= ~composite
        parts += [n for v, n in _STATUS_NAMES.items() if v and v.bit_count() == 1 and rest & v]
        return ",".join(sorted(parts))

    @property
    def text_name(self) -> str:
        """The name as ``ipfs-cluster-ctl`` prints it in text output (upper case: ``PINNED``)."""
        return self.json_name.upper()

    @classmethod
    def from_string(cls, text: str) -> TrackerStatus:
        """Go's ``TrackerStatusFromString``: strip spaces, split on ``,``, OR the known names, ignore others."""
        value = 0
        for part in text.replace(" ", "").split(","):
            value |= _STATUS_VALUES.get(part, 0)
        return cls(value)

    @classmethod
    def from_filter_string(cls, text: str) -> TrackerStatus:
        """Parse a ``filter`` parameter; empty means "all" (0). Raises ``invalid filter value`` when a
        non-empty filter names no known status."""
        value = cls.from_string(text)
        if value == 0 and text.strip() != "":
            raise InvalidFilter(
                f"invalid filter value {text!r}: use one or more of {', '.join(filter_names())}, comma-separated"
            )
        return value

    def match(self, flt: TrackerStatus | int) -> bool:
        """Go's ``Match``: true when the filter is 0 (all), this status is 0, or they share a bit."""
        return flt == 0 or self == 0 or (int(self) & int(flt)) != 0


_STATUS_NAMES: dict[int, str] = {int(m): name.lower() for name, m in TrackerStatus.__members__.items()}
_STATUS_VALUES: dict[str, int] = {n: v for v, n in _STATUS_NAMES.items()}

#: Error text attached to ``unexpectedly_unpinned`` statuses.
UNEXPECTEDLY_UNPINNED_ERROR = "the item should be pinned but it is not"


def filter_names() -> list[str]:
    """The filter names as ``ipfs-cluster-ctl status --help`` lists them (sorted, ``undefined`` left out)."""
    return sorted(n for n in _STATUS_VALUES if n != "undefined")


class IPFSPinStatus(enum.Enum):
    """The status of a CID in the IPFS daemon, as ``pin/ls`` reports it (spec §3.2)."""

    BUG = "bug"
    ERROR = "error"
    DIRECT = "direct"
    RECURSIVE = "recursive"
    INDIRECT = "indirect"
    UNPINNED = "unpinned"

    @classmethod
    def from_string(cls, text: str) -> IPFSPinStatus:
        """kubo's ``Type`` text: ``direct``, ``recursive``, ``indirect through <cid>`` (prefix), else BUG."""
        if text.startswith("indirect"):
            return cls.INDIRECT
        if text.startswith("recursive"):
            return cls.RECURSIVE
        if text == "direct":
            return cls.DIRECT
        return cls.BUG

    @property
    def json_name(self) -> str:
        """The ``Type`` of an ``IPFSPinInfo``: ``direct``/``recursive``/``indirect``, otherwise empty."""
        if self in (IPFSPinStatus.DIRECT, IPFSPinStatus.RECURSIVE, IPFSPinStatus.INDIRECT):
            return str(self.value)
        return ""

    def to_tracker_status(self) -> TrackerStatus:
        """direct/recursive → pinned; indirect, unpinned → unpinned; error → cluster_error; bug → undefined."""
        return _IPFS_TO_TRACKER[self]

    def is_pinned(self, max_depth: int) -> bool:
        """Whether IPFS holds the pin as a pin with this ``max_depth`` requires (<0 and >0: recursive;
        0: direct)."""
        if max_depth == 0:
            return self is IPFSPinStatus.DIRECT
        return self is IPFSPinStatus.RECURSIVE


_IPFS_TO_TRACKER: dict[IPFSPinStatus, TrackerStatus] = {
    IPFSPinStatus.BUG: TrackerStatus.UNDEFINED,
    IPFSPinStatus.ERROR: TrackerStatus.CLUSTER_ERROR,
    IPFSPinStatus.DIRECT: TrackerStatus.PINNED,
    IPFSPinStatus.RECURSIVE: TrackerStatus.PINNED,
    IPFSPinStatus.INDIRECT: TrackerStatus.UNPINNED,
    IPFSPinStatus.UNPINNED: TrackerStatus.UNPINNED,
}


class PinType(enum.Enum):
    """What a pin is for (spec §3.3). The value is the JSON name; ``bits`` is Go's value for filtering."""

    BAD = "bad-type"
    DATA = "pin"
    META = "meta-pin"
    CLUSTER_DAG = "clusterdag-pin"
    SHARD = "shard-pin"
    ALL = "all"

    @property
    def bits(self) -> int:
        return _PIN_TYPE_BITS[self]

    @classmethod
    def from_filter_string(cls, text: str) -> PinType:
        """``pin``, ``meta-pin``, ``clusterdag-pin``, ``shard-pin``, ``all`` or empty (= all); else BAD."""
        if text == "":
            return cls.ALL
        try:
            return cls(text)
        except ValueError:
            return cls.BAD

    def match(self, flt: PinType) -> bool:
        """Whether a pin of this type passes the filter ``flt`` (Go: ``type & filter != 0``)."""
        return (self.bits & flt.bits) != 0


_PIN_TYPE_BITS: dict[PinType, int] = {
    PinType.BAD: 1,
    PinType.DATA: 2,
    PinType.META: 4,
    PinType.CLUSTER_DAG: 8,
    PinType.SHARD: 16,
    PinType.ALL: 2 | 4 | 8 | 16,
}


class PinMode(enum.Enum):
    """How IPFS pins the CID: ``recursive`` (the whole DAG) or ``direct`` (the block only)."""

    RECURSIVE = "recursive"
    DIRECT = "direct"

    @classmethod
    def from_string(cls, text: str) -> PinMode:
        """Go's ``PinModeFromString``: ``direct`` → direct; ``recursive`` or empty → recursive; anything else
        → recursive with a warning (not an error, as in Go)."""
        if text == "direct":
            return cls.DIRECT
        if text not in ("recursive", ""):
            log.warning("unknown pin mode %r, using recursive", text)
        return cls.RECURSIVE

    def to_max_depth(self) -> int:
        """recursive → -1, direct → 0."""
        return 0 if self is PinMode.DIRECT else -1

    @classmethod
    def from_max_depth(cls, max_depth: int) -> PinMode:
        """How a stored pin's mode is derived: 0 → direct, anything else (-1, shards' 1) → recursive."""
        return cls.DIRECT if max_depth == 0 else cls.RECURSIVE


def kubo_pin_args(max_depth: int) -> tuple[tuple[str, str], ...]:
    """Query arguments for kubo's ``pin/add`` by ``max_depth``: <0 recursive; 0 not recursive; >0 recursive to
    that depth."""
    if max_depth < 0:
        return (("recursive", "true"),)
    if max_depth == 0:
        return (("recursive", "false"),)
    return (("recursive", "true"), ("max-depth", str(max_depth)))
