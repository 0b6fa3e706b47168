"""``ipfs-cluster-service daemon`` (spec §6.2, §6.4)."""

from __future__ import annotations

import asyncio

import click

from pincluster.cli import fail
from pincluster.cli.service import ServiceContext, cli, parse_peers, pass_service
from pincluster.errors import PinclusterError


@cli.command()
@click.option("-u", "--upgrade", is_flag=True, help="Upgrade the state on disk to this version's format first.")
@click.option(
    "-j", "--bootstrap", default="", metavar="MULTIADDRS",
    help="Comma-separated cluster multiaddrs (with /p2p/<id>) of running peers to join.",
)
@click.option("-x", "--leave", is_flag=True, hidden=True, help="Leave the cluster on shutdown.")
@click.option(
    "--stats", is_flag=True,
    help="Turn on Prometheus metrics (observations.metrics.enable_stats) and print the peer's health every "
    "observations.metrics.reporting_interval.",
)
@click.option(
    "--tracing", is_flag=True,
    help="Turn on tracing (observations.tracing.enable_tracing): spans go to the Jaeger agent at "
    "observations.tracing.jaeger_agent_endpoint.",
)
@click.option("--no-trust", is_flag=True, hidden=True, help="Accepted for compatibility (CRDT only).")
@click.option(
    "--ipfs", "ipfs_mode", type=click.Choice(["embedded", "external"]), default=None,
    help="Run the embedded IPFS node in this process, or use an external daemon (kubo) at "
    "ipfshttp.node_multiaddress. Default: embedded when <config>/ipfs exists.",
)
@pass_service
def daemon(
    svc: ServiceContext, upgrade: bool, bootstrap: str, leave: bool, stats: bool, tracing: bool, no_trust: bool,
    ipfs_mode: str | None,
) -> None:
    """Run the cluster peer."""
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
