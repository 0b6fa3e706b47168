"""``ls`` as kubo's CLI prints it (``core/commands/ls.go``'s ``tabularOutput``): the text ``pincluster-ipfs ls``
writes from the RPC API's ``LsOutput`` objects, so scripts that parse ``ipfs ls`` read ours the same way.

Go aligns the columns with ``text/tabwriter`` (``types.gotext.tabwrite``, with kubo's padding 1).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pincluster.types.gotext import go_escape, tabwrite
from pincluster.types.gotime import is_zero_time, parse_time

__all__ = ["LsPrinter", "format_mod_time", "format_mode"]

_DIRECTORY, _HAMT_SHARD, _METADATA = 1, 5, 3


#: Go ``os.FileMode`` bits that ``format_mode`` shows.
_MODE_DIR, _MODE_SYMLINK, _MODE_DEVICE, _MODE_PIPE = 1 << 31, 1 << 27, 1 << 26, 1 << 25
_MODE_SETUID, _MODE_SETGID, _MODE_CHARDEV, _MODE_STICKY, _MODE_SOCKET = 1 << 23, 1 << 22, 1 << 21, 1 << 20, 1 << 24


def format_mode(mode: int) -> str:
    """kubo's ``formatMode``: a Go ``os.FileMode`` as the 10 characters of Unix ``ls -l``."""
    if mode & _MODE_DIR:
        kind = "d"
    elif mode & _MODE_SYMLINK:
        kind = "l"
    elif mode & _MODE_PIPE:
        kind = "p"
    elif mode & _MODE_SOCKET:
        kind = "s"
    elif mode & _MODE_DEVICE:
        kind = "c" if mode & _MODE_CHARDEV else "b"
    else:
        kind = "-"

    def bit(mask: int, ch: str) -> str:
        return ch if mode & mask else "-"

    def special(flag: int, exec_mask: int, lower: str) -> str:
        if mode & flag:
            return lower if mode & exec_mask else lower.upper()
        return bit(exec_mask, "x")

    return (kind + bit(0o400, "r") + bit(0o200, "w") + special(_MODE_SETUID, 0o100, "s")
            + bit(0o40, "r") + bit(0o20, "w") + special(_MODE_SETGID, 0o10, "s")
            + bit(0o4, "r") + bit(0o2, "w") + special(_MODE_STICKY, 0o1, "t"))


def _add_months(t: datetime, months: int) -> datetime:
    """Go's ``AddDate(0, months, 0)``: the day is kept and an overflow rolls into the next month."""
    total = t.year * 12 + (t.month - 1) + months
    first = t.replace(year=total // 12, month=total % 12 + 1, day=1)
    return first + timedelta(days=t.day - 1)


def format_mod_time(text: str, now: datetime) -> str:
    """kubo's ``formatModTime`` of an RFC 3339 ``ModTime``: ``-`` for Go's zero time, ``Jan 02 15:04`` within the
    last six months, else ``Jan 02  2006``, in the time's own zone (the one the node wrote it in)."""
    t = parse_time(text)
    if is_zero_time(t):
        return "-"
    if _add_months(now, -6) < t < now + timedelta(hours=24):
        return t.strftime("%b %d %H:%M")
    return t.strftime("%b %d  %Y")


def _esc_non_print(name: str) -> str:
    """kubo's ``EscNonPrint``: Go's ``strconv.Quote`` of a name with a backslash or an unprintable character,
    without the quotes (and with ``"`` left as it is)."""
    return go_escape(name, quote="")


class LsPrinter:
    """kubo's CLI output of ``ls`` for one command: ``lines(objects)`` for each ``LsOutput`` received (one in
    all without ``stream``; one per entry with it), with the breaks between paths it prints."""

    def __init__(self, npaths: int, *, headers: bool, size: bool, long: bool, stream: bool,
                 now: datetime) -> None:
        self.multiple, self.headers, self.size, self.long = npaths > 1, headers, size, long
        self.minwidth = 10 if stream else 1
        self.now = now
        self._last = ""

    def lines(self, objects: list[dict[str, Any]]) -> list[str]:
        out: list[str] = []
        for obj in objects:
            if obj["Hash"] != self._last:
                if self.multiple:
                    if self._last:
                        out.append("")
                    out.append(f"{obj['Hash']}:")
                if self.headers:
                    cols = ["Mode", "Hash", "Size", "ModTime", "Name"] if self.long else ["Hash", "Size", "Name"]
                    out.append("\t".join(c for c in cols if c != "Size" or self.size))
                self._last = obj["Hash"]
            for link in obj.get("Links") or []:
                out.append(self._link(link))
        return tabwrite(out, self.minwidth)

    def _link(self, link: dict[str, Any]) -> str:
        is_dir = link.get("Type") in (_DIRECTORY, _HAMT_SHARD, _METADATA)
        name = _esc_non_print(str(link.get("Name", ""))) + ("/" if is_dir else "")
        size = ("-" if is_dir else str(link.get("Size", 0))) if self.size else None
        cells = [str(link["Hash"])] + ([size] if size is not None else [])
        if self.long:
            mode = int(link.get("Mode") or 0)
            when = format_mod_time(str(link.get("ModTime", "0001-01-01T00:00:00Z")), self.now)
            cells = [format_mode(mode) if mode else "-", *cells, when]
        return "\t".join([*cells, name])
