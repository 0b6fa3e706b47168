"""One logging setup for the whole program (``ipfs-cluster-service``, the daemon, tests that ask for it).

Lines go to stderr as ``HH:MM:SS.mmm LEVEL facility: message file.py:LINE``. A facility is the logger name
under ``pincluster.`` (``pincluster.raft`` → ``raft``), the same names IPFS Cluster uses (spec §6.1), so
``--loglevel info,restapi:debug`` means what it means in Go. Components only call
``logging.getLogger("pincluster.<facility>")``; nothing but this module installs handlers.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TextIO

from pincluster.errors import InvalidInput

ROOT = "pincluster"

#: IPFS Cluster's facilities (spec §6.1); any other name is accepted too, for our own components.
FACILITIES = (
    "cluster", "restapi", "restapilog", "pinsvcapi", "pinsvcapilog", "ipfsproxy", "ipfsproxylog", "ipfshttp",
    "monitor", "dsstate", "raft", "crdt", "pintracker", "diskinfo", "tags", "apitypes", "config",
    "shardingdags", "singledags", "adder", "optracker", "pstoremgr", "allocator", "p2p", "ipfs", "rpc", "state",
)  # fmt: skip

#: Libraries that ``--debug`` makes verbose; they can also be named in ``--loglevel`` (``aiohttp:debug``).
DEPENDENCIES = ("aiohttp", "pysyncobj", "asyncio")

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "dpanic": logging.CRITICAL,
    "panic": logging.CRITICAL,
    "fatal": logging.CRITICAL,
    "critical": logging.CRITICAL,
}
_NAMES = {logging.DEBUG: "DEBUG", logging.INFO: "INFO", logging.WARNING: "WARN", logging.ERROR: "ERROR",
          logging.CRITICAL: "FATAL"}  # fmt: skip


@dataclass(frozen=True)
class LogLevels:
    """A parsed ``--loglevel``: the default level and per-facility levels."""

    default: int = logging.INFO
    facilities: Mapping[str, int] = field(default_factory=dict)


def _level(text: str, spec: str) -> int:
    try:
        return _LEVELS[text.strip().lower()]
    except KeyError:
        raise InvalidInput(
            f"invalid log level {text!r} in --loglevel {spec!r}: use debug, info, warn, error or fatal, "
            "optionally per facility as in 'info,restapi:debug'"
        )


def parse_loglevel(spec: str | None) -> LogLevels:
    """``"info,cluster:debug,pintracker:debug"`` → default INFO, two facilities at DEBUG."""
    default = logging.INFO
    facilities: dict[str, int] = {}
    for part in (spec or "").split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, level = part.rpartition(":")
        if not sep:
            default = _level(part, spec or "")
        elif not name.strip():
            raise InvalidInput(f"invalid --loglevel {spec!r}: empty facility name in {part!r}")
        else:
            facilities[name.strip()] = _level(level, spec or "")
    return LogLevels(default, facilities)


def facility_of(logger_name: str) -> str:
    """``pincluster.raft`` → ``raft``; other loggers keep their own name."""
    if logger_name.startswith(ROOT + "."):
        return logger_name[len(ROOT) + 1 :]
    return logger_name


def logger_for(facility: str) -> str:
    """The logger name a facility refers to (dependencies are addressed by their own name)."""
    if facility == ROOT or facility.startswith(ROOT + ".") or facility.split(".")[0] in DEPENDENCIES:
        return facility
    return f"{ROOT}.{facility}"


class LineFormatter(logging.Formatter):
    """``HH:MM:SS.mmm LEVEL facility: message file.py:LINE`` (+ traceback lines when there is one).

    The request log writes a line per request (thousands per second): the ``HH:MM:SS`` of the current
    second and the ``LEVEL facility:`` parts are computed once and reused.
    """

    def __init__(self) -> None:
        super().__init__()
        self._clock: tuple[int, str] = (-1, "")
        self._heads: dict[tuple[int, str], str] = {}

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        clock = self._clock  # one (second, text) pair: threads log through the same formatter
        if clock[0] != second:
            t = time.localtime(record.created)
            clock = self._clock = (second, f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}")
        head = self._heads.get((record.levelno, record.name))
        if head is None:
            level = _NAMES.get(record.levelno, record.levelname)
            head = f"{level} {facility_of(record.name)}:"
            if len(self._heads) < 4096:
                self._heads[(record.levelno, record.name)] = head
        line = f"{clock[1]}.{int(record.msecs):03d} {head} {record.getMessage()} {record.filename}:{record.lineno}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of the record (pytest and click swap it)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream or sys.stderr)
        self._fixed = stream

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = self._fixed or sys.stderr
        super().emit(record)


_handler: logging.Handler | None = None
_touched: set[str] = set()


def setup_logging(loglevel: str | None = None, debug: bool = False, stream: TextIO | None = None) -> LogLevels:
    """Install the stderr handler and levels. Safe to call again (it replaces the previous setup).

    ``debug`` sets every facility to DEBUG and makes aiohttp, pysyncobj and asyncio log at DEBUG too.
    Without it, third-party libraries log warnings and errors only.
    """
    global _handler
    levels = parse_loglevel(loglevel)
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    _handler = _StderrHandler(stream)
    _handler.setFormatter(LineFormatter())
    root.addHandler(_handler)
    root.setLevel(logging.WARNING)

    for name in _touched:  # forget levels of a previous setup
        logging.getLogger(name).setLevel(logging.NOTSET)
    _touched.clear()

    def set_level(name: str, level: int) -> None:
        logging.getLogger(name).setLevel(level)
        _touched.add(name)

    set_level(ROOT, logging.DEBUG if debug else levels.default)
    for dep in DEPENDENCIES:
        set_level(dep, logging.DEBUG if debug else logging.WARNING)
    if not debug:
        for facility, level in levels.facilities.items():
            set_level(logger_for(facility), level)
    return levels


def reset_logging() -> None:
    """Undo :func:`setup_logging` (remove our handler, forget levels); for tests and embedding."""
    global _handler
    if _handler is not None:
        logging.getLogger().removeHandler(_handler)
        _handler = None
    for name in _touched:
        logging.getLogger(name).setLevel(logging.NOTSET)
    _touched.clear()
