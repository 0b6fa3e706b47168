"""The config folder's execution lock: one ``ipfs-cluster-service`` process per folder.

``<folder>/cluster.lock``, locked the way IPFS Cluster (Go) locks it, so that the two programs also exclude
each other on a folder moved from one to the other: a POSIX record lock (``fcntl F_SETLK`` on the whole
file, what Go's go4.org/lock takes) on a file left **empty** (Go refuses to lock a lock file that has content).
An advisory ``flock`` is taken as well, which is what earlier pincluster releases took. The kernel drops both
when the process dies, so a crash never leaves a stale lock behind; the file itself is left in place (deleting
it would race with a new locker). A POSIX lock belongs to the process and goes away when *any* descriptor of
the file is closed, so a second lock of the same folder in this process is refused before the file is opened
(as Go's lock does). The error text is IPFS Cluster's (spec §6.5), which users and scripts already know.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path
from types import TracebackType

from pincluster.errors import LockError

LOCK_FILE = "cluster.lock"

_held: set[Path] = set()  # lock files this process holds
_held_guard = threading.Lock()


def _message(path: Path, reason: str) -> str:
    return (
        f"lock {path}: {reason}. If no other ipfs-cluster-service process is running, remove {path}, "
        "or make sure that the config folder is writable for the user running ipfs-cluster-service."
    )


class ClusterLock:
    """``with ClusterLock(folder): …`` holds the lock; ``LockError`` if another process (or another holder in
    this one) has it."""

    def __init__(self, folder: Path | str) -> None:
        self.folder = Path(os.path.abspath(Path(folder).expanduser()))
        self.path = self.folder / LOCK_FILE
        self._fd: int | None = None

    @property
    def locked(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock without waiting; creates the folder (0700) if needed."""
        if self._fd is not None:
            return
        with _held_guard:
            if self.path in _held:
                raise LockError(_message(self.path, "someone else has the lock"))
            try:
                self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as err:
                raise LockError(_message(self.path, err.strerror or str(err)))
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # pincluster before this release
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # IPFS Cluster (Go): fcntl F_SETLK
            except OSError:
                os.close(fd)
                raise LockError(_message(self.path, "someone else has the lock"))
            try:  # empty, for Go's lock (an earlier pincluster wrote its pid here)
                os.ftruncate(fd, 0)
            except OSError:
                pass
            _held.add(self.path)
            self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with _held_guard:
            _held.discard(self.path)
            try:
                fcntl.lockf(fd, fcntl.LOCK_UN)
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
