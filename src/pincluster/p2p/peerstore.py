"""Known peers' addresses, and the ``peerstore`` file (spec §7.6).

The file is what Go writes: one multiaddr with ``/p2p/<id>`` per line; lines not starting with ``/`` are
ignored. We keep it as the bootstrap list: loaded at start, saved when it changes and at shutdown.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

from pincluster.config.peerstore import load_peerstore, save_peerstore
from pincluster.errors import InvalidInput
from pincluster.types.multiaddr import Multiaddr
from pincluster.types.peer import PeerID

log = logging.getLogger("pincluster.p2p")


def read_peerstore_file(path: str | os.PathLike[str]) -> list[Multiaddr]:
    """The file's addresses that name a peer (``/p2p/<id>``); others are logged and skipped."""
    out: list[Multiaddr] = []
    for ma in load_peerstore(Path(path)):
        if ma.peer_id is None:
            log.warning("peerstore %s: skipping %s: it has no /p2p/<peer id>", path, ma)
            continue
        out.append(ma)
    return out


def write_peerstore_file(path: str | os.PathLike[str], addrs: Iterable[Multiaddr]) -> None:
    """Write atomically, so a crash never leaves half a peerstore."""
    save_peerstore(Path(path), addrs)


class Peerstore:
    """Addresses per peer, in insertion order, without the ``/p2p/`` part; persisted when ``path`` is set."""

    def __init__(self, path: str | os.PathLike[str] | None = None, *, autosave: bool = True) -> None:
        self.path = Path(path) if path is not None else None
        self.autosave = autosave
        self._addrs: dict[PeerID, list[Multiaddr]] = {}

    def add_addrs(self, peer: PeerID, addrs: Iterable[Multiaddr]) -> bool:
        """Remember addresses of ``peer``; returns True (and saves) when something new was learnt."""
        known = self._addrs.setdefault(peer, [])
        changed = False
        for a in addrs:
            pid = a.peer_id
            if pid is not None and pid != peer:
                raise InvalidInput(f"address {a} belongs to {pid}, not to {peer}")
            bare = a.without_p2p()
            if not bare.protocols:
                continue
            if bare not in known:
                known.append(bare)
                changed = True
        if not known:
            del self._addrs[peer]
        if changed and self.autosave and self.path is not None:
            self.save()
        return changed

    def addrs(self, peer: PeerID) -> list[Multiaddr]:
        return list(self._addrs.get(peer, ()))

    def peers(self) -> list[PeerID]:
        return list(self._addrs)

    def remove_peer(self, peer: PeerID) -> None:
        if self._addrs.pop(peer, None) is not None and self.autosave and self.path is not None:
            self.save()

    def all_addrs(self) -> list[Multiaddr]:
        """Every address with its ``/p2p/<id>``, as the file holds them."""
        return [a.with_p2p(p) for p, lst in self._addrs.items() for a in lst]

    def load(self, path: str | os.PathLike[str] | None = None) -> int:
        """Merge the file's addresses in; returns how many lines were loaded."""
        src = Path(path) if path is not None else self.path
        if src is None:
            return 0
        loaded = read_peerstore_file(src)
        saved, self.autosave = self.autosave, False
        try:
            for ma in loaded:
                pid = ma.peer_id
                assert pid is not None
                self.add_addrs(pid, [ma])
        finally:
            self.autosave = saved
        return len(loaded)

    def save(self, path: str | os.PathLike[str] | None = None) -> None:
        dst = Path(path) if path is not None else self.path
        if dst is None:
            return
        write_peerstore_file(dst, self.all_addrs())
