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


@cli.group(usage="Manages the peer's persistent state (pinset)")
def state() -> None:
    pass


CRDT_ONLY = "crdt subcommands can only be run on peers initialized with crdt consensus"


def _crdt_only(svc: ServiceContext) -> None:
    """Go's answer on a Raft peer; a crdt config is refused by the config loader with what to do."""
    from pincluster.config import load_config

    try:
        load_config(svc.config_dir).require_supported_consensus()
    except PinclusterError as err:
        fail("loading configurations", err)
    fail("", CRDT_ONLY)


@state.group("crdt", usage="CRDT-state commands")
@pass_service
def crdt(svc: ServiceContext) -> None:
    # Go checks the peer's consensus before any crdt subcommand runs (or shows its help)
    _crdt_only(svc)


@crdt.command("info", usage="Print information about the CRDT store", description="""
This commands prints basic information: current heads, dirty flag etc.
""")
@pass_service
def crdt_info(svc: ServiceContext) -> None:
    _crdt_only(svc)


@crdt.command("dot", usage="Write the CRDT-DAG as DOT file", description="""
This command generates a DOT file representing the CRDT-DAG of this node.
The DOT file can then be visualized, converted to SVG etc.

This is a debugging command to visualize how the DAG looks like, whether there
is a lot of branching etc. large DAGs will generate large DOT files.
Use with caution!
""")
@click.option("--file", "-f", "file_", default="", help="writes to file instead of stdout")
@pass_service
def crdt_dot(svc: ServiceContext, file_: str) -> None:
    _crdt_only(svc)


@crdt.command("mark-dirty", usage="Marks the CRDT-store as dirty", description="""
Marking the CRDT store as dirty will force-run a Repair operation on the next
run (i.e. next time the cluster peer is started).
""")
@pass_service
def crdt_mark_dirty(svc: ServiceContext) -> None:
    _crdt_only(svc)


@crdt.command("mark-clean", usage="Marks the CRDT-store as clean", description="""
This command remove the dirty-mark on the CRDT-store, which means no
DAG operations will be run.
""")
@pass_service
def crdt_mark_clean(svc: ServiceContext) -> None:
    _crdt_only(svc)


@state.command("export", usage="save the state to a JSON file", description="""
This command dumps the current cluster pinset (state) as a JSON file. The
resulting file can be used to migrate, restore or backup a Cluster peer.
By default, the state will be printed to stdout.
""")
@click.option("--file", "-f", "file_", default="", help="writes to an output file")
@pass_service
def export_cmd(svc: ServiceContext, file_: str) -> None:
    # one JSON pin per line
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


@state.command("import", usage="load the state from a file produced by 'export'", description="""
This command reads in an exported pinset (state) file and replaces the
existing one. This can be used, for example, to restore a Cluster peer from a
backup.

If an argument is provided, it will be treated it as the path of the file
to import. If no argument is provided, stdin will be used.
""")
@click.argument("file_", required=False)
@click.option("--force", "-f", is_flag=True, help="skips confirmation prompt")
@click.option("--replication-min", "--rmin", "rmin", type=int, default=0,
              help="Overwrite replication-factor-min for all pins on import")
@click.option("--replication-max", "--rmax", "rmax", type=int, default=0,
              help="Overwrite replication-factor-max for all pins on import")
@click.option("--allocations", "--allocs", "allocs", default="",
              help="Overwrite allocations for all pins on import. Comma-separated list of peer IDs")
@pass_service
def import_cmd(svc: ServiceContext, file_: str | None, force: bool, rmin: int, rmax: int, allocs: str) -> None:
    # any stream of JSON pins (stdin without FILE); the daemon pins them on IPFS when it next starts
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


@state.command("cleanup", usage="remove persistent data", description="""
This command removes any persisted consensus data in this peer, including the
current pinset (state). The next start of the peer will be like a first start
to all effects. Peers may need to bootstrap and sync from scratch after this.
""")
@click.option("--force", "-f", is_flag=True, help="skip confirmation prompt")
@pass_service
def cleanup_cmd(svc: ServiceContext, force: bool) -> None:
    # the Raft data is kept as raft.old.N backups (see consensus.raft.backups_rotate)
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


@state.command("upgrade", usage="upgrade the state on disk to this version's format (pincluster)", description="""
This command migrates the state (pinset) of a stopped peer to the format this
version of pincluster reads, after backing the data folder up. IPFS Cluster
1.x has no such command; "daemon --upgrade" does the same before starting.
""")
@pass_service
def upgrade_cmd(svc: ServiceContext) -> None:
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
