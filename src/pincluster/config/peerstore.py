"""The ``peerstore`` file: known peer addresses, one multiaddr per line (spec §7.6).

Written at ``init`` and on clean shutdown, read at start to bootstrap. A bad line is skipped with a warning
rather than stopping the peer: the file is a cache of addresses, not configuration.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from pincluster.config.service import write_private_file
from pincluster.errors import ConfigError, InvalidInput
from pincluster.types.multiaddr import Multiaddr

log = logging.getLogger("pincluster.config")

PEERSTORE = "peerstore"


def parse_peerstore(text: str, source: str = "peerstore") -> list[Multiaddr]:
    """Multiaddrs from the file's text; lines not starting with ``/`` are ignored, duplicates dropped."""
    out: list[Multiaddr] = []
    seen: set[Multiaddr] = set()
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line.startswith("/"):
            continue
        try:
            addr = Multiaddr(line)
        except InvalidInput as err:
            log.warning("%s:%d: skipping invalid multiaddress: %s", source, lineno, err)
            continue
        if addr not in seen:
            seen.add(addr)
            out.append(addr)
    return out


def load_peerstore(path: Path | str) -> list[Multiaddr]:
    """Addresses from the peerstore file; a missing file is an empty peerstore."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    except OSError as err:
        raise ConfigError(str(p), f"cannot read the peerstore: {err}")
    return parse_peerstore(text, str(p))


def format_peerstore(addrs: Iterable[Multiaddr]) -> str:
    lines = [str(a) for a in addrs]
    return "".join(line + "\n" for line in lines)


def save_peerstore(path: Path | str, addrs: Iterable[Multiaddr]) -> int:
    """Replace the peerstore atomically (a crash never leaves half a file); returns the number written."""
    unique = list(dict.fromkeys(addrs))
    try:
        write_private_file(Path(path), format_peerstore(unique))
    except OSError as err:
        raise ConfigError(str(path), f"cannot write the peerstore: {err}")
    return len(unique)
