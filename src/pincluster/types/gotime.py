"""Go ``time.Time`` and ``time.Duration`` text forms, exactly as IPFS Cluster writes and reads them.

Times: Go marshals ``time.Time`` as RFC 3339 with nanoseconds and the trailing zeros of the fraction trimmed
(``2006-01-02T15:04:05.999999999Z07:00``); an offset of zero is written ``Z``; the zero time is exactly
``0001-01-01T00:00:00Z`` and means "unset" (:data:`ZERO_TIME`, :func:`is_zero_time`). The data model holds
times as tz-aware ``datetime`` objects (plain ones are the fast common case). Python's ``datetime`` stops at
microseconds, so :func:`parse_time` returns a :class:`GoTime` (a ``datetime`` subclass) when the text has
nanoseconds beyond the microsecond, so that such a time survives ``parse_time``/``format_time`` byte for byte.
Equality and hashing are ``datetime``'s (they ignore those extra nanoseconds).

Durations: the public type is :class:`datetime.timedelta` (``parse_duration``), because callers add it to
times (``expire-in``) and compare it; ``timedelta`` holds microseconds, so the sub-microsecond part of a Go
duration is truncated there. ``parse_duration_ns`` gives the exact integer nanoseconds when they matter, and
``format_duration`` accepts either form and writes what Go's ``Duration.String()`` writes.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any, Final

import msgspec

from pincluster.errors import InvalidInput

__all__ = [
    "ZERO_TIME",
    "GoTime",
    "InvalidDuration",
    "InvalidTime",
    "format_duration",
    "format_time",
    "from_unix_nano",
    "go_now",
    "is_zero_time",
    "parse_duration",
    "parse_duration_ns",
    "parse_time",
    "to_gotime",
    "unix_nano",
]


class InvalidTime(InvalidInput):
    """A time that is not RFC 3339 (or is naive where a timezone is required)."""


class InvalidDuration(InvalidInput):
    """A duration that Go's ``time.ParseDuration`` would reject."""


class GoTime(datetime):
    """A timezone-aware instant with Go's JSON text form and nanosecond precision.

    ``nanosecond`` is the part below the microsecond (0–999), so ``microsecond * 1000 + nanosecond`` is
    Go's ``Nanosecond()``. Build one with :func:`to_gotime`, :func:`parse_time` or :func:`go_now`.
    """

    __slots__ = ("_ns",)

    @property
    def nanosecond(self) -> int:
        """Nanoseconds beyond the microsecond (0–999)."""
        ns: int = getattr(self, "_ns", 0)
        return ns

    @property
    def is_zero(self) -> bool:
        """Go's ``IsZero()``: the instant ``0001-01-01T00:00:00Z``, which Go uses for "unset"."""
        return (
            self.year == 1
            and self.month == 1
            and self.day == 1
            and self.hour == 0
            and self.minute == 0
            and self.second == 0
            and self.microsecond == 0
            and self.nanosecond == 0
            and self.utcoffset() == _ZERO_DELTA
        )

    def unix_nano(self) -> int:
        """Nanoseconds since the Unix epoch (Go's ``UnixNano()``, without its int64 overflow)."""
        delta: timedelta = datetime.__sub__(self, _EPOCH)
        return ((delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds) * 1000 + self.nanosecond

    def go_format(self) -> str:
        """The Go JSON text (without quotes)."""
        return format_time(self)

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        """Pickle with the extra nanoseconds (``datetime``'s own reduce would drop them)."""
        return (_restore_gotime, (datetime.__reduce_ex__(self, protocol)[1], self.nanosecond))

    def __repr__(self) -> str:
        return f"GoTime({format_time(self)!r})"


def _restore_gotime(state: tuple[Any, ...], nanosecond: int) -> GoTime:
    t = GoTime(*state)
    if nanosecond:
        object.__setattr__(t, "_ns", nanosecond)
    return t


_ZERO_DELTA = timedelta(0)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_GO_EPOCH = GoTime(1970, 1, 1, tzinfo=UTC)

#: Go's zero ``time.Time``: "unset" in every JSON shape of the spec.
ZERO_TIME: datetime = datetime(1, 1, 1, tzinfo=UTC)
_ZERO_TEXT = "0001-01-01T00:00:00Z"


def is_zero_time(t: datetime) -> bool:
    """Go's ``IsZero()``: exactly ``0001-01-01T00:00:00Z``."""
    if t.year != 1:
        return False
    if isinstance(t, GoTime):
        return t.is_zero
    return t == ZERO_TIME and t.utcoffset() == _ZERO_DELTA


_TZ_CACHE: dict[int, tzinfo] = {0: UTC}


def _tz_for_offset(seconds: int) -> tzinfo:
    """A shared ``timezone`` object per offset, so decoding many times does not build many."""
    tz = _TZ_CACHE.get(seconds)
    if tz is None:
        tz = timezone(timedelta(seconds=seconds))
        if len(_TZ_CACHE) < 256:
            _TZ_CACHE[seconds] = tz
    return tz


def to_gotime(value: datetime, nanosecond: int = 0) -> GoTime:
    """Wrap a tz-aware ``datetime`` (keeping its offset) as a :class:`GoTime`; naive input is refused."""
    if type(value) is GoTime and not nanosecond:
        return value
    if value.utcoffset() is None:
        raise InvalidTime(f"time {value.isoformat()!r} has no timezone; give a tz-aware datetime (e.g. UTC)")
    if not 0 <= nanosecond <= 999:
        raise InvalidTime(f"nanosecond {nanosecond} is out of range 0-999")
    t = GoTime(
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond,
        value.tzinfo,
        fold=value.fold,
    )
    ns = nanosecond or (value.nanosecond if isinstance(value, GoTime) else 0)
    if ns:
        object.__setattr__(t, "_ns", ns)
    return t


def go_now() -> datetime:
    """The current time in UTC, as the cluster stamps pins."""
    return datetime.now(UTC)


def from_unix_nano(ns: int, offset_seconds: int = 0) -> datetime:
    """The instant ``ns`` nanoseconds after the Unix epoch, shown at the given UTC offset (a GoTime when
    there are nanoseconds below the microsecond)."""
    us, sub = divmod(ns, 1000)
    if not offset_seconds:  # UTC, the common case: datetime arithmetic keeps the tzinfo and the subclass
        if not sub:
            return _EPOCH + timedelta(microseconds=us)
        g = _GO_EPOCH + timedelta(microseconds=us)
        object.__setattr__(g, "_ns", sub)
        return g
    t = (_EPOCH + timedelta(microseconds=us + offset_seconds * 1_000_000)).replace(
        tzinfo=_tz_for_offset(offset_seconds)
    )
    if not sub:
        return t
    g = GoTime(t.year, t.month, t.day, t.hour, t.minute, t.second, t.microsecond, t.tzinfo)
    object.__setattr__(g, "_ns", sub)
    return g


def unix_nano(t: datetime) -> int:
    """Nanoseconds since the Unix epoch (Go's ``UnixNano()``, without its int64 overflow)."""
    delta: timedelta = datetime.__sub__(t, _EPOCH)
    ns = ((delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds) * 1000
    return ns + t.nanosecond if type(t) is GoTime else ns


# msgspec writes a UTC ``datetime`` in C as ``"…THH:MM:SS[.ffffff]Z"`` (always 6 fraction digits, none when the
# microsecond is 0), ten times faster than ``isoformat``: only the trailing zeros of the fraction need trimming.
_ENC_DATETIME: Final = msgspec.json.Encoder().encode
_LEN_WITH_FRACTION: Final = 29  # '"' + 19 + '.' + 6 + 'Z"'
# Other times (GoTime with nanoseconds, non-UTC offsets) are formatted in Python; a listing shares one such
# object across many items (the tracker's "now"), so the text of the last few objects is kept, by identity.
_RECENT: dict[int, tuple[datetime, str]] = {}
_RECENT_MAX: Final = 64


def format_time(t: datetime) -> str:
    """Go's ``time.Time.MarshalJSON`` text (RFC 3339, nanoseconds with trailing zeros trimmed)."""
    if t.tzinfo is UTC and type(t) is datetime:  # the common case (zero time included)
        b = _ENC_DATETIME(t)
        if len(b) != _LEN_WITH_FRACTION or b[26] != 0x30:  # no fraction, or no trailing zero to trim
            return b[1:-1].decode("ascii")
        return b[1:-2].decode("ascii").rstrip("0") + "Z"
    hit = _RECENT.get(id(t))
    if hit is not None and hit[0] is t:
        return hit[1]
    text = _format_time(t)
    if len(_RECENT) >= _RECENT_MAX:
        _RECENT.clear()
    _RECENT[id(t)] = (t, text)  # the entry holds t, so its id cannot be reused while cached
    return text


_SECOND_TEXT: dict[int, str] = {}
_SECOND_TEXT_MAX: Final = 4096
_UNIX_NANO_MAX: Final = 253_402_300_800 * 1_000_000_000  # year 10000


def unix_nano_text(ns: int) -> str:
    """``format_time(from_unix_nano(ns))`` without building the datetime: the date and time of each second are
    formatted once (a listing's operations were queued within a few seconds of each other), then the
    nanoseconds are appended, trailing zeros trimmed as Go does. ~0.4 µs against ~3.5 µs."""
    if not 0 <= ns < _UNIX_NANO_MAX:
        return format_time(from_unix_nano(ns))
    seconds, frac = divmod(ns, 1_000_000_000)
    prefix = _SECOND_TEXT.get(seconds)
    if prefix is None:
        if len(_SECOND_TEXT) >= _SECOND_TEXT_MAX:
            _SECOND_TEXT.clear()
        prefix = _SECOND_TEXT[seconds] = _ENC_DATETIME(_EPOCH + timedelta(seconds=seconds))[1:20].decode("ascii")
    if not frac:
        return prefix + "Z"
    return f"{prefix}.{frac:09d}".rstrip("0") + "Z"


def _format_time(t: datetime) -> str:
    if t.tzinfo is UTC and type(t) is GoTime:  # a tracker's clock reading: date and time through msgspec
        b = _ENC_DATETIME(datetime(t.year, t.month, t.day, t.hour, t.minute, t.second, 0, UTC))
        frac = t.microsecond * 1000 + getattr(t, "_ns", 0)
        if not frac:
            return b[1:-1].decode("ascii")
        return b[1:20].decode("ascii") + "." + f"{frac:09d}".rstrip("0") + "Z"
    if t.year == 1 and is_zero_time(t):
        return _ZERO_TEXT
    off = t.utcoffset()
    if off is None:
        raise InvalidTime(f"time {t.isoformat()!r} has no timezone; Go times always have one")
    frac = t.microsecond * 1000 + (t.nanosecond if type(t) is GoTime else 0)
    text = f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    secs = off.days * 86400 + off.seconds
    if secs == 0:
        return text + "Z"
    sign = "+" if secs > 0 else "-"
    mins = abs(secs) // 60
    return f"{text}{sign}{mins // 60:02d}:{mins % 60:02d}"


_TIME_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)


def parse_time(text: str) -> datetime:
    """Parse an RFC 3339 time as Go's ``time.Time.UnmarshalJSON`` does (fraction of any length, cut at ns).

    Returns a plain tz-aware ``datetime``, or a :class:`GoTime` when there are nanoseconds below the
    microsecond. Raises :class:`InvalidTime` naming the input.
    """
    m = _TIME_RE.fullmatch(text) if isinstance(text, str) else None
    if m is None:
        raise InvalidTime(f"invalid time {text!r}: expected RFC 3339, like 2006-01-02T15:04:05.999999999Z07:00")
    year, month, day, hour, minute, second, frac, zulu, sign, oh, om = m.groups()
    ns = int((frac + "00000000")[:9]) if frac else 0
    if zulu:
        offset = 0
    else:
        if int(oh) > 23 or int(om) > 59:
            raise InvalidTime(f"invalid time {text!r}: timezone offset out of range")
        offset = (int(oh) * 3600 + int(om) * 60) * (1 if sign == "+" else -1)
    cls = GoTime if ns % 1000 else datetime
    try:
        t = cls(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second),
            ns // 1000,
            _tz_for_offset(offset),
        )
    except ValueError as exc:
        raise InvalidTime(f"invalid time {text!r}: {exc}") from None
    if ns % 1000:
        object.__setattr__(t, "_ns", ns % 1000)
    return t


# --- durations ---------------------------------------------------------------------------------------------
_NS = 1
_US = 1000
_MS = 1000 * _US
_S = 1000 * _MS
_M = 60 * _S
_H = 60 * _M
_UNITS: dict[str, int] = {
    "ns": _NS,
    "us": _US,
    "µs": _US,  # U+00B5 micro sign
    "μs": _US,  # U+03BC Greek mu
    "ms": _MS,
    "s": _S,
    "m": _M,
    "h": _H,
}
_MAX_DURATION = (1 << 63) - 1
_NUM_CHARS = frozenset("0123456789.")


def parse_duration_ns(text: str) -> int:
    """Parse any Go duration (``2m``, ``0h2m0s``, ``1.5h``, ``-500ms``, ``300us``, ``0``) to nanoseconds.

    Follows ``time.ParseDuration``: an optional sign, then one or more ``<number><unit>`` pairs; fractions
    are computed exactly (Go uses float64 there). The result must fit Go's int64. Raises
    :class:`InvalidDuration` with Go's wording.
    """
    if not isinstance(text, str):
        raise InvalidDuration(f"time: invalid duration {text!r}: not a string")
    orig = text
    s = text
    neg = False
    if s and s[0] in "+-":
        neg = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise InvalidDuration(f'time: invalid duration "{orig}"')
    total = 0
    while s:
        if s[0] not in _NUM_CHARS:
            raise InvalidDuration(f'time: invalid duration "{orig}"')
        i = 0
        while i < len(s) and "0" <= s[i] <= "9":
            i += 1
        int_part = s[:i]
        s = s[i:]
        frac_part = ""
        if s.startswith("."):
            s = s[1:]
            i = 0
            while i < len(s) and "0" <= s[i] <= "9":
                i += 1
            frac_part = s[:i]
            s = s[i:]
        if not int_part and not frac_part:
            raise InvalidDuration(f'time: invalid duration "{orig}"')
        i = 0
        while i < len(s) and s[i] not in _NUM_CHARS:
            i += 1
        if i == 0:
            raise InvalidDuration(f'time: missing unit in duration "{orig}"')
        unit_text = s[:i]
        s = s[i:]
        unit = _UNITS.get(unit_text)
        if unit is None:
            raise InvalidDuration(f'time: unknown unit "{unit_text}" in duration "{orig}"')
        value = int(int_part or "0") * unit
        if frac_part:
            value += int(frac_part) * unit // (10 ** len(frac_part))
        total += value
        if total > _MAX_DURATION + 1:
            raise InvalidDuration(f'time: invalid duration "{orig}"')
    if neg:
        return -total
    if total > _MAX_DURATION:
        raise InvalidDuration(f'time: invalid duration "{orig}"')
    return total


def parse_duration(text: str) -> timedelta:
    """Parse a Go duration to a ``timedelta`` (sub-microsecond part truncated toward zero)."""
    ns = parse_duration_ns(text)
    us = abs(ns) // 1000
    return timedelta(microseconds=-us if ns < 0 else us)


def _timedelta_ns(d: timedelta) -> int:
    return ((d.days * 86400 + d.seconds) * 1_000_000 + d.microseconds) * 1000


def _frac(value: int, digits: int) -> str:
    """``value / 10**digits`` with the fraction's trailing zeros (and a bare ``.``) removed, as Go prints."""
    whole, rest = divmod(value, 10**digits)
    if not rest:
        return str(whole)
    return f"{whole}." + f"{rest:0{digits}d}".rstrip("0")


def format_duration(d: timedelta | int) -> str:
    """Go's ``Duration.String()``: ``0s``, ``250ms``, ``1.5µs``, ``1m0s``, ``1h0m0s``, ``24h0m0s``, ``-2s``.

    ``d`` is a ``timedelta`` or integer nanoseconds.
    """
    ns = _timedelta_ns(d) if isinstance(d, timedelta) else int(d)
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    u = abs(ns)
    if u < _S:
        if u < _US:
            return f"{sign}{u}ns"
        if u < _MS:
            return f"{sign}{_frac(u, 3)}µs"
        return f"{sign}{_frac(u, 6)}ms"
    secs, sub = divmod(u, _S)
    text = _frac((secs % 60) * _S + sub, 9) + "s"
    minutes = secs // 60
    if minutes:
        text = f"{minutes % 60}m{text}"
        hours = minutes // 60
        if hours:
            text = f"{hours}h{text}"
    return sign + text
