"""Go time.Time JSON text and time.Duration text/parse (spec §0)."""

from __future__ import annotations

import pickle
import random
from datetime import UTC, datetime, timedelta, timezone

import pytest

from pincluster.errors import InvalidInput
from pincluster.types.gotime import (
    ZERO_TIME,
    GoTime,
    InvalidDuration,
    InvalidTime,
    format_duration,
    format_time,
    from_unix_nano,
    is_zero_time,
    parse_duration,
    parse_duration_ns,
    parse_time,
    to_gotime,
    unix_nano,
    unix_nano_text,
)


@pytest.mark.parametrize(
    "text",
    [
        "2024-05-06T10:11:12.123456789+02:00",
        "2025-01-01T12:00:00.123456789Z",
        "2025-01-01T12:00:00Z",
        "2025-01-01T12:00:00.12Z",
        "2025-01-01T12:00:00.000001Z",
        "2025-01-01T12:00:00.000000001-05:30",
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59.999999999Z",
    ],
)
def test_time_round_trip_is_byte_exact(text: str) -> None:
    assert format_time(parse_time(text)) == text


def test_time_formatting_rules() -> None:
    assert format_time(datetime(2025, 1, 1, 12, 0, 0, 120000, tzinfo=UTC)) == "2025-01-01T12:00:00.12Z"
    assert format_time(datetime(2025, 1, 1, 12, 0, 0, tzinfo=timezone(timedelta(hours=-7)))) == (
        "2025-01-01T12:00:00-07:00"
    )
    # offset zero is written Z whatever the tzinfo object is
    assert format_time(datetime(2025, 1, 1, tzinfo=timezone(timedelta(0), "GMT"))) == "2025-01-01T00:00:00Z"
    assert format_time(ZERO_TIME) == "0001-01-01T00:00:00Z"


def test_parse_time_accepts_go_variants_and_truncates_beyond_ns() -> None:
    t = parse_time("2025-01-01T12:00:00.1234567891234Z")  # Go cuts the fraction at 9 digits
    assert format_time(t) == "2025-01-01T12:00:00.123456789Z"
    assert parse_time("2025-01-01t12:00:00z") == datetime(2025, 1, 1, 12, tzinfo=UTC)
    assert parse_time("2025-01-01T12:00:00,5Z").microsecond == 500000


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "2025-01-01",
        "2025-01-01T12:00:00",  # no zone
        "2025-13-01T12:00:00Z",
        "2025-01-01T24:00:00Z",
        "2025-01-01T12:00:60Z",
        "2025-01-01T12:00:00+24:00",
        "2025-01-01T12:00:00.Z",
        " 2025-01-01T12:00:00Z",
    ],
)
def test_parse_time_rejects(bad: str) -> None:
    with pytest.raises(InvalidTime) as exc:
        parse_time(bad)
    assert isinstance(exc.value, InvalidInput)
    assert repr(bad) in str(exc.value)


def test_zero_time_and_gotime_nanoseconds() -> None:
    assert is_zero_time(ZERO_TIME)
    assert is_zero_time(parse_time("0001-01-01T00:00:00Z"))
    assert not is_zero_time(parse_time("0001-01-01T00:00:00.000000001Z"))
    assert not is_zero_time(datetime(2025, 1, 1, tzinfo=UTC))
    t = parse_time("2025-01-01T12:00:00.123456789Z")
    assert isinstance(t, GoTime) and t.nanosecond == 789
    assert not t.is_zero
    assert pickle.loads(pickle.dumps(t)).nanosecond == 789
    assert unix_nano(t) == 1735732800123456789
    back = from_unix_nano(unix_nano(t))
    assert format_time(back) == "2025-01-01T12:00:00.123456789Z"
    assert format_time(from_unix_nano(0, 3600)) == "1970-01-01T01:00:00+01:00"
    g = to_gotime(datetime(2025, 1, 1, tzinfo=UTC), nanosecond=5)
    assert format_time(g) == "2025-01-01T00:00:00.000000005Z"
    with pytest.raises(InvalidTime):
        to_gotime(datetime(2025, 1, 1))
    with pytest.raises(InvalidTime):
        format_time(datetime(2025, 1, 1))


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"),
        (1, "1ns"),
        (999, "999ns"),
        (1500, "1.5µs"),
        (250_000_000, "250ms"),
        (1_000_000_000, "1s"),
        (1_500_000_000, "1.5s"),
        (5_000_000_000, "5s"),
        (60_000_000_000, "1m0s"),
        (120_000_000_000, "2m0s"),
        (1_800_000_000_000, "30m0s"),
        (3_600_000_000_000, "1h0m0s"),
        (10_800_000_000_000, "3h0m0s"),
        (86_400_000_000_000, "24h0m0s"),
        (3_723_500_000_000, "1h2m3.5s"),
        (-2_000_000_000, "-2s"),
        (-1500, "-1.5µs"),
        (2**63 - 1, "2562047h47m16.854775807s"),
        (-(2**63), "-2562047h47m16.854775808s"),
    ],
)
def test_format_duration_matches_go(ns: int, text: str) -> None:
    assert format_duration(ns) == text
    assert parse_duration_ns(text) == ns


def test_format_duration_accepts_timedelta() -> None:
    assert format_duration(timedelta(minutes=2)) == "2m0s"
    assert format_duration(timedelta(hours=24)) == "24h0m0s"
    assert format_duration(timedelta(milliseconds=250)) == "250ms"


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("2m", 120_000_000_000),
        ("0h2m0s", 120_000_000_000),
        ("10m0s", 600_000_000_000),
        ("500ms", 500_000_000),
        ("1.5h", 5_400_000_000_000),
        ("1h30m", 5_400_000_000_000),
        ("300us", 300_000),
        ("300µs", 300_000),
        ("300μs", 300_000),
        ("+5s", 5_000_000_000),
        ("-1.5m", -90_000_000_000),
        ("0", 0),
        ("-0", 0),
        (".5s", 500_000_000),
        ("1.s", 1_000_000_000),
        ("1h1m1s1ms1us1ns", 3_661_001_001_001),
    ],
)
def test_parse_duration_accepts_any_go_duration(text: str, ns: int) -> None:
    assert parse_duration_ns(text) == ns


def test_parse_duration_to_timedelta_truncates_below_microsecond() -> None:
    assert parse_duration("1m30s") == timedelta(seconds=90)
    assert parse_duration("1.5µs") == timedelta(microseconds=1)
    assert parse_duration("-1.5µs") == timedelta(microseconds=-1)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("", 'time: invalid duration ""'),
        ("1", 'time: missing unit in duration "1"'),
        ("s", 'time: invalid duration "s"'),
        ("1x", 'time: unknown unit "x" in duration "1x"'),
        ("1d", 'time: unknown unit "d" in duration "1d"'),
        (".s", 'time: invalid duration ".s"'),
        ("-", 'time: invalid duration "-"'),
        ("1h 2m", 'time: unknown unit "h " in duration "1h 2m"'),
        ("9223372036854775808ns", 'time: invalid duration "9223372036854775808ns"'),
        ("3000000h", 'time: invalid duration "3000000h"'),
    ],
)
def test_parse_duration_rejects_with_go_messages(bad: str, message: str) -> None:
    with pytest.raises(InvalidDuration) as exc:
        parse_duration_ns(bad)
    assert str(exc.value) == message


def test_unix_nano_text_is_format_time_of_the_instant() -> None:
    """The listing's fast path for operation times gives Go's text, as the datetime path does."""
    rnd = random.Random(5)
    second = 1_764_000_000
    values = [0, 1, 999, 1_000, 1_000_000_000, second * 10**9, second * 10**9 + 120_000_000,
              second * 10**9 + 123_456_789, second * 10**9 + 100, 253_402_300_799_999_999_999,
              -1, -(10**18)]
    values += [rnd.randrange(0, 4_102_444_800 * 10**9) for _ in range(3000)]
    values += [second * 10**9 + rnd.choice([0, 10**8, 10**3, 1]) * rnd.randrange(10) for _ in range(300)]
    for ns in values:
        assert unix_nano_text(ns) == format_time(from_unix_nano(ns)), ns
