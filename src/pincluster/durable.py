"""Durability helpers shared by the stores that write files (state, Raft journal, blockstore)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

__all__ = ["fsync_dir", "fsync_parent"]


def fsync_dir(directory: str | Path) -> None:
    """Make a rename or a new file in ``directory`` durable: POSIX stores a directory entry in the directory,
    so a file's own fsync does not survive a power loss with its name unless the directory is synced too.
    File systems that cannot sync a directory (EINVAL, ENOTSUP: fsync(2)) are let through; other errors
    are raised."""
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def fsync_parent(path: str | Path) -> None:
    """``fsync_dir`` of the folder holding ``path`` (after a rename to ``path``)."""
    fsync_dir(os.path.dirname(os.path.abspath(path)))
