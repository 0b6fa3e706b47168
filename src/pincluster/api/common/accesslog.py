"""Request log lines in Apache Common Log Format (spec §1.1), as Go's ``handlers.LoggingHandler`` writes
them: to the logger ``pincluster.<facility>log`` at INFO, or appended to ``http_log_file``."""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from typing import Any, TextIO

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

__all__ = ["CommonLogFormat", "format_line", "make_access_logger"]

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _clf_time(t: datetime) -> str:
    off = t.utcoffset() or timedelta(0)
    minutes = int(off.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    minutes = abs(minutes)
    return (f"{t.day:02d}/{_MONTHS[t.month - 1]}/{t.year:04d}:{t.hour:02d}:{t.minute:02d}:{t.second:02d} "
            f"{sign}{minutes // 60:02d}{minutes % 60:02d}")


def format_line(request: web.BaseRequest, response: web.StreamResponse, when: datetime,
                user: str | None = None) -> str:
    """``host - user [time] "METHOD uri HTTP/x.y" status size``."""
    peer = request.remote or "-"
    # body bytes when known (aiohttp's body_length also counts the headers); "-" for streamed bodies
    size = "-" if response.content_length is None else str(response.content_length)
    version = f"HTTP/{request.version.major}.{request.version.minor}"
    return (f'{peer} - {user or "-"} [{_clf_time(when)}] "{request.method} {request.raw_path} {version}" '
            f"{response.status} {size}")


class CommonLogFormat(AbstractAccessLogger):
    """aiohttp access logger writing CLF lines to a logger or to a file (opened in append mode)."""

    log_file: str = ""
    _lock = threading.Lock()
    _files: dict[str, TextIO] = {}

    def __init__(self, logger: logging.Logger, log_format: str) -> None:
        super().__init__(logger, log_format)

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        line = format_line(request, response, datetime.now().astimezone())
        if self.log_file:
            try:
                with self._lock:
                    f = self._files.get(self.log_file)
                    if f is None or f.closed:
                        f = self._files[self.log_file] = open(self.log_file, "a", encoding="utf-8")  # noqa: SIM115
                    f.write(line + "\n")
                    f.flush()
            except OSError as exc:
                self.logger.warning("cannot write the request log to %s: %s", self.log_file, exc)
        else:
            self.logger.info("%s", line)

    @property
    def enabled(self) -> bool:
        return bool(self.log_file) or self.logger.isEnabledFor(logging.INFO)


def make_access_logger(log_file: str) -> type[AbstractAccessLogger]:
    """A logger class bound to ``log_file`` ("" = the logging facility); aiohttp instantiates it."""
    attrs: dict[str, Any] = {"log_file": log_file}
    return type("BoundCommonLogFormat", (CommonLogFormat,), attrs)


def close_log_files() -> None:
    """Close the request log files kept open by :class:`CommonLogFormat` (on API shutdown)."""
    with CommonLogFormat._lock:
        for f in CommonLogFormat._files.values():
            f.close()
        CommonLogFormat._files.clear()
