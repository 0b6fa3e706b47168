"""Go's standard text rules that several of our outputs must follow byte for byte: ``strconv.Quote`` (kubo's and
urfave's messages, kubo's ``EscNonPrint``), ``strconv.ParseBool`` (query parameters, config values, flags) and
``text/tabwriter`` (``ipfs ls``, urfave's help). One copy of each, whatever prints through it."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["GO_FALSE", "GO_TRUE", "go_escape", "go_quote", "parse_go_bool", "tabwrite"]

#: What ``strconv.ParseBool`` reads as true, and as false (anything else is an error).
GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})

_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def parse_go_bool(text: str) -> bool | None:
    """``strconv.ParseBool``: True, False, or None when ``text`` is neither."""
    return True if text in GO_TRUE else False if text in GO_FALSE else None


def go_escape(text: str, quote: str = '"') -> str:
    """The body of Go's ``strconv.Quote``: ``\\``, ``quote`` and unprintable characters escaped as Go escapes
    them (``\\n``, ``\\x01``, ``\\u00a0``, ``\\U0001f600``), the rest as it is (``quote=""`` leaves ``"``)."""
    if "\\" not in text and (not quote or quote not in text) and text.isprintable():
        return text
    out = []
    for ch in text:
        code = ord(ch)
        if ch == "\\" or (quote and ch == quote):
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        elif ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        else:
            out.append(f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out)


def go_quote(text: str) -> str:
    """Go's ``strconv.Quote`` (``%q`` of a string)."""
    return '"' + go_escape(text) + '"'


def tabwrite(lines: Sequence[str], minwidth: int, padding: int = 1) -> list[str]:
    """Go's ``tabwriter.NewWriter(w, minwidth, tabwidth, padding, ' ', 0)`` over ``lines`` (without their
    newlines; with spaces as padding the tab width plays no part).

    A cell is text ended by a tab; the text after a line's last tab is not part of a column. A column is
    aligned over each block of consecutive lines that have a cell in it, to the widest cell plus ``padding``
    and at least ``minwidth``; within a block the next column is aligned the same way (Go's ``format``)."""
    rows = [line.split("\t") for line in lines]
    widths: list[list[int]] = [[0] * (len(r) - 1) for r in rows]

    def fmt(start: int, end: int, col: int) -> None:
        i = start
        while i < end:
            if col >= len(rows[i]) - 1:
                i += 1
                continue
            j, width = i, minwidth
            while j < end and col < len(rows[j]) - 1:
                width = max(width, len(rows[j][col]) + padding)
                j += 1
            for k in range(i, j):
                widths[k][col] = width
            fmt(i, j, col + 1)
            i = j

    fmt(0, len(rows), 0)
    return ["".join(c.ljust(w) for c, w in zip(r, ws, strict=False)) + r[-1]
            for r, ws in zip(rows, widths, strict=True)]
