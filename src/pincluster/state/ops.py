"""Offline state operations behind ``ipfs-cluster-service state export|import|cleanup|upgrade`` (spec §11).

They run while the daemon is stopped (the caller holds ``cluster.lock``) and work on the Raft data folder
that ``consensus.raft`` loads at start (``raft/`` by default):

- ``state.sqlite``: the applied pinset, tagged with the Raft index of the last batch written to it;
- ``snapshot.sqlite``: the last Raft snapshot, a copy of the state plus the Raft metadata PySyncObj needs
  (last/previous log entries and the peerset);
- ``journal`` (entries after the snapshot) and ``peers.json`` (the last known Raft peerset).

At start the Raft component opens ``state.sqlite``, loads ``snapshot.sqlite`` into it only when the snapshot is
ahead, then replays journal entries above the state's index. ``import`` therefore builds a whole new data
folder, as Go does: a state and a snapshot at Raft index 2 (term 0) whose peerset is this peer plus the
peerstore's peers whose Raft address is known, and no journal, so nothing old can be replayed over it. The new
folder is built beside the old one and swapped in only when the input was read completely: unlike Go, which
cleans the state before reading, a bad import file leaves the previous state untouched.

Everything streams: export pages through the store; import reads the input in chunks and writes in batches.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import msgspec

from pincluster.config import ServiceConfig, load_config, load_identity
from pincluster.config.identity import IDENTITY_JSON
from pincluster.config.peerstore import load_peerstore
from pincluster.durable import fsync_parent
from pincluster.errors import InvalidInput, StateError
from pincluster.state import store as state_store
from pincluster.types.codec import iter_json_values, pin_from_state, pin_to_state, to_json
from pincluster.types.models import Pin
from pincluster.types.peer import PeerID

log = logging.getLogger("pincluster.raft")

#: File names inside the Raft data folder (the same as ``consensus.raft``'s).
STATE_FILE = "state.sqlite"
DUMP_FILE = "snapshot.sqlite"
JOURNAL_FILE = "journal"
PEERS_FILE = "peers.json"

#: PySyncObj's NO_OP command (``_COMMAND_TYPE.NO_OP`` packed as one byte): the log entries an imported
#: snapshot records as its last two, at indexes 1 and 2 of term 0.
_NO_OP = b"\x01"
IMPORT_INDEX = 2
IMPORT_TERM = 0

_READ_CHUNK = 256 * 1024
_EXPORT_PAGE = 2000
_EXPORT_FLUSH = 64 * 1024


class StateImportError(InvalidInput):
    """The import input is not a stream of JSON pins, or an override is invalid (the old state is kept)."""


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What ``import_state`` did."""

    read: int  #: JSON values read (duplicates of one CID count each time)
    pins: int  #: pins in the new state
    data_folder: Path
    backup: Path | None  #: where the previous Raft folder went (None: there was none, or it held no state)
    members: tuple[str, ...]  #: the Raft peerset written into the snapshot (``peer@host:port``)


@dataclass(frozen=True, slots=True)
class UpgradeResult:
    """What ``upgrade_data_folder`` did: ``found == to`` means the state was already current."""

    data_folder: Path
    found: int | None  #: lowest format version found (None: no state at all)
    to: int
    backup: Path | None


# -- config helpers ------------------------------------------------------------------------------------------


def _load(config_folder: Path) -> ServiceConfig:
    cfg = load_config(config_folder)
    cfg.require_supported_consensus()
    return cfg


def raft_data_folder(config_folder: Path) -> Path:
    """The Raft data folder of the peer configured in ``config_folder``."""
    return _load(Path(config_folder)).raft_data_path()


def self_raft_spec(cfg: ServiceConfig, peer_id: str) -> str:
    """This peer's Raft member spec exactly as the daemon computes it at start (same host and port)."""
    from pincluster.consensus.transport import PeerNode
    from pincluster.daemon import advertise_host
    host, port = cfg.raft.listen_multiaddress.tcp_host_port()
    if not port:
        raise InvalidInput("consensus.raft.listen_multiaddress needs a fixed TCP port")
    return PeerNode.spec(peer_id, advertise_host(str(host), cfg), int(port))


# -- export --------------------------------------------------------------------------------------------------


def _state_source(data: Path) -> Path | None:
    """The database holding the newest pinset in ``data``: the state, or the snapshot when it is ahead."""
    state_store.refuse_go_raft_data(data)
    state, dump = data / STATE_FILE, data / DUMP_FILE
    candidates = [p for p in (state, dump) if p.is_file()]
    if not candidates:
        return None
    if len(candidates) == 1:
        return candidates[0]
    try:
        snap_index = _applied_index(dump)
    except state_store.StateVersionError:
        raise
    except StateError as exc:
        log.warning("ignoring the Raft snapshot: %s", exc)
        return state
    return dump if snap_index > _applied_index(state) else state


def _applied_index(path: Path) -> int:
    """The Raft index a state database (or a snapshot) in a data folder holds the pinset of."""
    if path.name == DUMP_FILE:
        return state_store.read_snapshot_info(path).applied_index
    probe = state_store.SQLiteStore(path)
    try:
        return probe.applied_index
    finally:
        probe.close()


def _pages_readonly(path: Path, page_size: int) -> Iterator[list[tuple[bytes, bytes]]]:
    """Key-ordered pages of a snapshot file, opened read-only so that exporting never changes it."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        after = b""
        while True:
            rows = [(bytes(k), bytes(v)) for k, v in conn.execute(
                "SELECT key, value FROM pins WHERE key > ? ORDER BY key LIMIT ?", (after, page_size))]
            yield rows
            if len(rows) < page_size:
                return
            after = rows[-1][0]
    except sqlite3.DatabaseError as exc:
        raise StateError(f"cannot read the snapshot {path}: {exc}") from exc
    finally:
        conn.close()


def _pages_store(path: Path, page_size: int) -> Iterator[list[tuple[bytes, bytes]]]:
    st = state_store.SQLiteStore(path)  # checks the format version; recovers a WAL left by a crash
    try:
        after: bytes | None = None
        while True:
            rows = st.page(after, page_size)
            yield rows
            if len(rows) < page_size:
                return
            after = rows[-1][0]
    finally:
        st.close()


def iter_state_pins(data: Path, page_size: int = _EXPORT_PAGE) -> Iterator[Pin]:
    """Every pin of the offline state in ``data``, in CID byte order, one page in memory at a time.

    Refuses a state of another format version (``StateVersionError`` names both and the upgrade command).
    """
    src = _state_source(Path(data))
    if src is None:
        return
    pages = _pages_readonly(src, page_size) if src.name == DUMP_FILE else _pages_store(src, page_size)
    for rows in pages:
        for _key, value in rows:
            yield pin_from_state(value)


def export_pins(data: Path, out: IO[bytes]) -> int:
    """Write the pinset in ``data`` to ``out`` as NDJSON Pins (Go's ``json.Encoder`` lines); returns the count."""
    n = 0
    buf: list[bytes] = []
    size = 0
    for pin in iter_state_pins(data):
        line = to_json(pin) + b"\n"
        buf.append(line)
        size += len(line)
        n += 1
        if size >= _EXPORT_FLUSH:
            out.write(b"".join(buf))
            buf.clear()
            size = 0
    if buf:
        out.write(b"".join(buf))
    out.flush()
    return n


def export_state(config_folder: Path, out: IO[bytes]) -> int:
    """``state export``: the configured peer's pinset to ``out``; returns the number of pins written."""
    cfg = _load(Path(config_folder))
    return export_pins(cfg.raft_data_path(), out)


def journal_ahead(config_folder: Path) -> tuple[int, int] | None:
    """(applied index of the pinset an offline command reads, last committed Raft entry of the journal) when
    the journal holds committed entries that pinset lacks (None otherwise).

    A running peer writes committed entries to its state soon after they commit, and may skip the state's own
    fsync for entries already on the disk in the journal (``RaftConsensus._writer_loop``); after a crash the
    peer applies them again at start. An offline command reads the state (or the snapshot) only, so it can miss
    them: starting the peer once brings the state up to date."""
    from pincluster.consensus.journal import committed_entries
    from pincluster.consensus.raft import JOURNAL_FILE

    data = _load(Path(config_folder)).raft_data_path()
    src = _state_source(data)
    if src is None:
        return None
    applied = _applied_index(src)
    entries = committed_entries(str(data / JOURNAL_FILE))
    return (applied, entries[1]) if entries is not None and entries[1] > applied else None


# -- import --------------------------------------------------------------------------------------------------


def parse_allocations(text: str | Sequence[str]) -> tuple[PeerID, ...]:
    """``--allocs p1,p2``: peer IDs, validated (empty means "keep the pins' own allocations")."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out: list[PeerID] = []
    for item in items:
        item = item.strip()
        if not item:
            continue
        try:
            pid = PeerID.decode(item)
        except InvalidInput as exc:
            raise StateImportError(f"--allocations: {exc}") from None
        if pid not in out:
            out.append(pid)
    return tuple(out)


def _chunks(src: IO[bytes]) -> Iterator[bytes]:
    while True:
        chunk = src.read(_READ_CHUNK)
        if not chunk:
            return
        yield chunk


def read_pins(
    src: IO[bytes], *, rmin: int = 0, rmax: int = 0, allocations: Sequence[PeerID] = ()
) -> Iterator[Pin]:
    """Pins from any stream of JSON values (NDJSON, pretty-printed, concatenated), with the import overrides:
    ``rmin``/``rmax`` replace the factors when > 0, ``allocations`` replaces the allocations when not empty.

    A missing ``type`` is a normal pin and a missing ``max_depth`` a recursive one (Go's zero values would make
    a "bad type" direct pin: QUIRK not copied, spec §11.2).
    """
    if rmin < 0 or rmax < 0:
        raise StateImportError("--replication-min and --replication-max must be 0 (keep) or positive")
    if rmin and rmax and rmin > rmax:
        raise StateImportError(f"--replication-min ({rmin}) is greater than --replication-max ({rmax})")
    allocs = tuple(allocations)
    for pin in iter_json_values(_chunks(src), Pin):
        changes: dict[str, object] = {}
        if rmin > 0:
            changes["replication_factor_min"] = rmin
        if rmax > 0:
            changes["replication_factor_max"] = rmax
        if allocs:
            changes["allocations"] = allocs
        yield pin.replace(**changes) if changes else pin


def _known_raft_specs(data: Path) -> dict[str, str]:
    """Peer ID → Raft spec from the last saved peersets (current folder first, then the newest backup)."""
    out: dict[str, str] = {}
    for folder in (data, data.with_name(data.name + ".old.0")):
        path = folder / PEERS_FILE
        try:
            members = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(members, list):
            for m in members:
                if isinstance(m, str) and "@" in m:
                    out.setdefault(m.partition("@")[0], m)
    return out


def import_members(cfg: ServiceConfig, peer_id: str, data: Path) -> list[str]:
    """The peerset an imported snapshot starts with: this peer plus the peerstore's peers (as Go does),
    for those whose Raft address is known from a saved peerset; others must rejoin with ``--bootstrap``."""
    me = self_raft_spec(cfg, peer_id)
    known = _known_raft_specs(data)
    members = {me}
    for addr in load_peerstore(cfg.peerstore_path()):
        pid = addr.peer_id
        if pid is None or str(pid) == peer_id:
            continue
        spec = known.get(str(pid))
        if spec is None:
            log.warning(
                "peer %s is in the peerstore but its Raft address is unknown: it is left out of the imported "
                "peerset; start it with --bootstrap to join", pid,
            )
            continue
        members.add(spec)
    return sorted(members)


def _entry(idx: int) -> bytes:
    return msgspec.msgpack.encode([_NO_OP, idx, IMPORT_TERM])


def write_data_folder(dest: Path, pins: Iterable[Pin], members: Sequence[str]) -> tuple[int, int]:
    """Create the Raft data folder ``dest`` (must not exist) holding ``pins``: the state, a snapshot at
    index ``IMPORT_INDEX`` with ``members`` as peerset, and ``peers.json``. Returns (values read, pins stored)."""
    dest.mkdir(parents=True, mode=0o700)
    store = state_store.SQLiteStore(dest / STATE_FILE)
    read = 0

    def items() -> Iterator[tuple[bytes, bytes]]:
        nonlocal read
        for pin in pins:
            read += 1
            yield pin.cid.bytes, pin_to_state(pin)

    try:
        store.bulk_load(items())
        # Tag the state with the snapshot's index: a peer that receives this snapshot from us (a new member
        # catching up) loads it because its own empty state is behind, and a restart does not reload it.
        store.apply(IMPORT_INDEX, IMPORT_TERM, [])
        extra = {
            "raft_last": _entry(IMPORT_INDEX),
            "raft_prev": _entry(IMPORT_INDEX - 1),
            "raft_cluster": json.dumps(sorted(members)).encode(),
        }
        info = store.snapshot_to(dest / DUMP_FILE, extra)
    finally:
        store.close()
    (dest / PEERS_FILE).write_text(json.dumps(sorted(members)))
    return read, info.count


def cleanup_data_folder(data: Path, backups_rotate: int) -> Path | None:
    """Rotate ``data`` to ``<data>.old.0`` (keeping ``backups_rotate``), or delete it if it holds no state."""
    from pincluster.consensus.raft import clean_raft_folder

    return clean_raft_folder(data, backups_rotate)


def import_pins(
    cfg: ServiceConfig,
    peer_id: str,
    src: IO[bytes],
    *,
    rmin: int = 0,
    rmax: int = 0,
    allocations: Sequence[PeerID] = (),
) -> ImportResult:
    """Replace the offline pinset of the peer ``cfg`` describes with the pins read from ``src``."""
    return replace_pinset(cfg, peer_id, read_pins(src, rmin=rmin, rmax=rmax, allocations=allocations))


def replace_pinset(cfg: ServiceConfig, peer_id: str, pins: Iterable[Pin]) -> ImportResult:
    """Replace the offline pinset of the peer ``cfg`` describes with ``pins`` (``state import``; the bench
    loads large pinsets this way): a new Raft data folder, the old one kept as a backup."""
    data = cfg.raft_data_path()
    members = import_members(cfg, peer_id, data)
    staging = data.with_name(data.name + ".import")
    if staging.exists():
        shutil.rmtree(staging)
    try:
        read, count = write_data_folder(staging, pins, members)
    except InvalidInput as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, StateImportError):
            raise
        raise StateImportError(str(exc)) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    backup = cleanup_data_folder(data, cfg.raft.backups_rotate)
    os.replace(staging, data)
    fsync_parent(data)
    log.debug("imported %d pins into %s (peerset %s)", count, data, ", ".join(members))
    return ImportResult(read=read, pins=count, data_folder=data, backup=backup, members=tuple(members))


def import_state(
    config_folder: Path,
    src: IO[bytes],
    *,
    rmin: int = 0,
    rmax: int = 0,
    allocations: Sequence[PeerID] = (),
) -> ImportResult:
    """``state import``: load the config and identity of ``config_folder`` and run :func:`import_pins`."""
    folder = Path(config_folder)
    cfg = _load(folder)
    ident = load_identity(folder / IDENTITY_JSON)
    return import_pins(cfg, str(ident.peer_id), src, rmin=rmin, rmax=rmax, allocations=allocations)


def cleanup_state(config_folder: Path) -> tuple[Path, Path | None]:
    """``state cleanup``: returns (data folder, backup path or None when it was deleted / absent)."""
    cfg = _load(Path(config_folder))
    data = cfg.raft_data_path()
    return data, cleanup_data_folder(data, cfg.raft.backups_rotate)


# -- upgrade -------------------------------------------------------------------------------------------------


def _version_of(p: Path) -> int | None:
    """The format version of the state database ``p`` (None: not there, or no state in it yet)."""
    if not p.is_file():
        return None
    try:
        return state_store.read_format_version(p)
    except StateError:
        raise
    except Exception as exc:  # sqlite3.DatabaseError and friends: not a state database
        raise StateError(f"cannot read the format version of {p}: {exc}") from exc


def _versions(data: Path) -> dict[Path, int]:
    out: dict[Path, int] = {}
    for name in (STATE_FILE, DUMP_FILE):
        v = _version_of(data / name)
        if v is not None:
            out[data / name] = v
    return out


def refuse_unreadable_state(data: Path) -> None:
    """Raise, before a daemon opens anything, when the Raft folder ``data`` holds state this release cannot
    run on: IPFS Cluster's (Go) Raft files, or a state or snapshot of another format version (the error names
    both versions and the command to run)."""
    state_store.refuse_go_raft_data(data)
    # the snapshot first: it has a rollback journal, so reading it leaves no file behind (the state's WAL would)
    for path in (data / DUMP_FILE, data / STATE_FILE):
        try:
            v = _version_of(path)
        except StateError:
            continue  # not readable from here (read-only): opening it to run (recovery included) decides
        if v is not None and v != state_store.FORMAT_VERSION:
            raise state_store.StateVersionError(path, v, state_store.FORMAT_VERSION)


def backup_data_folder(data: Path, now: Callable[[], float] = time.time) -> Path:
    """Copy ``data`` to ``<data>.bak.<UTC timestamp>`` (a new name each time; never rotated away)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now()))
    dest = data.with_name(f"{data.name}.bak.{stamp}")
    n = 1
    while dest.exists():
        dest = data.with_name(f"{data.name}.bak.{stamp}.{n}")
        n += 1
    shutil.copytree(data, dest)
    return dest


def upgrade_data_folder(data: Path) -> UpgradeResult:
    """Bring the state and the snapshot in ``data`` to this release's format version.

    Nothing to do → the result says so. Otherwise the folder is first copied to ``<data>.bak.<timestamp>``,
    then ``state.store.upgrade`` runs the migrations on the snapshot and on the state, each step in its own
    transaction. A version newer than this release, or one with no migration path, raises
    ``StateVersionError`` before anything is touched.
    """
    state_store.refuse_go_raft_data(data)
    target = state_store.FORMAT_VERSION
    versions = _versions(data)
    if not versions:
        return UpgradeResult(data, None, target, None)
    for path, v in versions.items():
        if v > target or any(step not in state_store.MIGRATIONS for step in range(v, target)):
            raise state_store.StateVersionError(path, v, target)
    lowest = min(versions.values())
    if all(v == target for v in versions.values()):
        return UpgradeResult(data, lowest, target, None)
    backup = backup_data_folder(data)
    log.info("state in %s backed up to %s before upgrading", data, backup)
    # The snapshot first: it is what a restart (or a new member) loads when it is ahead of the state.
    for path in sorted(versions, key=lambda p: p.name != DUMP_FILE):
        if versions[path] != target:
            state_store.upgrade(path)
    return UpgradeResult(data, lowest, target, backup)
