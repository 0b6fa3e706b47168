"""The config folder's execution lock: one ``ipfs-cluster-service`` process per folder.

An advisory ``flock`` on ``<folder>/cluster.lock``. The kernel drops it when the process dies, so a crash
never leaves a stale lock behind; the file itself is left in place (deleting it would race with a new
locker). The error text is IPFS Cluster's (spec §6.5), which users and scripts already know.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from pincluster.errors import LockError

LOCK_FILE = "cluster.lock"


def _message(path: Path, reason: str) -> str:
    return (
        f"lock {path}: {reason}. If no other ipfs-cluster-service process is running, remove {path}, "
        "or make sure that the config folder is writable for the user running ipfs-cluster-service."
    )


class ClusterLock:
    """``with ClusterLock(folder): …`` holds the lock; ``LockError`` if another process has it."""

    def __init__(self, folder: Path | str) -> None:
        self.folder = Path(folder).expanduser()
        self.path = self.folder / LOCK_FILE
        self._fd: int | None = None

    @property
    def locked(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock without waiting; creates the folder (0700) if needed."""
        if self._fd is not None:
            return
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as err:
            raise LockError(_message(self.path, err.strerror or str(err)))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise LockError(_message(self.path, "someone else has the lock"))
        self._fd = fd
        try:  # the holder's pid helps whoever finds the file; failure to write it is harmless
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError:
            pass

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> ClusterLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
