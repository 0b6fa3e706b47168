"""In-flight and failed pin/unpin operations, one per CID (Go's ``pintracker/optracker``).

Only operations live here: queued, running, or failed and waiting to be recovered. Finished operations are
dropped, because IPFS is then the source of truth; that keeps memory bounded by the queue size plus the
failures, never by the size of the pinset.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Iterator
from dataclasses import dataclass, field

from pincluster.types.cid import CID
from pincluster.types.models import Pin
from pincluster.types.status import TrackerStatus

__all__ = ["OpPhase", "OpType", "Operation", "OperationTracker"]


class OpType(enum.Enum):
    """What the operation does to IPFS."""

    PIN = "pin"
    UNPIN = "unpin"
    REMOTE = "remote"  # synchronous unpin of a pin that is allocated elsewhere


class OpPhase(enum.Enum):
    """Where the operation is in its life."""

    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    ERROR = "error"
    DONE = "done"


_STATUS: dict[tuple[OpType, OpPhase], TrackerStatus] = {
    (OpType.PIN, OpPhase.QUEUED): TrackerStatus.PIN_QUEUED,
    (OpType.PIN, OpPhase.IN_PROGRESS): TrackerStatus.PINNING,
    (OpType.PIN, OpPhase.ERROR): TrackerStatus.PIN_ERROR,
    (OpType.PIN, OpPhase.DONE): TrackerStatus.PINNED,
    (OpType.UNPIN, OpPhase.QUEUED): TrackerStatus.UNPIN_QUEUED,
    (OpType.UNPIN, OpPhase.IN_PROGRESS): TrackerStatus.UNPINNING,
    (OpType.UNPIN, OpPhase.ERROR): TrackerStatus.UNPIN_ERROR,
    (OpType.UNPIN, OpPhase.DONE): TrackerStatus.UNPINNED,
    (OpType.REMOTE, OpPhase.QUEUED): TrackerStatus.REMOTE,
    (OpType.REMOTE, OpPhase.IN_PROGRESS): TrackerStatus.REMOTE,
    (OpType.REMOTE, OpPhase.ERROR): TrackerStatus.UNPIN_ERROR,
    (OpType.REMOTE, OpPhase.DONE): TrackerStatus.REMOTE,
}


@dataclass(eq=False, slots=True)
class Operation:
    """One pin or unpin of one CID. Mutated only from the event loop. Slotted: a queue may hold up to
    ``max_pin_queue_size`` (1M by default) of them, and a per-instance ``__dict__`` was a quarter of each one."""

    pin: Pin
    type: OpType
    phase: OpPhase
    timestamp_ns: int
    attempt_count: int = 0
    error: str = ""
    priority: bool = False
    cancelled: bool = False
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def cid(self) -> CID:
        return self.pin.cid

    @property
    def status(self) -> TrackerStatus:
        return _STATUS[(self.type, self.phase)]

    def cancel(self) -> None:
        """Stop the operation: a queued one is skipped by the worker; a running IPFS call is cancelled."""
        self.cancelled = True
        if self.task is not None and not self.task.done():
            self.task.cancel()


class OperationTracker:
    """The table of operations by CID (bytes keys: compact and fast to hash)."""

    def __init__(self) -> None:
        self._ops: dict[bytes, Operation] = {}

    def __len__(self) -> int:
        return len(self._ops)

    def __iter__(self) -> Iterator[Operation]:
        return iter(list(self._ops.values()))

    def get(self, cid: CID) -> Operation | None:
        return self._ops.get(cid.bytes)

    def positions(self, keys: list[bytes]) -> list[int]:
        """Where in ``keys`` (binary CIDs) there is an operation (a listing page checks its CIDs at once)."""
        ops = self._ops
        return [i for i, key in enumerate(keys) if key in ops]

    def get_bytes(self, key: bytes) -> Operation | None:
        """``get`` by binary CID (listings walk the stored keys without building CIDs)."""
        return self._ops.get(key)

    def put(self, op: Operation) -> Operation | None:
        """Store ``op`` as the CID's operation; returns the one it replaced (already cancelled by the caller)."""
        old = self._ops.get(op.cid.bytes)
        self._ops[op.cid.bytes] = op
        return old

    def clean(self, op: Operation) -> None:
        """Forget ``op`` if it is still the CID's current operation (a newer one may have replaced it)."""
        if self._ops.get(op.cid.bytes) is op:
            del self._ops[op.cid.bytes]

    def count(self, type: OpType, phase: OpPhase) -> int:
        return sum(1 for op in self._ops.values() if op.type is type and op.phase is phase)

    def filtered(self, flt: TrackerStatus) -> Iterator[Operation]:
        """Operations whose status matches ``flt`` (0 = all), over a snapshot."""
        for op in list(self._ops.values()):
            if op.status.match(flt):
                yield op
