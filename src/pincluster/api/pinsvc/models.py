"""Wire shapes of the IPFS Pinning Service API (ipfs/pinning-services-api-spec v1.0.0, spec §10).

The structs here are exactly what goes over HTTP: text CIDs, multiaddrs and times, in the public spec's
field names. Requests are decoded into :class:`Pin` and then validated into typed values by
:func:`parse_pin`, so a bad field gets a 400 naming it instead of a half-built pin.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

import msgspec

from pincluster.errors import InvalidInput
from pincluster.types.cid import CID
from pincluster.types.gotime import ZERO_TIME, format_time, is_zero_time, unix_nano
from pincluster.types.multiaddr import Multiaddr
from pincluster.types.status import TrackerStatus

__all__ = [
    "INFO",
    "MAX_LIMIT",
    "MAX_NAME",
    "MAX_ORIGINS",
    "RELEVANT",
    "RELEVANT_INT",
    "Failure",
    "FailureError",
    "Match",
    "Pin",
    "PinList",
    "PinRequest",
    "PinStatus",
    "Status",
    "failure_body",
    "parse_pin",
    "svc_status",
    "wire_time",
]

#: Limits from the public spec: ``name`` maxLength, ``origins`` maxItems, ``limit`` maximum, ``meta`` keys.
MAX_NAME: Final = 255
MAX_ORIGINS: Final = 20
MAX_LIMIT: Final = 1000
MAX_META: Final = 1000

#: Go's ``PinStatus.info`` (request IDs are CIDs, so pinning the same CID twice is one request).
INFO: Final = {
    "source": "IPFS cluster API",
    "warning1": "CID used for requestID. Conflicts possible",
    "warning2": "experimental",
}


class Status(enum.Enum):
    """A pin request's status at the service."""

    QUEUED = "queued"
    PINNING = "pinning"
    PINNED = "pinned"
    FAILED = "failed"


class Match(enum.Enum):
    """How the ``name`` filter matches (``exact`` by default)."""

    EXACT = "exact"
    IEXACT = "iexact"
    PARTIAL = "partial"
    IPARTIAL = "ipartial"

    def matches(self, wanted: str, name: str) -> bool:
        if self in (Match.IEXACT, Match.IPARTIAL):
            wanted, name = wanted.casefold(), name.casefold()
        if self in (Match.EXACT, Match.IEXACT):
            return wanted == name
        return wanted in name


#: Tracker bits that decide the service status; anything else (remote, unpinned, unpinning…) does not.
ERROR_BITS: Final = TrackerStatus.ERROR | TrackerStatus.UNEXPECTEDLY_UNPINNED
RELEVANT: Final = ERROR_BITS | TrackerStatus.PIN_QUEUED | TrackerStatus.PINNING | TrackerStatus.PINNED


def svc_status(mask: TrackerStatus | int) -> Status | None:
    """The service status of a CID from the OR of its peers' tracker statuses (spec §10 mapping).

    Any error → failed; else any pin_queued → queued; else pinning; else pinned; else None (nothing is
    happening: the request does not exist, or is being removed). Unlike Go, an empty mask is None rather
    than ``failed``, and ``unexpectedly_unpinned`` (in the pinset, not in IPFS) is ``failed``, not hidden.
    """
    m = int(mask)
    if m & _ERROR:
        return Status.FAILED
    if m & _PIN_QUEUED:
        return Status.QUEUED
    if m & _PINNING:
        return Status.PINNING
    if m & _PINNED:
        return Status.PINNED
    return None


# plain ints: IntFlag's operators are slow, and listings map every status of the pinset
_ERROR: Final = int(ERROR_BITS)
_PIN_QUEUED: Final = int(TrackerStatus.PIN_QUEUED)
_PINNING: Final = int(TrackerStatus.PINNING)
_PINNED: Final = int(TrackerStatus.PINNED)
RELEVANT_INT: Final = int(RELEVANT)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def wire_time(t: datetime) -> datetime:
    """``t`` in UTC with microsecond precision: what the state keeps, so ``created`` reads the same from
    ``POST /pins`` and from every later ``GET`` (the public spec calls it immutable)."""
    if t is ZERO_TIME or is_zero_time(t):
        return ZERO_TIME
    return _EPOCH + timedelta(microseconds=unix_nano(t) // 1000)


class Pin(msgspec.Struct, frozen=True, omit_defaults=True):
    """``Pin``: the CID to pin recursively plus optional name, origins (provider hints) and meta."""

    cid: str
    name: str = ""
    origins: list[str] = []
    meta: dict[str, str] = {}


class PinStatus(msgspec.Struct, frozen=True):
    """``PinStatus``: a pin request and where it stands; ``requestid`` is the CID (as in Go)."""

    requestid: str
    status: str
    created: str
    pin: Pin
    delegates: list[str]
    info: dict[str, str]


class PinList(msgspec.Struct, frozen=True):
    """``PinResults``: how many requests match the filters, and the newest ``limit`` of them."""

    count: int
    results: list[PinStatus]


class FailureError(msgspec.Struct, frozen=True, omit_defaults=True):
    reason: str
    details: str = ""


class Failure(msgspec.Struct, frozen=True):
    """The public spec's error body: ``{"error": {"reason": CODE, "details": text}}``."""

    error: FailureError


_REASONS: Final = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "INSUFFICIENT_FUNDS",
    413: "REQUEST_TOO_LARGE",
    503: "SERVICE_UNAVAILABLE",
    504: "GATEWAY_TIMEOUT",
}


def failure_body(status: int, message: str) -> bytes:
    """An error body for ``status``: a machine-readable ``reason`` (the public spec's codes) and the
    human-readable text in ``details`` (Go puts the text in ``reason``)."""
    reason = _REASONS.get(status, "INTERNAL_SERVER_ERROR" if status >= 500 else f"HTTP_{status}")
    return msgspec.json.encode(Failure(error=FailureError(reason=reason, details=message))) + b"\n"


@dataclass(frozen=True)
class PinRequest:
    """A validated ``Pin`` from a request body."""

    cid: CID
    name: str
    origins: tuple[Multiaddr, ...]
    meta: dict[str, str]

    def to_wire(self) -> Pin:
        return Pin(cid=str(self.cid), name=self.name, origins=[str(o) for o in self.origins], meta=dict(self.meta))


def parse_pin(raw: bytes) -> PinRequest:
    """Decode and validate a ``Pin`` body; InvalidInput names the offending field."""
    try:
        body = msgspec.json.decode(raw, type=Pin)
    except msgspec.ValidationError as exc:
        raise InvalidInput(f"error decoding request body: {exc} (expected a Pin object with a cid)") from None
    except msgspec.DecodeError as exc:
        raise InvalidInput(f"error decoding request body: {exc}") from None
    if not body.cid:
        raise InvalidInput("error decoding request body: `cid` is required")
    cid = CID.decode(body.cid)
    if len(body.name) > MAX_NAME:
        raise InvalidInput(f"`name` is {len(body.name)} characters long; at most {MAX_NAME} are allowed")
    if len(body.origins) > MAX_ORIGINS:
        raise InvalidInput(f"`origins` has {len(body.origins)} addresses; at most {MAX_ORIGINS} are allowed")
    origins: list[Multiaddr] = []
    for text in body.origins:
        ma = Multiaddr(text)
        if ma not in origins:
            origins.append(ma)
    if len(body.meta) > MAX_META:
        raise InvalidInput(f"`meta` has {len(body.meta)} keys; at most {MAX_META} are allowed")
    return PinRequest(cid=cid, name=body.name, origins=tuple(origins), meta=dict(body.meta))


def created_text(t: datetime) -> str:
    return format_time(wire_time(t))
