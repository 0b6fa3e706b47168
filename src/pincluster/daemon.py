"""``ipfs-cluster-service daemon``: start every configured component in order, run, shut down in order.

Start: lock → config → (embedded IPFS node) → IPFS connector → p2p host + RPC → Raft → Cluster → APIs.
Stop: APIs first, then the cluster's loops, then consensus (leaving the peerset if configured), the host (the
peerstore is saved), the connector and the embedded node. SIGINT/SIGTERM/SIGHUP start an orderly shutdown;
a second signal warns, the third exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pincluster.config import IDENTITY_JSON, ServiceConfig, load_config, load_identity
from pincluster.errors import ConfigError, InvalidInput, PeerError, PinclusterError, Unavailable
from pincluster.p2p.errors import SecretMismatch
from pincluster.types.multiaddr import Multiaddr

log = logging.getLogger("pincluster.cluster")

EMBEDDED_IPFS_DIR = "ipfs"


@dataclass
class DaemonOptions:
    bootstrap: Sequence[Multiaddr] = ()
    leave: bool = False
    ipfs: str | None = None  # "embedded", "external" or None (embedded iff <folder>/ipfs exists)
    stats: bool = False
    tracing: bool = False  # --tracing: forces observations.tracing.enable_tracing
    extra: dict[str, Any] = field(default_factory=dict)


def advertise_host(bind_host: str, cfg: ServiceConfig) -> str:
    """The host other peers should dial for an address bound to ``bind_host``."""
    if bind_host not in ("0.0.0.0", "::"):
        return bind_host
    for ma in cfg.cluster.announce_multiaddress:
        with contextlib.suppress(InvalidInput):
            return ma.tcp_host_port()[0]
    with contextlib.suppress(OSError):
        ip = socket.gethostbyname(socket.gethostname())
        if ip and not ip.startswith("127."):
            return ip
    return "127.0.0.1"


class Daemon:
    """One running peer: owns every component's lifecycle."""

    def __init__(self, folder: Path, options: DaemonOptions) -> None:
        self.folder = folder
        self.options = options
        self.node: Any = None
        self.ipfs: Any = None
        self.host: Any = None
        self.rpc: Any = None
        self.consensus: Any = None
        self.cluster: Any = None
        self.apis: list[Any] = []
        self.config: ServiceConfig | None = None
        self.metrics: Any = None  # pincluster.observe: metrics, exporter, --stats screen, last error line
        self.exporter: Any = None
        self.reporter: Any = None
        self.log_tail: Any = None
        self.tracing: Any = None
        self._stopping = False

    async def start(self) -> None:
        from pincluster import RPC_PROTOCOL_VERSION
        from pincluster.cluster import Cluster
        from pincluster.cluster_rpc import register_services
        from pincluster.consensus.raft import RaftConsensus
        from pincluster.ipfsconn.ipfshttp import IPFSHTTPConnector
        from pincluster.observe.bandwidth import BandwidthCounter
        from pincluster.p2p.host import Host
        from pincluster.rpc.core import RPC
        from pincluster.state.ops import refuse_unreadable_state

        cfg = load_config(self.folder)
        cfg.require_supported_consensus()
        if not self.options.bootstrap:  # (--bootstrap moves the old folder away, a Go one too, and joins anew)
            refuse_unreadable_state(cfg.raft_data_path())  # before any listener opens or anything is written
        self.config = cfg
        if cfg.metrics.enable_stats or self.options.stats:  # Go: --stats forces observations.metrics.enable_stats
            from pincluster.observe.metrics import Metrics, MetricsExporter
            from pincluster.observe.stats import LogTail

            self.metrics, self.log_tail = Metrics(), LogTail().attach()
            self.exporter = MetricsExporter(self.metrics, None, cfg.metrics.prometheus_endpoint, log_tail=self.log_tail)
            self.exporter.bind()  # a busy port fails here, before this peer joins anything
        ident = load_identity(self.folder / IDENTITY_JSON)
        cc = cfg.cluster
        if cfg.tracing.enable_tracing or self.options.tracing:  # Go: --tracing forces enable_tracing
            from pincluster.observe.tracing import Tracing

            self.tracing = Tracing(cfg.tracing, peer_id=str(ident.peer_id), peername=cc.peername)
            self.tracing.start()
        await self._start_embedded_ipfs(cfg)

        self.ipfs = IPFSHTTPConnector.from_config(cfg.ipfshttp)
        self.ipfs.observer = self.metrics
        node_api = None if self.node is None or self.node.api is None else self.node.api.multiaddr
        if node_api is not None and self.ipfs.read_pins_from(self.node.pins, node_api):
            log.debug("ipfs: status listings read the embedded node's pin store directly")
            self.ipfs.authorization = self._embedded_authorization()

        listen = [a for a in cc.listen_multiaddress if a.has("tcp")]
        for a in cc.listen_multiaddress:
            if not a.has("tcp"):
                log.info("cluster: not listening on %s: pincluster peers speak TCP only", a)
        if not listen:
            raise ConfigError("cluster.listen_multiaddress", "needs a /tcp address (pincluster peers speak TCP)")
        bandwidth = BandwidthCounter()  # the cluster's traffic per protocol (GET /health/bandwidth)
        self.host = Host(
            ident.private_key,
            cc.secret,
            f"/pincluster/rpc/{RPC_PROTOCOL_VERSION}",
            listen,
            peerstore_path=cfg.peerstore_path(),
            bandwidth=bandwidth,
        )
        try:
            await self.host.start()
        except OSError as exc:
            raise Unavailable(
                f"cluster: cannot listen on {', '.join(map(str, listen))}: {exc}; "
                "is another peer using this address? Change cluster.listen_multiaddress"
            ) from exc
        self.rpc = RPC(self.host)
        self.rpc.observer = self.metrics
        known = await self.host.bootstrap()  # dial the peers of the peerstore file (errors are logged)
        if known:
            log.info("connected to %d known peers from the peerstore", len(known))
        log.info("cluster peer %s listening on %s", ident.peer_id, ", ".join(map(str, self.host.addrs)))

        raft_cfg = cfg.raft
        bind_host, _port = raft_cfg.listen_multiaddress.tcp_host_port()
        data = cfg.raft_data_path()
        bootstrap_raft: list[str] = []
        if self.options.bootstrap:
            bootstrap_raft = await self._resolve_bootstrap(self.options.bootstrap)
            if data.exists() and any(data.iterdir()):
                from pincluster.consensus.raft import clean_raft_folder

                backup = clean_raft_folder(data, raft_cfg.backups_rotate)
                log.info("bootstrapping: the previous Raft state was moved to %s", backup)
        cluster_box: list[Cluster] = []
        self.consensus = RaftConsensus(
            peer_id=str(ident.peer_id),
            config=raft_cfg,
            secret=cc.secret,
            data_folder=data,
            advertise_host=advertise_host(bind_host, cfg),
            bootstrap=bootstrap_raft,
            on_apply=lambda ops: cluster_box[0].on_apply(ops) if cluster_box else None,
            bandwidth=bandwidth,
        )
        await self.consensus.start()
        self.cluster = Cluster(
            config=cfg, folder=self.folder, host=self.host, rpc=self.rpc, consensus=self.consensus, ipfs=self.ipfs,
            bandwidth=bandwidth,
        )
        cluster_box.append(self.cluster)
        self.rpc.set_trusted(lambda p: self.consensus.is_trusted_peer(str(p)))
        register_services(self.rpc, self.cluster)
        await self.cluster.start()
        await self._start_apis(cfg)
        await self._start_observations(cfg)
        if self.options.leave:
            log.info("this peer will leave the cluster on shutdown (--leave)")

    async def _leave_through_leader(self) -> bool:
        """Ask the Raft leader to remove this peer, as Go's RmPeer does; True once the leader confirmed it.

        A follower's own removal request is forwarded by PySyncObj, but the leader drops its link to the peer
        as soon as it removes it, so the confirmation never arrives and the follower waits for its full
        timeout (about 30 s) without knowing. Through the leader's RPC the answer comes back at once. The
        leader itself (or a peer without a leader) uses the consensus' own leave.
        """
        from pincluster.types.peer import PeerID

        try:
            leader = await self.consensus.leader()
            me = str(self.consensus.peer_id)
            if leader == me:  # hand leadership over first: a leader cannot remove itself cleanly
                leader = await self.consensus.transfer_leadership()
                if leader is None:
                    return False
            await self.rpc.call(PeerID.decode(leader), "Consensus.RmPeer", PeerID.decode(me), timeout=15.0)
        except Exception as exc:  # shutting down: report it and fall back to the consensus leave
            log.warning("could not leave the peerset through the Raft leader: %s; trying directly", exc)
            return False
        log.info("left the cluster peerset")
        return True

    async def _resolve_bootstrap(self, addrs: Sequence[Multiaddr]) -> list[str]:
        """Connect to each bootstrap peer and ask where its Raft endpoint listens."""
        out: list[str] = []
        errors: list[str] = []
        for ma in addrs:
            if ma.peer_id is None:
                raise ConfigError("--bootstrap", f"{ma} has no /p2p/<peer id>: use the full cluster multiaddress")
            try:
                pid = await self.host.connect(ma)
                port_or_addr: str = await self.rpc.call(pid, "Consensus.Address", result_type=str, timeout=10.0)
            except SecretMismatch as exc:
                # Said from this peer's side, so the operator knows which service.json to fix.
                raise PeerError(
                    f"cannot bootstrap: this peer does not share the same cluster.secret as {ma}; "
                    "copy cluster.secret from a running peer's service.json (or set CLUSTER_SECRET)"
                ) from exc
            except PeerError:
                raise
            except PinclusterError as exc:
                errors.append(f"{ma}: {exc}")
                continue
            host, _, port = port_or_addr.rpartition(":")
            if host in ("0.0.0.0", "::", ""):
                host = ma.tcp_host_port()[0]
            out.append(f"{host}:{port}")
        if not out:
            raise Unavailable("cannot bootstrap: no bootstrap peer answered: " + "; ".join(errors))
        return out

    async def _start_embedded_ipfs(self, cfg: ServiceConfig) -> None:
        from pincluster.ipfs.node import IpfsNode, init_repo

        repo = self.folder / EMBEDDED_IPFS_DIR
        mode = self.options.ipfs
        if mode == "external" or (mode is None and not (repo / "config").exists()):
            return
        if not (repo / "config").exists():
            init_repo(repo, api=str(cfg.ipfshttp.node_multiaddress))
        self.node = await IpfsNode.open(repo)
        try:
            await self.node.start()
        except OSError as exc:
            raise Unavailable(f"ipfs: cannot start the embedded IPFS node: {exc}; is its port in use?") from exc
        log.info("embedded IPFS node %s started (API %s)", self.node.peer_id, cfg.ipfshttp.node_multiaddress)

    def _embedded_authorization(self) -> str | None:
        """The ``Authorization`` the connector sends to the embedded node: none unless the node's config has
        ``API.Authorizations``; then the secret of a user allowed every command (``/api/v0``)."""
        assert self.node is not None and self.node.api is not None
        auth = self.node.api.authorizations
        if not auth.by_header:
            return None
        header: str | None = auth.header_for("/api/v0/")
        if header is None:
            raise ConfigError("API.Authorizations", f"the embedded node's config ({self.folder / EMBEDDED_IPFS_DIR}"
                              "/config) lets no user run every command, and the cluster needs to: give one user "
                              '"AllowedPaths": ["/api/v0"]')
        log.info("ipfs: the embedded node's API requires authorization; the cluster uses user %s",
                 auth.by_header[header][0])
        return header

    async def _start_apis(self, cfg: ServiceConfig) -> None:
        """Start each API whose section is in service.json (Go starts only the configured ones)."""
        if cfg.is_loaded("api.restapi"):
            from pincluster.api.rest.server import RestAPI

            await self._start_api(RestAPI.from_config(self.cluster, cfg.restapi, str(self.folder)))
        if cfg.is_loaded("api.pinsvcapi"):
            from pincluster.api.pinsvc.server import PinSvcAPI

            await self._start_api(PinSvcAPI.from_config(self.cluster, cfg.pinsvcapi, str(self.folder)))
        if cfg.is_loaded("api.ipfsproxy"):
            from pincluster.api.ipfsproxy.server import IPFSProxy

            await self._start_api(IPFSProxy.from_config(self.cluster, cfg.ipfsproxy, str(self.folder)))

    async def _start_observations(self, cfg: ServiceConfig) -> None:
        """The Prometheus exporter on observations.metrics.prometheus_endpoint; with --stats, the health screen."""
        if self.exporter is None:
            return
        from pincluster.observe.stats import HealthReporter

        self.exporter.cluster = self.cluster
        await self.exporter.start()
        if self.options.stats:
            self.reporter = HealthReporter(
                self.cluster, cfg.metrics.reporting_interval.total_seconds(), metrics=self.metrics,
                walker=self.exporter.walker, log_tail=self.log_tail,
            )  # fmt: skip
            self.reporter.start()

    async def _start_api(self, api: Any) -> None:
        """Start one API server; kept in ``self.apis`` so that shutdown stops it first."""
        await api.start()
        self.apis.append(api)

    async def stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        leave = self.options.leave or bool(self.config and self.config.cluster.leave_on_shutdown)
        for part in (self.reporter, self.exporter):  # observations first: they read every other component
            if part is not None:
                with contextlib.suppress(Exception):
                    await part.stop()
        if self.log_tail is not None:
            self.log_tail.detach()
        for api in reversed(self.apis):
            with contextlib.suppress(Exception):
                await api.stop()
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                await self.cluster.shutdown()
        if self.consensus is not None:
            if leave and await self._leave_through_leader():
                leave = False
            with contextlib.suppress(Exception):
                await self.consensus.shutdown(leave=leave)
        if self.host is not None:
            with contextlib.suppress(Exception):
                await self.host.close()
        if self.ipfs is not None:
            with contextlib.suppress(Exception):
                await self.ipfs.close()
        if self.node is not None:
            with contextlib.suppress(Exception):
                await self.node.stop()
        if self.tracing is not None:  # last: the spans of the shutdown itself are sent too
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.tracing.shutdown)
        log.info("shutdown complete")


async def run_daemon(folder: Path, options: DaemonOptions) -> int:
    """Run until a signal (or removal from the peerset); returns the exit code."""
    daemon = Daemon(folder, options)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = 0

    def on_signal(signum: int) -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            log.info("received %s: shutting down", signal.Signals(signum).name)
            stop.set()
        elif signals == 2:
            log.warning("!! Shutdown is taking too long! Send the signal once more to exit at once !!")
        else:
            log.error("exiting immediately")
            os._exit(1)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        await daemon.start()
    except BaseException:
        await daemon.stop()
        raise
    waiters = [asyncio.create_task(stop.wait())]
    if daemon.cluster is not None:
        waiters.append(asyncio.create_task(daemon.cluster.shutdown_requested.wait()))
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    for w in waiters:
        w.cancel()
    await daemon.stop()
    return 0
