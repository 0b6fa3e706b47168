"""The peer host: listens, dials, verifies peers, and hands out multiplexed streams.

One Host per secret and protocol: the cluster's RPC uses ``cluster.secret`` and ``/pincluster/rpc/<v>``,
the embedded IPFS node uses ``swarm.key`` and ``/pincluster/ipfs/<v>``; both get the same handshake,
framing and errors (see docs/p2p.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import psutil

from pincluster.errors import InvalidInput, PinclusterError, Unavailable
from pincluster.p2p.errors import ConnectFailed, HandshakeError
from pincluster.p2p.handshake import Handshaker, SecureChannel, parse_protocol
from pincluster.p2p.keys import PrivateKey
from pincluster.p2p.mux import Connection, Stream
from pincluster.p2p.peerstore import Peerstore
from pincluster.types.multiaddr import Multiaddr
from pincluster.types.peer import PeerID

if TYPE_CHECKING:
    from pincluster.observe.bandwidth import BandwidthCounter

__all__ = ["Host", "Stream"]

log = logging.getLogger("pincluster.p2p")

StreamHandler = Callable[[Stream], Awaitable[None]]


class Host:
    """A verified, multiplexed peer endpoint (the API the RPC layer and the IPFS node's swarm build on)."""

    def __init__(
        self,
        key: PrivateKey,
        psk: bytes,
        protocol: str,
        listen: list[Multiaddr],
        *,
        max_message_size: int = 4 << 20,
        connect_timeout: float = 5.0,
        psk_name: str = "cluster.secret",
        peerstore_path: str | os.PathLike[str] | None = None,
        keepalive: float | None = 15.0,
        bandwidth: BandwidthCounter | None = None,
    ) -> None:
        if psk == b"":
            psk = bytes(32)  # no private network (empty cluster.secret): every peer uses the same zero key
        if len(psk) != 32:
            raise InvalidInput(f"{psk_name} must be 32 bytes (64 hex characters), got {len(psk)} bytes")
        self._hs = Handshaker(key, psk, protocol, psk_name)
        self.protocol = protocol
        self.peer_id: PeerID = self._hs.peer_id
        self.listen = list(listen)
        self.addrs: list[Multiaddr] = []
        self.max_message_size = max_message_size
        self.connect_timeout = connect_timeout
        self.psk_name = psk_name
        self.keepalive = keepalive
        #: Counts the bytes of every connection, under this host's protocol name and the remote peer's ID.
        self.bandwidth = bandwidth
        self.peerstore = Peerstore(peerstore_path)
        self._handlers: dict[str, StreamHandler] = {}
        self._conns: dict[PeerID, list[Connection]] = {}
        self._servers: list[asyncio.Server] = []
        self._pending: set[asyncio.Task[None]] = set()
        self._dials: dict[str, asyncio.Future[PeerID]] = {}
        self._closed = False
        self.on_connect: list[Callable[[PeerID], None]] = []
        self.on_disconnect: list[Callable[[PeerID], None]] = []

    # ----- lifecycle
    async def start(self) -> None:
        """Bind every listen address (port 0 → a free port) and load the peerstore file."""
        if self.peerstore.path is not None:
            n = self.peerstore.load()
            log.debug("peerstore: %d addresses loaded from %s", n, self.peerstore.path)
        for ma in self.listen:
            host, port = ma.tcp_host_port()
            try:
                srv = await asyncio.start_server(self._on_accept, host, port, limit=1 << 17)
            except OSError as e:
                await self.close()
                raise Unavailable(f"cannot listen on {ma}: {e.strerror or e}") from e
            self._servers.append(srv)
            for sock in srv.sockets:
                h, p = sock.getsockname()[:2]
                self.addrs += [a.with_p2p(self.peer_id) for a in interface_addrs(Multiaddr.from_host_port(h, p))]
        log.info("p2p host %s (%s) listening on %s", self.peer_id, self.protocol, [str(a) for a in self.addrs])

    async def close(self) -> None:
        """Stop listening, close every connection, save the peerstore."""
        if self._closed:
            return
        self._closed = True
        for srv in self._servers:
            srv.close()
        for t in list(self._pending):
            t.cancel()
        conns = [c for lst in self._conns.values() for c in lst]
        await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)
        for srv in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(srv.wait_closed(), 1.0)
        if self.peerstore.path is not None:
            try:
                self.peerstore.save()
            except OSError as e:
                log.error("could not save the peerstore to %s: %s", self.peerstore.path, e)

    # ----- handlers and streams
    def set_stream_handler(self, name: str, handler: StreamHandler) -> None:
        self._handlers[name] = handler

    def remove_stream_handler(self, name: str) -> None:
        self._handlers.pop(name, None)

    async def new_stream(self, peer: PeerID, name: str) -> Stream:
        """Open a stream named ``name`` to ``peer``, dialling a known address if not connected."""
        conn = self._live(peer)
        if conn is None:
            await self._dial_known(peer)
            conn = self._live(peer)
            if conn is None:
                raise Unavailable(f"no connection to peer {peer}")
        return await conn.open_stream(name)

    def connected_peers(self) -> list[PeerID]:
        return [p for p, lst in self._conns.items() if any(not c.is_closed for c in lst)]

    def is_connected(self, peer: PeerID) -> bool:
        return self._live(peer) is not None

    async def disconnect(self, peer: PeerID) -> None:
        for c in list(self._conns.get(peer, ())):
            await c.close()

    # ----- dialling
    async def connect(self, addr: Multiaddr) -> PeerID:
        """Dial ``addr``; with ``/p2p/<id>`` the far end must prove it is that peer. Reuses a connection."""
        expected = addr.peer_id
        if expected is not None:
            if expected == self.peer_id:
                raise InvalidInput(f"{addr} is this peer's own address; cannot dial self")
            if self._live(expected) is not None:
                return expected
        key = str(addr)
        fut = self._dials.get(key)
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            self._dials[key] = fut
            try:
                pid = await self._dial(addr, expected)
                fut.set_result(pid)
            except BaseException as e:
                fut.set_exception(e)
                fut.exception()  # mark retrieved: only the waiters care
                raise
            finally:
                del self._dials[key]
            return pid
        return await asyncio.shield(fut)

    async def _dial(self, addr: Multiaddr, expected: PeerID | None) -> PeerID:
        try:
            host, port = addr.tcp_host_port()
        except InvalidInput as e:
            raise InvalidInput(f"cannot dial {addr}: only /ip4, /ip6 and /dns with /tcp are supported ({e})")
        where = str(addr)
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, limit=1 << 17, family=_family(addr)), self.connect_timeout
            )
        except ConnectionRefusedError as e:
            raise ConnectFailed(f"connection refused by {addr}: no peer is listening there") from e
        except TimeoutError as e:
            raise ConnectFailed(f"connecting to {addr} timed out after {self.connect_timeout:g} s") from e
        except OSError as e:
            raise ConnectFailed(f"cannot connect to {addr}: {e.strerror or e}") from e
        _tune(writer)
        try:
            res = await asyncio.wait_for(
                self._hs.initiate(reader, writer, where, expected, [str(a) for a in self.addrs]),
                self.connect_timeout,
            )
        except TimeoutError:
            writer.close()
            err = HandshakeError(f"handshake with {addr} timed out after {self.connect_timeout:g} s")
            log.warning("%s", err)
            raise err from None
        except PinclusterError as e:
            writer.close()
            log.warning("%s", e)
            raise
        except BaseException:
            writer.close()
            raise
        self._add_conn(res.remote_peer, res.channel, True, where, res.remote_addrs, dialed=addr,
                       protocol=res.remote_protocol)
        return res.remote_peer

    async def _dial_known(self, peer: PeerID) -> None:
        addrs = self.peerstore.addrs(peer)
        if not addrs:
            raise Unavailable(f"peer {peer} is not connected and the peerstore has no address for it")
        errors: list[str] = []
        for a in addrs:
            try:
                await self.connect(a.with_p2p(peer))
                return
            except PinclusterError as e:
                errors.append(str(e))
        raise Unavailable(f"cannot reach peer {peer}: " + "; ".join(errors))

    async def bootstrap(self, limit: int = 3) -> list[PeerID]:
        """Dial known peers (peerstore order) until ``limit`` are connected; failures are logged."""
        peers = [p for p in self.peerstore.peers() if p != self.peer_id]
        ok: list[PeerID] = []
        for p in peers:
            if len(ok) >= limit:
                break
            try:
                if self._live(p) is None:
                    await self._dial_known(p)
                ok.append(p)
            except PinclusterError as e:
                log.warning("bootstrap: %s", e)
        return ok

    # ----- accepting
    async def _on_accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._pending.add(task)
        peername = writer.get_extra_info("peername")
        where = f"{peername[0]}:{peername[1]}" if peername else "unknown remote"
        _tune(writer)
        try:
            res = await asyncio.wait_for(
                self._hs.respond(reader, writer, where, [str(a) for a in self.addrs]), self.connect_timeout
            )
        except TimeoutError:
            log.warning("incoming connection from %s: handshake timed out", where)
            writer.close()
            return
        except PinclusterError as e:
            log.warning("incoming connection refused: %s", e)
            writer.close()
            return
        except (ConnectionError, asyncio.CancelledError):
            writer.close()
            return
        finally:
            self._pending.discard(task)
        self._add_conn(res.remote_peer, res.channel, False, where, res.remote_addrs, dialed=None,
                       protocol=res.remote_protocol)

    def _add_conn(
        self,
        peer: PeerID,
        chan: SecureChannel,
        initiator: bool,
        where: str,
        announced: list[str],
        dialed: Multiaddr | None,
        protocol: str = "",
    ) -> None:
        if self._closed:
            chan.close()
            return
        try:
            _family, major, minor = parse_protocol(protocol)
        except HandshakeError:
            major = minor = 0
        if self.bandwidth is not None:
            chan.meters = (self.bandwidth.meter(self.protocol), self.bandwidth.peer_meter(str(peer)))
        conn = Connection(
            chan, peer, initiator, self._handlers.get, self.max_message_size, self._conn_closed, where,
            keepalive=self.keepalive, remote_version=(major, minor),
        )
        first = self._live(peer) is None
        self._conns.setdefault(peer, []).append(conn)
        learnt: list[Multiaddr] = [dialed] if dialed is not None else []
        for text in announced[:16]:
            try:
                ma = Multiaddr(text)
            except InvalidInput:
                continue
            if ma.peer_id == peer and not _unspecified(ma):
                learnt.append(ma)
        if learnt:
            try:
                self.peerstore.add_addrs(peer, learnt)
            except (InvalidInput, OSError) as e:
                log.warning("peerstore: %s", e)
        log.debug("connected to %s via %s (%s)", peer, where, "out" if initiator else "in")
        if first:
            for cb in self.on_connect:
                cb(peer)

    def _conn_closed(self, conn: Connection) -> None:
        lst = self._conns.get(conn.remote_peer)
        if lst is None:
            return
        with contextlib.suppress(ValueError):
            lst.remove(conn)
        if not any(not c.is_closed for c in lst):
            self._conns.pop(conn.remote_peer, None)
            log.debug("disconnected from %s", conn.remote_peer)
            for cb in self.on_disconnect:
                cb(conn.remote_peer)

    def _live(self, peer: PeerID) -> Connection | None:
        for c in self._conns.get(peer, ()):
            if not c.is_closed:
                return c
        return None


def _tune(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    transport = writer.transport
    with contextlib.suppress(AttributeError, NotImplementedError):
        transport.set_write_buffer_limits(high=1 << 20)


def _family(ma: Multiaddr) -> int:
    """/dns4 and /ip4 dial IPv4 only, /dns6 and /ip6 IPv6 only; /dns either."""
    if ma.has("ip4") or ma.has("dns4"):
        return socket.AF_INET
    if ma.has("ip6") or ma.has("dns6"):
        return socket.AF_INET6
    return socket.AF_UNSPEC


def interface_addrs(ma: Multiaddr) -> list[Multiaddr]:
    """``ma`` as libp2p lists a host's addresses: an unspecified IP (0.0.0.0, ::) becomes each address of that
    family on the machine's interfaces (loopback included, link-local IPv6 left out), so that ``id`` shows
    addresses another peer can dial; a specific address, or interfaces that cannot be read, give ``ma``."""
    if not _unspecified(ma):
        return [ma]
    family = socket.AF_INET if ma.value_for("ip4") is not None else socket.AF_INET6
    _host, port = ma.tcp_host_port()
    out: list[Multiaddr] = []
    try:
        interfaces = psutil.net_if_addrs()
    except (OSError, RuntimeError):
        return [ma]
    for addrs in interfaces.values():
        for a in addrs:
            ip = a.address.partition("%")[0]
            if a.family != family or ip.lower().startswith("fe80:"):
                continue
            candidate = Multiaddr.from_host_port(ip, port)
            if candidate not in out:
                out.append(candidate)
    return out or [ma]


def _unspecified(ma: Multiaddr) -> bool:
    return ma.value_for("ip4") == "0.0.0.0" or ma.value_for("ip6") == "::"
