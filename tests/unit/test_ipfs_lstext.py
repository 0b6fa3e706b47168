"""kubo's ``ls`` text pieces: Go's tabwriter, ``formatMode``, ``formatModTime``, ``EscNonPrint``.

The whole output is compared with kubo's own CLI in tests/integration/test_ipfs_api_as_kubo.py; these pin the
pieces where kubo is not built."""

from __future__ import annotations

from datetime import UTC, datetime

from pincluster.ipfs.lstext import LsPrinter, _esc_non_print, format_mod_time, format_mode
from pincluster.types.gotext import tabwrite


def test_tabwrite_aligns_columns_per_block_of_lines_with_cells() -> None:
    assert tabwrite(["a\tbb\tc", "aaa\tb\tc"], 1) == ["a   bb c", "aaa b  c"]
    assert tabwrite(["Qm1\t6\tx", "dir:", "Qm22\t-\ty/"], 1) == ["Qm1 6 x", "dir:", "Qm22 - y/"]
    assert tabwrite(["Qm1\t6\tx"], 10) == ["Qm1       6         x"]


def test_modes_read_as_unix_ls_does() -> None:
    assert format_mode(0o755 | 1 << 31) == "drwxr-xr-x"
    assert format_mode(0o755 | 1 << 23) == "-rwsr-xr-x"  # setuid with the owner's x
    assert format_mode(0o644 | 1 << 23) == "-rwSr--r--"  # without
    assert format_mode(0o777 | 1 << 31 | 1 << 20) == "drwxrwxrwt"
    assert format_mode(0o777 | 1 << 27) == "lrwxrwxrwx"


def test_mod_times_recent_old_and_none() -> None:
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    assert format_mod_time("0001-01-01T00:00:00Z", now) == "-"
    assert format_mod_time("2026-11-20T10:30:05.5Z", now) == "Nov 20 10:30"
    assert format_mod_time("2023-11-14T22:13:20.123456789Z", now) == "Nov 14  2023"
    assert format_mod_time("2026-05-25T12:00:00Z", now) == "May 25  2026"  # six months and a day ago


def test_names_with_unprintable_characters_are_escaped_as_go_quotes_them() -> None:
    assert _esc_non_print("plain \u00e9t\u00e9.txt") == "plain \u00e9t\u00e9.txt"
    assert _esc_non_print('a\\b"\x01\n\u00a0') == 'a\\\\b"\\x01\\n\\u00a0'


def test_printer_breaks_between_paths_and_marks_directories() -> None:
    p = LsPrinter(2, headers=True, size=True, long=False, stream=False, now=datetime.now(UTC))
    objects = [{"Hash": "/ipfs/A", "Links": [{"Name": "d", "Hash": "Qm1", "Size": 0, "Type": 1},
                                              {"Name": "file", "Hash": "Qm22", "Size": 12, "Type": 2}]},
               {"Hash": "B", "Links": []}]
    assert p.lines(objects) == ["/ipfs/A:", "Hash Size Name", "Qm1  -    d/", "Qm22 12   file", "", "B:",
                                "Hash Size Name"]
