"""IpfsNode: one embedded IPFS node — repo, blockstore, pins, private swarm, block exchange and RPC API.

Usable alone (``pincluster-ipfs daemon``) or inside the cluster daemon's event loop::

    node = await IpfsNode.open(repo_path)
    await node.start()      # swarm host, exchange, kubo RPC API on Addresses.API, bootstrap
    ...
    await node.stop()

The repo is locked (``repo.lock``) for the node's lifetime so two processes never share one blockstore.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING

from pincluster.errors import ConfigError, LockError, PinclusterError, Unavailable
from pincluster.ipfs.blockstore import FlatFSBlockstore
from pincluster.ipfs.config import NodeConfig
from pincluster.ipfs.exchange import Exchange, FetchSession
from pincluster.ipfs.pins import PinStore
from pincluster.ipfs.swarmkey import fingerprint, load_swarm_key, require_key_if_forced, write_swarm_key
from pincluster.observe.bandwidth import BandwidthCounter
from pincluster.types.multiaddr import Multiaddr
from pincluster.types.peer import PeerID

if TYPE_CHECKING:
    from pincluster.ipfs.api import ApiServer
    from pincluster.p2p.host import Host

log = logging.getLogger("pincluster.ipfs")

SWARM_PROTOCOL = "/pincluster/ipfs/1.0"
AGENT_VERSION = "pincluster-ipfs/0.1.0"
KUBO_COMPAT_VERSION = "0.32.0"
REPO_VERSION = 16
# Without a swarm.key the node is on the "public" pincluster network: the peer layer always wants a PSK,
# so everyone without a key uses this well-known one (it protects nothing, it only separates networks).
PUBLIC_PSK = hashlib.sha256(b"pincluster public ipfs swarm v1").digest()


class IpfsNode:
    """Wires the repo's parts together; see the module docstring for the lifecycle."""

    def __init__(
        self, repo: Path, config: NodeConfig, swarm_key: bytes | None, blockstore: FlatFSBlockstore,
        pins: PinStore,
        lock_file: IO[bytes],
    ) -> None:
        self.repo = repo
        self.config = config
        self.swarm_key = swarm_key
        self.blockstore = blockstore
        self.pins = pins
        self._lock_file = lock_file
        self.host: Host | None = None
        self.exchange: Exchange | None = None
        self.api: ApiServer | None = None
        self.fetch_timeout = config.fetch_timeout_seconds
        self._bootstrap_task: asyncio.Task[None] | None = None
        #: The swarm's traffic, in total, per protocol and per peer (``stats/bw``); sampled while started.
        self.bandwidth = BandwidthCounter()
        self._bandwidth_task: asyncio.Task[None] | None = None
        self._started = False
        self._closed = False

    # -- lifecycle -----------------------------------------------------------------------------------------
    @classmethod
    async def open(cls, repo_path: Path | str) -> IpfsNode:
        """Load the config, check the swarm key rules, lock the repo and open storage (no network yet)."""
        repo = Path(repo_path).expanduser()
        config = NodeConfig.load(repo)
        key_path = config.resolve(repo, config.swarm_key_path)
        swarm_key = load_swarm_key(key_path)
        require_key_if_forced(swarm_key, key_path)
        lock_file = _lock_repo(repo)
        try:
            blockstore = FlatFSBlockstore(config.resolve(repo, config.datastore_path))
            pins = PinStore(repo / "pins", blockstore)
        except BaseException:
            lock_file.close()
            raise
        return cls(repo, config, swarm_key, blockstore, pins, lock_file)

    async def start(self, *, api: bool = True) -> None:
        """Start the swarm host, the block exchange, bootstrap dialing and (unless ``api=False``) the API.

        If any part fails (a port in use, say), the parts already started are stopped again.
        """
        from pincluster.p2p.host import Host

        if self._closed:
            raise PinclusterError("this IPFS node was stopped; open the repo again")
        psk = self.swarm_key if self.swarm_key is not None else PUBLIC_PSK
        try:
            self.host = Host(
                self.config.private_key, psk, SWARM_PROTOCOL, list(self.config.swarm),
                psk_name="swarm.key", max_message_size=4 << 20, peerstore_path=self.repo / "peerstore",
                bandwidth=self.bandwidth,
            )
            await self.host.start()
            self._bandwidth_task = asyncio.create_task(self.bandwidth.run(), name="ipfs-bandwidth")
            self.exchange = Exchange(self.host, self.blockstore, concurrency=self.config.fetch_concurrency)
            await self.exchange.start()
            self.host.on_connect.append(self.exchange.peer_connected)
            if self.config.bootstrap:
                self._bootstrap_task = asyncio.create_task(self._bootstrap_loop(), name="ipfs-bootstrap")
            if api:
                from pincluster.ipfs.api import ApiServer

                self.api = ApiServer(self)
                try:
                    await self.api.start(self.config.api)
                except OSError as exc:
                    raise Unavailable(
                        f"cannot listen on Addresses.API {self.config.api}: {exc.strerror or exc}"
                    ) from exc
                (self.repo / "api").write_text(str(self.api.multiaddr))
        except BaseException:
            await self._stop_network()
            raise
        self._started = True
        log.info(
            "IPFS node %s started; swarm %s; %s", self.peer_id, [str(a) for a in self.host.addrs],
            f"private network (swarm.key {fingerprint(self.swarm_key)})" if self.swarm_key else "public network",
        )

    async def _stop_network(self) -> None:
        for task in (self._bootstrap_task, self._bandwidth_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._bootstrap_task = self._bandwidth_task = None
        if self.api is not None:
            await self.api.stop()
            self.api = None
            with contextlib.suppress(FileNotFoundError):
                (self.repo / "api").unlink()
        if self.exchange is not None:
            await self.exchange.stop()
            self.exchange = None
        if self.host is not None:
            await self.host.close()
            self.host = None
        self._started = False

    async def stop(self) -> None:
        """Stop serving, close peers, close storage and release the repo lock; safe to call twice."""
        await self._stop_network()
        if self._closed:
            return
        self._closed = True
        await self.pins.close()
        if not self._lock_file.closed:
            self._lock_file.close()

    async def __aenter__(self) -> IpfsNode:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- facts -----------------------------------------------------------------------------------------------
    @property
    def peer_id(self) -> PeerID:
        return self.config.peer_id

    def swarm_addrs(self) -> list[Multiaddr]:
        """Dialable swarm addresses with /p2p/<id>, as the host lists them (a 0.0.0.0 listener once per
        interface address)."""
        return [] if self.host is None else list(self.host.addrs)

    def getter(self, *, cache: bool = True, timeout: float | None = None) -> FetchSession:
        """A BlockGetter over local blocks then peers, timing out ``timeout`` s after the last block received."""
        if self.exchange is None:
            raise PinclusterError("the IPFS node is not started")
        return self.exchange.session(self.fetch_timeout if timeout is None else timeout, cache=cache)

    # -- swarm -----------------------------------------------------------------------------------------------
    async def connect(self, addr: Multiaddr) -> PeerID:
        """Dial a peer of the private network; errors from the peer layer say why (e.g. a different key)."""
        if self.host is None:
            raise PinclusterError("the IPFS node is not started")
        pid = await self.host.connect(addr)
        self.host.peerstore.add_addrs(pid, [addr.without_p2p()])
        return pid

    def set_bootstrap(self, addrs: Sequence[Multiaddr]) -> None:
        """Replace the Bootstrap list (``bootstrap add|rm``): saved in the repo's config, and dialled from now on
        (the loop reads the list each round; it starts if it was not running)."""
        self.config.bootstrap = list(addrs)
        self.config.save(self.repo)
        if self.config.bootstrap and self._bootstrap_task is None and self.host is not None:
            self._bootstrap_task = asyncio.create_task(self._bootstrap_loop(), name="ipfs-bootstrap")

    async def _bootstrap_loop(self) -> None:
        """Keep the Bootstrap peers connected: dial at start and retry every 10 s for those not connected."""
        assert self.host is not None
        while True:
            connected = set(self.host.connected_peers())
            for addr in self.config.bootstrap:
                if addr.peer_id in connected:
                    continue
                try:
                    await asyncio.wait_for(self.connect(addr), self.host.connect_timeout + 1)
                    log.info("bootstrap: connected to %s", addr)
                except (PinclusterError, OSError, TimeoutError) as exc:
                    log.warning("bootstrap: cannot connect to %s: %s", addr, exc)
            await asyncio.sleep(10.0)


def init_repo(
    repo: Path | str,
    *,
    api: str = "/ip4/127.0.0.1/tcp/5001",
    swarm: Sequence[str] = ("/ip4/0.0.0.0/tcp/4001",),
    bootstrap: Sequence[str] = (),
    storage: str = "blocks",
    swarm_key: bytes | None = None,
    swarm_key_path: str = "swarm.key",
    fetch_timeout: str = "30s",
) -> NodeConfig:
    """Create a repo (new Ed25519 identity, config, optional swarm key); refuses an initialised one.

    The CLI's ``init`` and the cluster daemon (embedded node) both use this.
    """
    path = Path(repo).expanduser()
    if (path / "config").exists():
        raise ConfigError("config", f"{path} is already initialized (remove {path / 'config'} to start over)")
    cfg = NodeConfig.from_json({
        **NodeConfig.generate().to_json(),
        "Addresses": {"API": api, "Swarm": list(swarm)},
        "Bootstrap": list(bootstrap), "Datastore": {"Path": storage, "StorageMax": "10GB"},
        "Swarm": {"KeyPath": swarm_key_path}, "Exchange": {"FetchTimeout": fetch_timeout},
    })
    if swarm_key is not None:
        write_swarm_key(cfg.resolve(path, swarm_key_path), swarm_key)
    cfg.save(path)
    return cfg


def _lock_repo(repo: Path) -> IO[bytes]:
    """Take the repo's exclusive lock (flock: released by the kernel if the process dies, even by kill -9)."""
    repo.mkdir(parents=True, exist_ok=True)
    fh = open(repo / "repo.lock", "a+b")  # noqa: SIM115 - held open for the node's lifetime
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        raise LockError(
            f"the IPFS repo {repo} is locked by another process (a running `pincluster-ipfs daemon`?); "
            "stop it first, or use its API"
        ) from None
    with contextlib.suppress(OSError):
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()).encode())
        fh.flush()
    return fh


