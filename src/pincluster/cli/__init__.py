"""Command-line programs (``ipfs-cluster-service``, ``ipfs-cluster-ctl``) and what they share.

Errors follow IPFS Cluster: one line ``error <doing>: <err>`` on stderr and exit status 1.
"""

from __future__ import annotations

import sys
from typing import IO, Any, NoReturn

import click


class CLIError(click.ClickException):
    """Printed as ``error <doing>: <err>``; exits 1."""

    exit_code = 1

    def __init__(self, doing: str, err: object) -> None:
        super().__init__(f"error {doing}: {err}")

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(self.format_message(), err=True)


def fail(doing: str, err: object) -> NoReturn:
    """Stop the command with ``error <doing>: <err>`` and exit 1."""
    raise CLIError(doing, err)


def prompt_line(text: str) -> str:
    """Print ``text`` (no newline) on stdout and read one line from stdin ("" at end of input)."""
    sys.stdout.write(text)
    sys.stdout.flush()
    line = sys.stdin.readline()
    return line.rstrip("\r\n")


def prompt_yes_no(question: str, tries: int = 3) -> bool:
    """Ask ``question [y/n]: ``: y/Y is yes, n/N or empty is no; anything else asks again, up to ``tries``."""
    for _ in range(tries):
        answer = prompt_line(f"{question} [y/n]: ").strip()
        if answer in ("y", "Y"):
            return True
        if answer in ("n", "N", ""):
            return False
    return False


def stdin_is_terminal() -> bool:
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False
