"""``ipfs-cluster-service state export|import|cleanup|upgrade`` (spec §6.2, §11).

All of them run offline: they take the folder lock (so they refuse to run next to a daemon) and work on the
Raft data folder through ``pincluster.state.ops``. ``import`` and ``cleanup`` ask before replacing or removing
the pinset unless forced; without a terminal to ask on, they refuse and say to use ``--force``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO

import click

from pincluster.cli import fail, prompt_yes_no, stdin_is_terminal
from pincluster.cli.service import ServiceContext, cli, pass_service
from pincluster.errors import PinclusterError

IMPORT_PROMPT = "The pinset (state) of this peer will be replaced. Continue?"
CLEANUP_PROMPT = "The peer state will be removed.  Existing pins may be lost. Continue?"
STDIN_NOTICE = "reading from stdin, Ctrl-D to finish"


def _confirm(doing: str, question: str, force: bool) -> bool:
    """True to go on: forced, or "y" at the prompt. No terminal and no --force → exit 1 saying what to do."""
    if force:
        return True
    if not stdin_is_terminal():
        fail(doing, "this replaces the peer's state and stdin is not a terminal to confirm it; "
                    "run again with --force to go ahead without asking")
    return prompt_yes_no(question)


@cli.group()
def state() -> None:
    """Export, import, clean up or upgrade this peer's pinset (the daemon must be stopped)."""


@state.command("export")
@click.option("-f", "--file", "file_", default="", metavar="PATH", help="Write to this file (default: stdout).")
@pass_service
def export_cmd(svc: ServiceContext, file_: str) -> None:
    """Write the pinset as one JSON pin per line."""
    from pincluster.state.ops import export_state, journal_ahead

    lock = svc.take_lock()
    try:
        ahead = journal_ahead(svc.config_dir)
        if ahead is not None:
            click.echo(f"warning: the Raft journal holds committed entries up to {ahead[1]} that the state "
                       f"(at entry {ahead[0]}) does not have yet, so they are not in this export; start the "
                       "peer once (it applies them), stop it, and export again", err=True)
        if file_:
            path = Path(file_).expanduser()
            tmp = path.with_name(path.name + ".tmp")
            try:
                with open(tmp, "wb") as f:
                    n = export_state(svc.config_dir, f)
                tmp.replace(path)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            click.echo(f"exported {n} pins to {path}", err=True)
        else:
            export_state(svc.config_dir, sys.stdout.buffer)
    except PinclusterError as err:
        fail("exporting state", err)
    except OSError as err:
        fail("exporting state", err)
    finally:
        lock.release()


def _open_input(file_: str | None) -> IO[bytes]:
    if file_ is None or file_ == "-":
        click.echo(STDIN_NOTICE)
        return sys.stdin.buffer
    return open(Path(file_).expanduser(), "rb")


@state.command("import")
@click.argument("file_", metavar="[FILE]", required=False)
@click.option("-f", "--force", is_flag=True, help="Replace the pinset without asking.")
@click.option("--replication-min", "--rmin", "rmin", type=int, default=0, show_default=True,
              help="Set every pin's replication factor min (0 keeps the file's).")
@click.option("--replication-max", "--rmax", "rmax", type=int, default=0, show_default=True,
              help="Set every pin's replication factor max (0 keeps the file's).")
@click.option("--allocations", "--allocs", "allocs", default="", metavar="PEERS",
              help="Comma-separated peer IDs to allocate every pin to (empty keeps the file's).")
@pass_service
def import_cmd(svc: ServiceContext, file_: str | None, force: bool, rmin: int, rmax: int, allocs: str) -> None:
    """Replace the pinset with the pins in FILE (stdin if absent): any stream of JSON pins.

    The daemon pins them on IPFS when it next starts.
    """
    from pincluster.state.ops import import_state, parse_allocations

    lock = svc.take_lock()
    try:
        if not _confirm("importing state", IMPORT_PROMPT, force or svc.force):
            return
        try:
            allocations = parse_allocations(allocs)
            src = _open_input(file_)
            try:
                result = import_state(svc.config_dir, src, rmin=rmin, rmax=rmax, allocations=allocations)
            finally:
                if src is not sys.stdin.buffer:
                    src.close()
        except PinclusterError as err:
            fail("importing state", err)
        except OSError as err:
            fail("importing state", err)
        moved = f"; the previous state was moved to {result.backup}" if result.backup else ""
        click.echo(f"imported {result.pins} pins into {result.data_folder}{moved}", err=True)
    finally:
        lock.release()


@state.command("cleanup")
@click.option("-f", "--force", is_flag=True, help="Remove the state without asking.")
@pass_service
def cleanup_cmd(svc: ServiceContext, force: bool) -> None:
    """Remove the pinset and Raft data (kept as raft.old.N backups, see consensus.raft.backups_rotate)."""
    from pincluster.state.ops import cleanup_state

    lock = svc.take_lock()
    try:
        if not _confirm("cleaning up state", CLEANUP_PROMPT, force or svc.force):
            return
        try:
            data, backup = cleanup_state(svc.config_dir)
        except PinclusterError as err:
            fail("cleaning up state", err)
        except OSError as err:
            fail("cleaning up state", err)
        if backup is not None:
            click.echo(f"the peer state in {data} was moved to {backup}", err=True)
        else:
            click.echo(f"the peer state in {data} was removed", err=True)
    finally:
        lock.release()


@state.command("upgrade")
@pass_service
def upgrade_cmd(svc: ServiceContext) -> None:
    """Migrate the state on disk to this release's format (backing the data folder up first)."""
    from pincluster.state.upgrade import describe, upgrade_state_result

    lock = svc.take_lock()
    try:
        try:
            result = upgrade_state_result(svc.config_dir)
        except PinclusterError as err:
            fail("upgrading state", err)
        except OSError as err:
            fail("upgrading state", err)
        click.echo(describe(result))
    finally:
        lock.release()


CRDT_ONLY = "crdt subcommands can only be run on peers initialized with crdt consensus"


@state.group("crdt")
def crdt() -> None:
    """CRDT datastore tools (IPFS Cluster's crdt consensus; pincluster peers run Raft)."""


def _crdt_only(svc: ServiceContext) -> None:
    """Go's answer on a Raft peer; a crdt config is refused by the config loader with what to do."""
    from pincluster.config import load_config

    try:
        load_config(svc.config_dir).require_supported_consensus()
    except PinclusterError as err:
        fail("loading configurations", err)
    fail("running crdt command", CRDT_ONLY)


@crdt.command("info")
@pass_service
def crdt_info(svc: ServiceContext) -> None:
    """Print the CRDT DAG's heads and height (crdt peers only)."""
    _crdt_only(svc)


@crdt.command("dot")
@click.option("-f", "--file", "file_", default="", metavar="PATH", help="Write to this file (default: stdout).")
@pass_service
def crdt_dot(svc: ServiceContext, file_: str) -> None:
    """Write the CRDT DAG as a dot graph (crdt peers only)."""
    _crdt_only(svc)


@crdt.command("mark-dirty")
@pass_service
def crdt_mark_dirty(svc: ServiceContext) -> None:
    """Mark the CRDT datastore dirty (crdt peers only)."""
    _crdt_only(svc)


@crdt.command("mark-clean")
@pass_service
def crdt_mark_clean(svc: ServiceContext) -> None:
    """Mark the CRDT datastore clean (crdt peers only)."""
    _crdt_only(svc)
