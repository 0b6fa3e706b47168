"""One-screen peer health: :func:`health_snapshot` gathers it, the renderers draw it, the reporter prints it.

``ipfs-cluster-service daemon --stats`` turns the Prometheus metrics on (as in Go) and, every
``observations.metrics.reporting_interval``, prints the health of the peer: a rich panel when stderr is a
terminal, else a plain block of at most 15 lines in the log (facility ``observations``).

How exact the pin counts are (the pinset may hold millions of pins, so a snapshot never loads it):

* ``total`` (the pinset size) and the operation statuses (``pin_queued``, ``pinning``, ``pin_error``,
  ``unpin_*``) are exact: the state's row count and the tracker's table of live operations.
* ``remote`` and ``pinned`` need to know which pins are allocated to this peer. Up to ``PinsetWalker.limit``
  pins (10,000 by default) the pinset is streamed once (at most every ``min_interval`` seconds while its size
  does not change) and both are exact, except that a pin removed from IPFS behind the cluster's back counts as
  pinned until the next recover marks it ``unexpectedly_unpinned``. Above the limit ``remote`` is unknown
  (None) and ``pinned`` = total − live pin operations is an upper bound (it includes pins allocated elsewhere).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from typing import Any, TextIO

import msgspec

from pincluster import CLUSTER_COMPAT_VERSION, __version__
from pincluster.aio import cancel_and_wait
from pincluster.types.status import PinType, TrackerStatus

__all__ = [
    "AlertLine",
    "HealthReporter",
    "HealthSnapshot",
    "LogTail",
    "PinCounts",
    "PinsetWalker",
    "health_snapshot",
    "render_rich",
    "render_text",
    "rows",
]

log = logging.getLogger("pincluster.observations")

MAX_TEXT_LINES = 15


class PinCounts(msgspec.Struct, frozen=True, kw_only=True):
    """This peer's view of the pinset by status; None = unknown (see the module doc for exactness)."""

    total: int = 0
    allocated_here: int | None = None
    pinned: int = 0
    pin_queued: int = 0
    pinning: int = 0
    pin_error: int = 0
    unpin_queued: int = 0
    unpinning: int = 0
    unpin_error: int = 0
    remote: int | None = None
    exact: bool = False


class AlertLine(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    peer: str
    triggered_at: str


class HealthSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the health screen shows, at one moment (JSON-encodable: ``msgspec.json.encode``)."""

    taken_at: float
    peer_id: str
    peername: str
    version: str
    uptime_seconds: float
    raft_leader: str | None = None
    is_leader: bool = False
    raft_term: int = 0
    raft_commit_index: int = 0
    members_total: int = 0
    members_alive: int = 0
    pins: PinCounts = msgspec.field(default_factory=PinCounts)
    queue_length: int = 0
    ipfs_reachable: bool = False
    ipfs_error: str = ""
    ipfs_repo_size: int | None = None
    ipfs_storage_max: int | None = None
    ipfs_free: int | None = None
    informers: dict[str, str] = msgspec.field(default_factory=dict)
    informer_weights: dict[str, int] = msgspec.field(default_factory=dict)
    rpc_calls_total: int | None = None
    rpc_errors_total: int | None = None
    rpc_calls_per_second: float | None = None
    rpc_errors_per_second: float | None = None
    ipfs_requests_total: int | None = None
    ipfs_errors_total: int | None = None
    alerts_total: int = 0
    last_alerts: list[AlertLine] = msgspec.field(default_factory=list)
    last_error: str = ""


class LogTail(logging.Handler):
    """Remembers the last ERROR line logged under ``pincluster`` (for the health screen); prints nothing."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.last = ""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.getMessage().splitlines()[0] if record.getMessage() else ""
        except Exception:  # a bad format string must not break logging
            msg = str(record.msg)
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        facility = record.name.removeprefix("pincluster.")
        self.last = f"{stamp} {facility}: {msg}"[:300]

    def attach(self, logger_name: str = "pincluster") -> LogTail:
        logging.getLogger(logger_name).addHandler(self)
        return self

    def detach(self, logger_name: str = "pincluster") -> None:
        logging.getLogger(logger_name).removeHandler(self)


class PinsetWalker:
    """Counts the pins allocated here and elsewhere by streaming the pinset, only while it is small.

    The result is kept ``min_interval`` seconds while the pinset size is unchanged, so frequent scrapes of a
    busy peer do not decode the pinset again and again.
    """

    def __init__(self, limit: int = 10_000, min_interval: float = 30.0) -> None:
        self.limit = limit
        self.min_interval = min_interval
        self._cached: tuple[int, float, int, int] | None = None  # (total, at, allocated_here, remote)
        self._lock = asyncio.Lock()

    async def breakdown(self, cluster: Any, total: int) -> tuple[int, int] | None:
        """(allocated here, remote) or None when the pinset is larger than ``limit``."""
        if total > self.limit:
            return None
        async with self._lock:
            now = time.monotonic()
            c = self._cached
            if c is not None and c[0] == total and now - c[1] < self.min_interval:
                return c[2], c[3]
            here = remote = 0
            me = cluster.peer_id
            async for pin in cluster.pinset.list():
                if pin.type is PinType.META:
                    continue  # meta-pins are never pinned in IPFS ("sharded")
                if pin.is_remote_pin(me):
                    remote += 1
                else:
                    here += 1
            self._cached = (total, now, here, remote)
            return here, remote


async def _bounded(aw: Any, timeout: float) -> Any:
    return await asyncio.wait_for(aw, timeout)


async def _pin_counts(cluster: Any, walker: PinsetWalker) -> tuple[PinCounts, int]:
    tracker = cluster.tracker
    total = 0
    with contextlib.suppress(Exception):  # consensus not started yet: an empty view, not a failed scrape
        total = int(await cluster.consensus.state.count())
    counts_fn = getattr(tracker, "status_counts", None)
    ops: dict[TrackerStatus, int] = counts_fn() if counts_fn is not None else {}
    queue = int(tracker.pin_queue_size())

    def n(status: TrackerStatus) -> int:
        return ops.get(status, 0)

    live_pin_ops = n(TrackerStatus.PIN_QUEUED) + n(TrackerStatus.PINNING) + n(TrackerStatus.PIN_ERROR)
    split = await walker.breakdown(cluster, total)
    if split is None:
        here: int | None = None
        remote: int | None = None
        pinned = max(total - live_pin_ops, 0)
    else:
        here, remote = split
        pinned = max(here - live_pin_ops, 0)
    counts = PinCounts(
        total=total, allocated_here=here, pinned=pinned, pin_queued=n(TrackerStatus.PIN_QUEUED),
        pinning=n(TrackerStatus.PINNING), pin_error=n(TrackerStatus.PIN_ERROR),
        unpin_queued=n(TrackerStatus.UNPIN_QUEUED), unpinning=n(TrackerStatus.UNPINNING),
        unpin_error=n(TrackerStatus.UNPIN_ERROR), remote=remote, exact=split is not None,
    )  # fmt: skip
    return counts, queue


async def health_snapshot(
    cluster: Any,
    *,
    metrics: Any = None,
    previous: HealthSnapshot | None = None,
    walker: PinsetWalker | None = None,
    log_tail: LogTail | None = None,
    ipfs_timeout: float = 2.0,
) -> HealthSnapshot:
    """The peer's health now. ``cluster`` is a :class:`pincluster.cluster.Cluster` (or a fake with the same
    attributes); ``metrics`` (a :class:`~pincluster.observe.metrics.Metrics`) adds RPC/IPFS totals and,
    with ``previous``, rates. Each part that fails is reported as unknown rather than failing the snapshot.
    """
    now = time.time()
    walker = walker if walker is not None else PinsetWalker()
    pins, queue = await _pin_counts(cluster, walker)

    leader: str | None = None
    is_leader = False
    term = commit = 0
    status_fn = getattr(cluster.consensus, "status", None)
    if status_fn is not None:
        st = status_fn()
        leader = st.leader.partition("@")[0] if st.leader else None
        is_leader, term, commit = bool(st.is_leader), int(st.term), int(st.commit_index)

    me = cluster.peer_id
    members: list[Any] = [me]
    with contextlib.suppress(Exception):
        members = list(await cluster.member_ids())
    pinging: set[Any] = set()
    with contextlib.suppress(Exception):
        pinging = {m.peer for m in await cluster.monitor.latest_metrics("ping")}
    alive = sum(1 for m in members if m == me or m in pinging)

    informers: dict[str, str] = {}
    weights: dict[str, int] = {}
    with contextlib.suppress(Exception):
        for name in cluster.monitor.metric_names():
            if name == "ping":
                continue
            for m in await cluster.monitor.latest_metrics(name):
                if m.peer == me:
                    informers[name] = m.value
                    weights[name] = m.weight

    reachable, ipfs_error = False, ""
    repo_size = storage_max = free = None
    try:
        ident = await _bounded(cluster.ipfs.id(), ipfs_timeout)
        reachable, ipfs_error = not ident.error, ident.error
        stat = await _bounded(cluster.ipfs.repo_stat(), ipfs_timeout)
        repo_size, storage_max = int(stat.repo_size), int(stat.storage_max)
        free = max(storage_max - repo_size, 0)
    except TimeoutError:
        ipfs_error = ipfs_error or f"no answer within {ipfs_timeout:g} s"
    except Exception as exc:
        ipfs_error = ipfs_error or str(exc) or type(exc).__name__

    alerts: list[Any] = []
    with contextlib.suppress(Exception):
        alerts = list(cluster.monitor.recent_alerts())
    last_alerts = [
        AlertLine(name=a.name, peer=str(a.peer) if a.peer else "", triggered_at=_fmt_time(a.triggered_at))
        for a in alerts[:3]
    ]

    calls = errors = ipfs_total = ipfs_errors = None
    call_rate = error_rate = None
    if metrics is not None:
        calls, errors = metrics.rpc_calls_total, metrics.rpc_errors_total
        ipfs_total, ipfs_errors = metrics.ipfs_requests_total, metrics.ipfs_errors_total
        if previous is not None and previous.rpc_calls_total is not None and now > previous.taken_at:
            dt = now - previous.taken_at
            call_rate = max(calls - previous.rpc_calls_total, 0) / dt
            error_rate = max(errors - (previous.rpc_errors_total or 0), 0) / dt
    started = metrics.started if metrics is not None else _IMPORTED

    return HealthSnapshot(
        taken_at=now, peer_id=str(me), peername=str(getattr(cluster, "peername", "")),
        version=f"{CLUSTER_COMPAT_VERSION} (pincluster {__version__})", uptime_seconds=max(now - started, 0.0),
        raft_leader=leader, is_leader=is_leader, raft_term=term, raft_commit_index=commit,
        members_total=len(members), members_alive=alive, pins=pins, queue_length=queue,
        ipfs_reachable=reachable, ipfs_error=ipfs_error, ipfs_repo_size=repo_size, ipfs_storage_max=storage_max,
        ipfs_free=free, informers=informers, informer_weights=weights, rpc_calls_total=calls,
        rpc_errors_total=errors, rpc_calls_per_second=call_rate, rpc_errors_per_second=error_rate,
        ipfs_requests_total=ipfs_total, ipfs_errors_total=ipfs_errors, alerts_total=len(alerts),
        last_alerts=last_alerts, last_error=log_tail.last if log_tail is not None else "",
    )  # fmt: skip


_IMPORTED = time.time()


def _fmt_time(t: Any) -> str:
    try:
        return str(t.strftime("%H:%M:%SZ"))
    except Exception:
        return str(t)


def _short(peer: str) -> str:
    return peer if len(peer) <= 14 else f"{peer[:6]}…{peer[-6:]}"


def _bytes(n: int | None) -> str:
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"


def _duration(s: float) -> str:
    s = int(s)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    if d:
        return f"{d}d{h:02d}h{m:02d}m"
    if h:
        return f"{h}h{m:02d}m"
    return f"{m}m{s:02d}s"


def rows(s: HealthSnapshot) -> list[tuple[str, str]]:
    """The screen as (label, value) rows; both renderers draw these."""
    p = s.pins
    leader = "none (election or no quorum)" if s.raft_leader is None else _short(s.raft_leader)
    if s.is_leader:
        leader += " (this peer)"
    approx = "" if p.exact else " (pinned estimated: pinset above the walk limit)"
    remote = "?" if p.remote is None else str(p.remote)
    pins = (
        f"{p.total} in pinset: {p.pinned} pinned, {p.pinning} pinning, {p.pin_queued} queued, "
        f"{p.pin_error} error, {remote} remote{approx}"
    )
    unpins = p.unpin_queued + p.unpinning + p.unpin_error
    if unpins:
        pins += f"; unpin: {p.unpin_queued} queued, {p.unpinning} running, {p.unpin_error} error"
    if s.ipfs_reachable:
        ipfs = f"reachable, repo {_bytes(s.ipfs_repo_size)}, free {_bytes(s.ipfs_free)}"
    else:
        ipfs = f"UNREACHABLE: {s.ipfs_error}"[:200]
    if s.ipfs_requests_total is not None:
        ipfs += f"; {s.ipfs_requests_total} requests, {s.ipfs_errors_total} failed"
    out = [
        ("peer", f"{s.peername or '-'} {s.peer_id}, version {s.version}, up {_duration(s.uptime_seconds)}"),
        ("raft", f"leader {leader}, term {s.raft_term}, commit {s.raft_commit_index}"),
        ("peers", f"{s.members_alive}/{s.members_total} alive"),
        ("pins", pins),
        ("queue", f"{s.queue_length} pin operations waiting"),
        ("ipfs", ipfs),
    ]
    if s.informers:
        out.append(("informers", ", ".join(f"{k}={v}" for k, v in sorted(s.informers.items()))[:200]))
    if s.rpc_calls_total is not None:
        rate = "" if s.rpc_calls_per_second is None else (
            f"{s.rpc_calls_per_second:.1f} calls/s, {s.rpc_errors_per_second or 0.0:.1f} errors/s; "
        )  # fmt: skip
        out.append(("rpc", f"{rate}{s.rpc_calls_total} calls, {s.rpc_errors_total} errors in all"))
    out.append(("alerts", f"{s.alerts_total}" + ("" if s.last_alerts else " (none)")))
    for a in s.last_alerts:
        out.append(("", f"{a.name} from {_short(a.peer)} at {a.triggered_at}"))
    out.append(("last error", s.last_error or "none"))
    return out


def render_text(s: HealthSnapshot) -> list[str]:
    """At most 15 plain lines: a title, then ``label: value``."""
    lines = ["== peer health =="]
    for label, value in rows(s):
        lines.append(f"  {label + ':' if label else '':<11} {value}")
    return lines[:MAX_TEXT_LINES]


def render_rich(s: HealthSnapshot) -> Any:
    """A rich ``Panel`` holding a two-column grid (for a terminal)."""
    from rich.panel import Panel
    from rich.table import Table

    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="bold cyan", no_wrap=True)
    grid.add_column()
    for label, value in rows(s):
        style = ""
        if label == "ipfs" and not s.ipfs_reachable:
            style = "bold red"
        elif label == "last error" and s.last_error:
            style = "red"
        elif label == "peers" and s.members_alive < s.members_total:
            style = "yellow"
        grid.add_row(label, value, style=style)
    title = f"pincluster health · {s.peername or _short(s.peer_id)} · {time.strftime('%H:%M:%S')}"
    return Panel(grid, title=title, expand=False)


class HealthReporter:
    """Prints the health screen every ``interval`` seconds until stopped."""

    def __init__(
        self,
        cluster: Any,
        interval: float,
        *,
        metrics: Any = None,
        walker: PinsetWalker | None = None,
        log_tail: LogTail | None = None,
        stream: TextIO | None = None,
        tty: bool | None = None,
    ) -> None:
        self.cluster = cluster
        self.interval = interval
        self.metrics = metrics
        self.walker = walker if walker is not None else PinsetWalker()
        self.log_tail = log_tail
        self.stream = stream
        self.tty = tty
        self._previous: HealthSnapshot | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="observations-health")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task])
            self._task = None

    async def report(self) -> HealthSnapshot:
        """Take a snapshot and print it once (used by the loop, and by tests)."""
        snap = await health_snapshot(
            self.cluster, metrics=self.metrics, previous=self._previous, walker=self.walker,
            log_tail=self.log_tail,
        )  # fmt: skip
        self._previous = snap
        stream = self.stream if self.stream is not None else sys.stderr
        tty = self.tty if self.tty is not None else _isatty(stream)
        if tty:
            from rich.console import Console

            Console(file=stream, highlight=False).print(render_rich(snap))
        else:
            log.info("%s", "\n".join(render_text(snap)))
        return snap

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.report()
            except Exception:  # the screen must never take the peer down
                log.exception("could not build the health screen")


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False

