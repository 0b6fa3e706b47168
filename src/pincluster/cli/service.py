"""``ipfs-cluster-service``: set up and run a cluster peer (spec §6).

This module holds the click group, its global flags and the ``init`` and ``version`` commands. Later
commands (``daemon``, ``state …``) attach to :data:`cli` with ``@cli.command()`` or ``cli.add_command`` and
receive the global options through :data:`pass_service`.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import click

from pincluster import CLUSTER_COMPAT_VERSION
from pincluster.cli import fail, prompt_line, prompt_yes_no, stdin_is_terminal
from pincluster.cli.urfave import UrfaveGroup
from pincluster.config.identity import IDENTITY_JSON, new_identity
from pincluster.config.peerstore import save_peerstore
from pincluster.config.secret import decode_secret
from pincluster.config.service import DEFAULT_CONFIG_DIR, SERVICE_JSON, ServiceConfig, default_config
from pincluster.errors import InvalidInput, LockError, PinclusterError
from pincluster.lock import ClusterLock
from pincluster.log import setup_logging
from pincluster.types.multiaddr import Multiaddr
from pincluster.types.peer import PeerID

PROGRAM = "ipfs-cluster-service"
CONSENSUS_CHOICES = ("raft", "crdt")
DATASTORE_CHOICES = ("pebble", "badger", "badger3", "leveldb")
SECRET_PROMPT = "Enter cluster secret (32-byte hex string): "
EMBEDDED_IPFS_DIR = "ipfs"
OVERWRITE_PROMPT = "The configuration file will be overwritten. Continue?"


@dataclass(frozen=True)
class ServiceContext:
    """Global options, available to every subcommand."""

    config_dir: Path
    force: bool = False
    debug: bool = False
    loglevel: str | None = None

    @property
    def service_json(self) -> Path:
        return self.config_dir / SERVICE_JSON

    @property
    def identity_json(self) -> Path:
        return self.config_dir / IDENTITY_JSON

    def lock(self) -> ClusterLock:
        return ClusterLock(self.config_dir)

    def take_lock(self) -> ClusterLock:
        """Acquire the folder lock or exit with IPFS Cluster's message (spec §6.5)."""
        lock = self.lock()
        try:
            lock.acquire()
        except LockError as err:
            fail("obtaining execution lock", err)
        return lock


pass_service = click.make_pass_decorator(ServiceContext)


DESCRIPTION = f"""
{PROGRAM} runs an IPFS Cluster peer.

A peer participates in the cluster consensus, follows a distributed log
of pinning and unpinning requests and manages pinning operations to a
configured IPFS daemon.

This peer also provides an API for cluster management, an IPFS Proxy API which
forwards requests to IPFS and a number of components for internal communication
using LibP2P. This is a simplified view of the components:

             +------------------+
             | ipfs-cluster-ctl |
             +---------+--------+
                       |
                       | HTTP(s)
ipfs-cluster-service   |                           HTTP
+----------+--------+--v--+----------------------+      +-------------+
| RPC      | Peer 1 | API | IPFS Connector/Proxy +------> IPFS daemon |
+----^-----+--------+-----+----------------------+      +-------------+
     | libp2p
     |
+----v-----+--------+-----+----------------------+      +-------------+
| RPC      | Peer 2 | API | IPFS Connector/Proxy +------> IPFS daemon |
+----^-----+--------+-----+----------------------+      +-------------+
     |
     |
+----v-----+--------+-----+----------------------+      +-------------+
| RPC      | Peer 3 | API | IPFS Connector/Proxy +------> IPFS daemon |
+----------+--------+-----+----------------------+      +-------------+


{PROGRAM} needs valid configuration and identity files to run.
These are independent from IPFS. The identity includes its own
libp2p key-pair. They can be initialized with "init" and their
default locations are {DEFAULT_CONFIG_DIR}/{SERVICE_JSON}
and {DEFAULT_CONFIG_DIR}/{IDENTITY_JSON}.

For feedback, bug reports or any additional information, visit
https://github.com/ipfs-cluster/ipfs-cluster.


EXAMPLES:

Initial configuration:

$ ipfs-cluster-service init

Launch a cluster:

$ ipfs-cluster-service daemon

Launch a peer and join existing cluster:

$ ipfs-cluster-service daemon --bootstrap /ip4/192.168.1.2/tcp/9096/p2p/QmPSoSaPXpyunaBwHs1rZBKYSqRV4bLRk32VGYLuvdrypL

Customize logs using --loglevel flag. To customize component-level
logging pass a comma-separated list of component-identifer:log-level
pair or without identifier for overall loglevel. Valid loglevels
are critical, error, warning, notice, info and debug.

$ ipfs-cluster-service --loglevel info,cluster:debug,pintracker:debug daemon
"""


def _no_command(ctx: click.Context, name: str | None) -> None:
    """Go's ``run`` (the application's action): without a known command, the help and exit 1."""
    click.echo(ctx.command.get_help(ctx), nl=False)
    ctx.exit(1)


@click.group(PROGRAM, cls=UrfaveGroup, usage="IPFS Cluster peer", description=DESCRIPTION,
             version=CLUSTER_COMPAT_VERSION, usage_exit_code=0, action=_no_command,
             order=("init", "daemon", "state", "version"))  # as Go lists them (daemon, state: other modules)
@click.option("--config", "-c", "config_dir", envvar="IPFS_CLUSTER_PATH",
              default=os.path.expanduser(DEFAULT_CONFIG_DIR),  # Go's DefaultPath: $HOME/.ipfs-cluster
              help="path to the configuration and data `FOLDER`")
@click.option("--force", "-f", is_flag=True,
              help="forcefully proceed with some actions. i.e. overwriting configuration")
@click.option("--debug", "-d", is_flag=True, help="enable full debug logging (very verbose)")
@click.option("--loglevel", "-l", envvar="IPFS_CLUSTER_LOG_LEVEL", default=None,
              help="set overall and component-wise log levels")
@click.pass_context
def cli(ctx: click.Context, config_dir: str, force: bool, debug: bool, loglevel: str | None) -> None:
    try:
        setup_logging(loglevel, debug)
    except InvalidInput as err:
        fail("setting up logging", err)
    # absolute, as Go's filepath.Abs: every message names the files wherever the command ran
    ctx.obj = ServiceContext(Path(os.path.abspath(Path(config_dir).expanduser())), force, debug, loglevel)


@cli.command(usage="Prints the ipfs-cluster version")
def version() -> None:
    click.echo(CLUSTER_COMPAT_VERSION)


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


#: Ports this process has handed out already. A port is only checked free *now*, and none of one ``init``'s
#: listeners is bound until the daemon starts, so without this two of them (say the proxy and the embedded
#: node's swarm) could be given the same port and the daemon would fail to start.
_HANDED_OUT: set[tuple[str, int]] = set()


#: ``LOW-HIGH``: the ports ``init --randomports`` picks from. Several processes making peers at once (parallel
#: test workers, provisioning scripts) each check a port free *now* and cannot see each other's picks; giving
#: each its own range keeps their peers apart. Default: 10000 up to the kernel's ephemeral range.
RANDOMPORTS_RANGE_ENV: Final = "PINCLUSTER_RANDOMPORTS_RANGE"


def randomports_range() -> tuple[int, int] | None:
    """The inclusive range ``--randomports`` picks from (see ``RANDOMPORTS_RANGE_ENV``); None to let the kernel
    pick (the default when its ephemeral range starts too low to leave a range below it)."""
    text = os.environ.get(RANDOMPORTS_RANGE_ENV, "").strip()
    if not text:
        top = min(_ephemeral_range()[0], 65536) - 1
        return (10000, top) if top > 11000 else None
    lo, sep, hi = text.partition("-")
    try:
        low, high = int(lo), int(hi)
    except ValueError:
        low = high = 0
    if not sep or not 1 <= low <= high <= 65535:
        raise InvalidInput(f"{RANDOMPORTS_RANGE_ENV}={text!r}: expected LOW-HIGH with 1 <= LOW <= HIGH <= 65535, "
                           "for example 20000-29999")
    return low, high


def free_port(transport: str = "tcp", host: str = "127.0.0.1") -> int:
    """A port free right now and not handed out before by this process, chosen *below* the kernel's ephemeral
    range (or in ``RANDOMPORTS_RANGE_ENV``): a port the kernel hands out with ``bind(0)`` can be taken by any
    outgoing connection before the daemon starts and binds it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    kind = socket.SOCK_STREAM if transport == "tcp" else socket.SOCK_DGRAM
    span = randomports_range()
    for _ in range(200):
        port = 0 if span is None else secrets.randbelow(span[1] - span[0] + 1) + span[0]
        if (transport, port) in _HANDED_OUT:
            continue
        with socket.socket(family, kind) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            port = int(s.getsockname()[1])
        _HANDED_OUT.add((transport, port))
        return port
    raise InvalidInput(f"no free {transport} port found on {host}")


def claim_ports(ports: set[int], transport: str = "tcp") -> bool:
    """Record ports that another process chose for a peer this process made (its ``init --randomports``), so
    that ``free_port`` does not hand them out before that peer binds them; False, recording nothing, when one
    of them was handed out already (the caller makes that peer again)."""
    wanted = {(transport, port) for port in ports}
    if wanted & _HANDED_OUT:
        return False
    _HANDED_OUT.update(wanted)
    return True


def randomize_port(addr: Multiaddr) -> Multiaddr:
    """The same address with its tcp/udp port replaced by a port that is free right now."""
    host = addr.value_for("ip4") or addr.value_for("ip6") or "0.0.0.0"
    parts: list[str] = []
    for name, value in addr.protocols:
        if name in ("tcp", "udp") and value is not None:
            value = str(free_port(name, host))
        parts.append(f"/{name}" if value is None else f"/{name}/{value}")
    return Multiaddr("".join(parts))


def randomize_ports(cfg: ServiceConfig, *, ipfs_api: bool = False) -> ServiceConfig:
    """``--randomports``: new free ports for the cluster, Raft, REST, pinning-service and proxy listeners (and,
    with ``ipfs_api``, the embedded IPFS node's API)."""

    def many(addrs: tuple[Multiaddr, ...]) -> tuple[Multiaddr, ...]:
        return tuple(randomize_port(a) for a in addrs)

    if ipfs_api:
        node_api = randomize_port(cfg.ipfshttp.node_multiaddress)
        cfg = cfg.replace(
            ipfshttp=dataclasses.replace(cfg.ipfshttp, node_multiaddress=node_api),
            ipfsproxy=dataclasses.replace(cfg.ipfsproxy, node_multiaddress=node_api),  # the proxy fronts the same node
        )
    raft_listen = randomize_port(cfg.raft.listen_multiaddress)
    cfg = cfg.replace(raft=dataclasses.replace(cfg.raft, listen_multiaddress=raft_listen))
    return cfg.replace(
        cluster=dataclasses.replace(cfg.cluster, listen_multiaddress=many(cfg.cluster.listen_multiaddress)),
        restapi=dataclasses.replace(cfg.restapi, http_listen_multiaddress=many(cfg.restapi.http_listen_multiaddress)),
        pinsvcapi=dataclasses.replace(
            cfg.pinsvcapi, http_listen_multiaddress=many(cfg.pinsvcapi.http_listen_multiaddress)
        ),
        ipfsproxy=dataclasses.replace(cfg.ipfsproxy, listen_multiaddress=many(cfg.ipfsproxy.listen_multiaddress)),
    )


def ipfs_api_answers(addr: Multiaddr, timeout: float = 1.0) -> bool:
    """Whether an IPFS daemon's API answers at ``addr`` (``init`` then points the connector at it)."""
    import urllib.request

    try:
        host, port = addr.tcp_host_port()
        url = f"http://{host if ':' not in host else f'[{host}]'}:{port}/api/v0/version"
        with urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=timeout) as resp:
            return bool(resp.status == 200)
    except (OSError, InvalidInput, ValueError):
        return False


def _kept_embedded_api(folder: Path) -> Multiaddr | None:
    """The API address of an embedded node that ``init`` will keep (``--force`` over an existing folder)."""
    import json

    try:
        api = json.loads((folder / EMBEDDED_IPFS_DIR / "config").read_text())["Addresses"]["API"]
        return Multiaddr(api[0] if isinstance(api, list) else api)
    except (OSError, ValueError, KeyError, IndexError, TypeError, InvalidInput):
        return None


def _init_embedded_ipfs(folder: Path, cfg: ServiceConfig, randomports: bool) -> None:
    """Create ``<folder>/ipfs``: the embedded node's repo, its API where the connector looks for it, and a
    ``swarm.key`` derived from the cluster secret, so that a cluster's nodes form one private network."""
    from pincluster.ipfs.node import init_repo
    from pincluster.ipfs.swarmkey import derive_swarm_key

    repo = folder / EMBEDDED_IPFS_DIR
    if (repo / "config").exists():
        click.echo(f"embedded IPFS node kept in {repo} (remove it to start a new one).", err=True)
        return
    swarm = Multiaddr("/ip4/0.0.0.0/tcp/4001")
    if randomports:
        swarm = randomize_port(swarm)
    key = derive_swarm_key(cfg.cluster.secret) if cfg.cluster.secret else None
    init_repo(repo, api=str(cfg.ipfshttp.node_multiaddress), swarm=[str(swarm)], swarm_key=key)
    click.echo(
        f"embedded IPFS node initialized in {repo} (API {cfg.ipfshttp.node_multiaddress}, swarm {swarm}).",
        err=True,
    )


def parse_peers(text: str) -> list[Multiaddr]:
    """``--peers``: comma-separated multiaddrs, each with ``/p2p/<peer id>``."""
    out: list[Multiaddr] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        addr = Multiaddr(item)
        if addr.peer_id is None:
            raise InvalidInput(f"{item} has no /p2p/<peer id> part")
        out.append(addr)
    return out


@cli.command(usage="Creates a configuration and generates an identity", args_usage="[http-source-url]",
             description=f"""
This command will initialize a new {SERVICE_JSON} configuration file and, if it
does already exist, generate a new {IDENTITY_JSON} for {PROGRAM}.

If the optional [source-url] is given, the generated configuration file
will refer to it. The source configuration will be fetched from its source
URL during the launch of the daemon. If not, a default standard configuration
file will be created.

In the latter case, a cluster secret will be generated as required
by {PROGRAM}. Alternatively, this secret can be manually
provided with --custom-secret (in which case it will be prompted), or
by setting the CLUSTER_SECRET environment variable.

The --consensus flag allows to select an alternative consensus components for
in the newly-generated configuration.

Note that the --force flag allows to overwrite an existing
configuration with default values. To generate a new identity, please
remove the {IDENTITY_JSON} file first and clean any Raft state.

By default, an empty peerstore file will be created too. Initial contents can
be provided with the --peers flag. Depending on the chosen consensus, the
"trusted_peers" list in the "crdt" configuration section and the
"init_peerset" list in the "raft" configuration section will be prefilled to
the peer IDs in the given multiaddresses.
""")
@click.argument("source_url", required=False)
@click.option("--consensus", default="raft", help="select consensus: 'crdt' or 'raft'")
@click.option("--datastore", default="pebble", help="select datastore: 'badger', 'badger3', 'leveldb' or 'pebble'")
@click.option("--custom-secret", "-s", is_flag=True, help="prompt for the cluster secret (when no source specified)")
@click.option("--peers", default="", help="comma-separated list of multiaddresses to init with (see help)")
@click.option("--force", "-f", is_flag=True, help="overwrite configuration without prompting")
@click.option("--randomports", is_flag=True, help="configure random ports to listen on instead of defaults")
@click.option("--ipfs", "ipfs_mode", type=click.Choice(["embedded", "external"]), default=None,
              help="'embedded' (set up an IPFS node in <config>/ipfs, run by the peer) or 'external' (an IPFS "
                   "daemon at ipfshttp.node_multiaddress); default: external when an IPFS API answers there")
@pass_service
def init(
    svc: ServiceContext,
    source_url: str | None,
    consensus: str,
    datastore: str,
    custom_secret: bool,
    peers: str,
    force: bool,
    randomports: bool,
    ipfs_mode: str | None,
) -> None:
    # an existing service.json is replaced only with --force (or a "y" when run from a terminal); an existing
    # identity.json is always kept
    if consensus not in CONSENSUS_CHOICES:
        fail("choosing consensus", "flag value must be set to 'raft' or 'crdt'")
    if consensus == "crdt":
        fail(
            "choosing consensus",
            "crdt consensus is not supported by pincluster yet; use --consensus raft (the default)",
        )
    if datastore not in DATASTORE_CHOICES:
        fail("choosing datastore", "flag value must be set to 'leveldb', 'badger', 'badger3' or 'pebble'")
    try:
        peer_addrs = parse_peers(peers)
    except InvalidInput as err:
        fail("parsing --peers", err)
    if source_url is not None and not source_url.startswith(("http://", "https://")):
        fail("initializing configuration", f"{source_url!r} is not an http(s) URL")

    force = force or svc.force
    folder = svc.config_dir
    lock: ClusterLock | None = None
    if svc.service_json.exists() or svc.identity_json.exists():
        lock = svc.take_lock()
    try:
        if svc.service_json.exists() and not force:
            if not stdin_is_terminal():
                fail(
                    "initializing configuration",
                    f"{svc.service_json} already exists; run with --force to overwrite it",
                )
            if not prompt_yes_no(OVERWRITE_PROMPT):
                return
        _write_init(svc, folder, source_url, custom_secret, peer_addrs, randomports, ipfs_mode)
    finally:
        if lock is not None:
            lock.release()


def _write_init(
    svc: ServiceContext,
    folder: Path,
    source_url: str | None,
    custom_secret: bool,
    peer_addrs: list[Multiaddr],
    randomports: bool,
    ipfs_mode: str | None = None,
) -> None:
    try:
        cfg = default_config("raft", folder)
        if ipfs_mode is None and source_url is None:
            ipfs_mode = "external" if ipfs_api_answers(cfg.ipfshttp.node_multiaddress) else "embedded"
        if randomports:
            cfg = randomize_ports(cfg, ipfs_api=ipfs_mode == "embedded")
        cfg = cfg.apply_env(os.environ)
        kept_api = _kept_embedded_api(folder) if ipfs_mode == "embedded" else None
        if kept_api is not None:  # init --force keeps the node: point the connector and the proxy at its API
            cfg = cfg.replace(
                ipfshttp=dataclasses.replace(cfg.ipfshttp, node_multiaddress=kept_api),
                ipfsproxy=dataclasses.replace(cfg.ipfsproxy, node_multiaddress=kept_api),
            )
        if custom_secret:
            text = prompt_line(SECRET_PROMPT).strip()
            if not text:
                fail("reading secret", "no secret entered; type 64 hex characters (32 bytes)")
            cfg = cfg.replace(cluster=dataclasses.replace(cfg.cluster, secret=decode_secret(text)))
        if peer_addrs:
            peer_ids: list[PeerID] = []
            for a in peer_addrs:
                if a.peer_id is not None and a.peer_id not in peer_ids:
                    peer_ids.append(a.peer_id)
            cfg = cfg.replace(raft=dataclasses.replace(cfg.raft, init_peerset=tuple(peer_ids)))
        cfg.validate()
        if source_url is not None:
            cfg = cfg.replace(source=source_url)
    except PinclusterError as err:
        fail("initializing configuration", err)

    try:
        written = cfg.save(svc.service_json)
        click.echo(f"configuration written to {written}.", err=True)
        if not svc.identity_json.exists():
            ident = new_identity(os.environ)
            ident.save(svc.identity_json)
            click.echo(f"new identity written to {svc.identity_json}", err=True)
        pstore = cfg.peerstore_path()
        if peer_addrs:
            n = save_peerstore(pstore, peer_addrs)
            click.echo(f"peerstore written to {pstore} with {n} entries.", err=True)
        else:
            save_peerstore(pstore, [])
            click.echo(f"new empty peerstore written to {pstore}.", err=True)
        if ipfs_mode == "embedded":
            _init_embedded_ipfs(folder, cfg, randomports)
        else:
            _write_external_swarm_key(folder, cfg)
    except PinclusterError as err:
        fail("saving configuration", err)
    except OSError as err:
        fail("saving configuration", err)


def _write_external_swarm_key(folder: Path, cfg: ServiceConfig) -> None:
    """With an external IPFS daemon, write the swarm.key its private network needs (derived from the cluster
    secret, as the embedded nodes' key is), so that every peer's kubo joins the same private network."""
    from pincluster.ipfs.swarmkey import derive_swarm_key, write_swarm_key

    if not cfg.cluster.secret:
        return
    path = folder / "swarm.key"
    key = derive_swarm_key(cfg.cluster.secret)
    write_swarm_key(path, key)
    click.echo(
        f"swarm key for the IPFS daemon written to {path}: copy it to $IPFS_PATH/swarm.key on this machine "
        "and start the daemon with LIBP2P_FORCE_PNET=1 (every peer's key is the same: it derives from the secret)",
        err=True,
    )


def main() -> None:
    """Console-script entry point."""
    from pincluster.cli import daemon, state  # noqa: F401  (registers the subcommands)

    cli(prog_name=PROGRAM)


if __name__ == "__main__":
    main()
