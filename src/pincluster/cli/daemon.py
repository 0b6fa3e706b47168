"""``ipfs-cluster-service daemon`` (spec §6.2, §6.4)."""

from __future__ import annotations

import asyncio

import click

from pincluster.cli import fail
from pincluster.cli.service import ServiceContext, cli, parse_peers, pass_service
from pincluster.errors import PinclusterError


@cli.command(usage="Runs the IPFS Cluster peer (default)")
# Go's text says "(deprecated/unused)": Go ignores the flag; ours upgrades the state (as `state upgrade` does)
@click.option("--upgrade", "-u", is_flag=True,
              help="run state migrations before starting (as 'state upgrade': backs the data folder up first)")
@click.option("--bootstrap", "-j", default="",
              help="join a cluster providing a comma-separated list of existing peers multiaddress(es)")
@click.option("--leave", "-x", is_flag=True, hidden=True,
              help='remove peer from cluster on exit. Overrides "leave_on_shutdown"')
@click.option("--stats", is_flag=True, help="enable stats collection")
@click.option("--tracing", is_flag=True, help="enable tracing collection")
@click.option("--no-trust", is_flag=True, help='do not trust bootstrap peers (only for "crdt" consensus)')
@click.option("--ipfs", "ipfs_mode", type=click.Choice(["embedded", "external"]), default=None,
              help="'embedded' (run the IPFS node in <config>/ipfs in this process) or 'external' (use the IPFS "
                   "daemon at ipfshttp.node_multiaddress); default: embedded when <config>/ipfs exists")
@pass_service
def daemon(
    svc: ServiceContext, upgrade: bool, bootstrap: str, leave: bool, stats: bool, tracing: bool, no_trust: bool,
    ipfs_mode: str | None,
) -> None:
    from pincluster.daemon import DaemonOptions, run_daemon

    lock = svc.take_lock()
    try:
        if upgrade:
            from pincluster.state.upgrade import describe, upgrade_state_result

            try:
                click.echo(describe(upgrade_state_result(svc.config_dir)), err=True)
            except (PinclusterError, OSError) as err:
                fail("upgrading state", err)
        opts = DaemonOptions(bootstrap=parse_peers(bootstrap) if bootstrap else (), leave=leave, ipfs=ipfs_mode,
                             stats=stats, tracing=tracing)
        try:
            code = _run(run_daemon(svc.config_dir, opts))
        except PinclusterError as err:
            fail("starting the peer", err)
    finally:
        lock.release()
    raise SystemExit(code)


def _run(coro: object) -> int:
    try:
        import uvloop

        return int(uvloop.run(coro))  # type: ignore[arg-type]
    except ImportError:
        return int(asyncio.run(coro))  # type: ignore[arg-type]
