"""The Raft transport seam: how PySyncObj's messages travel between peers, and who may send them.

Today Raft runs PySyncObj's own TCP transport on a port of its own (``consensus.raft.listen_multiaddress``,
default ``/ip4/0.0.0.0/tcp/9098``), with every frame sealed by Fernet (AES-128-CBC + HMAC-SHA256) under a key
derived from ``cluster.secret`` with HKDF. A frame that fails authentication is dropped before it reaches the
unpickler, the connection is closed and the failure is logged as a cluster-secret mismatch.

The seam is ``SecretTCPTransport`` (a ``pysyncobj.transport.Transport``) plus ``RaftAuthenticator``: to move
Raft onto the peer layer (one cluster port, 9096, as in Go) write another ``Transport`` subclass that sends
PySyncObj's message dicts over a ``/pincluster/raft`` stream of the secure channel, and pass it as
``transport_class`` to ``RaftConsensus``. Nothing else in ``raft.py`` depends on TCP.

Nodes are ``PeerNode`` objects whose id is ``<peer id>@<host>:<port>``, so the Raft configuration itself
records which cluster peer each Raft member is.
"""

from __future__ import annotations

import base64
import functools
import logging
import os
import socket
import struct
import threading
import time
import zlib
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pysyncobj.node import Node, TCPNode
from pysyncobj.poller import createPoller
from pysyncobj.tcp_connection import CONNECTION_STATE, TcpConnection
from pysyncobj.transport import TCPTransport

from pincluster.errors import InvalidInput, PeerError, Timeout, Unavailable

log = logging.getLogger("pincluster.raft")

_HKDF_SALT = b"pincluster/raft/transport/v1"
_HKDF_INFO = b"pincluster raft fernet key"
_WARN_EVERY = 10.0

SECRET_MISMATCH = "does not share the same cluster.secret"


def derive_raft_key(secret: bytes) -> bytes:
    """The 32-byte Fernet key for Raft traffic: HKDF-SHA256 of the cluster secret (never the raw secret)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=_HKDF_SALT, info=_HKDF_INFO).derive(secret)


class RaftAuthenticator:
    """Seals and opens PySyncObj frames with the key derived from the cluster secret.

    It has the three methods ``pysyncobj.tcp_connection`` calls on its ``encryptor`` (``encrypt_at_time``,
    ``extract_timestamp``, ``decrypt``). ``for_connection`` returns a view that names the remote end in the
    log line written when a frame fails authentication.
    """

    def __init__(self, secret: bytes) -> None:
        if not secret:
            log.warning(
                "cluster.secret is empty: Raft traffic is encrypted with a key anyone can derive, so it is "
                "NOT authenticated; set a 32-byte hex cluster.secret on every peer"
            )
        self._fernet = Fernet(base64.urlsafe_b64encode(derive_raft_key(secret)))
        self._lock = threading.Lock()
        self._last_warn: dict[str, float] = {}
        self.failures = 0

    def encrypt_at_time(self, data: bytes, current_time: int) -> bytes:
        return self._fernet.encrypt_at_time(data, current_time)

    def extract_timestamp(self, token: bytes, remote: str = "unknown peer") -> int:
        try:
            return self._fernet.extract_timestamp(token)
        except InvalidToken:
            self._report(remote)
            raise

    def decrypt(self, token: bytes) -> bytes:
        return self._fernet.decrypt(token)

    def _report(self, remote: str) -> None:
        now = time.monotonic()
        with self._lock:
            self.failures += 1
            last = self._last_warn.get(remote, -_WARN_EVERY)
            if now - last < _WARN_EVERY:
                return
            self._last_warn[remote] = now
        log.error(
            "rejected a Raft connection with %s: its messages fail authentication, so it %s as this peer "
            "(or it is not a pincluster Raft endpoint); check cluster.secret on both peers",
            remote,
            SECRET_MISMATCH,
        )

    def for_connection(self, remote: str) -> _ConnectionAuthenticator:
        return _ConnectionAuthenticator(self, remote)


class _ConnectionAuthenticator:
    """Per-connection view of a ``RaftAuthenticator`` that knows the remote end's name."""

    __slots__ = ("_auth", "_remote")

    def __init__(self, auth: RaftAuthenticator, remote: str) -> None:
        self._auth = auth
        self._remote = remote

    def encrypt_at_time(self, data: bytes, current_time: int) -> bytes:
        return self._auth.encrypt_at_time(data, current_time)

    def extract_timestamp(self, token: bytes) -> int:
        return self._auth.extract_timestamp(token, self._remote)

    def decrypt(self, token: bytes) -> bytes:
        return self._auth.decrypt(token)


def split_host_port(address: str) -> tuple[str, int]:
    """``"127.0.0.1:9098"`` / ``"[::1]:9098"`` → (host, port); raises InvalidInput."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not host:
        raise InvalidInput(f"invalid Raft address {address!r}: expected host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_text)
    except ValueError:
        raise InvalidInput(f"invalid Raft address {address!r}: port {port_text!r} is not a number")
    if not 0 < port < 65536:
        raise InvalidInput(f"invalid Raft address {address!r}: port out of range")
    return host, port


def join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class PeerNode(TCPNode):  # type: ignore[misc]
    """A Raft member: cluster peer id plus the host:port of its Raft endpoint; id ``<peer>@<host>:<port>``."""

    def __init__(self, spec: str, **kwargs: Any) -> None:
        peer_id, sep, address = spec.partition("@")
        if not sep or not peer_id or not address:
            raise InvalidInput(f"invalid Raft node {spec!r}: expected <peer id>@<host>:<port>")
        host, port = split_host_port(address)
        Node.__init__(self, spec, **kwargs)
        self._TCPNode__address = spec
        self._TCPNode__host = host
        self._TCPNode__port = port
        self.peer_id = peer_id

    @staticmethod
    def spec(peer_id: str, host: str, port: int) -> str:
        return f"{peer_id}@{join_host_port(host, port)}"


class SecretTCPTransport(TCPTransport):  # type: ignore[misc]
    """PySyncObj's TCP transport with per-connection authenticators that name the remote end in errors."""

    def __init__(self, syncObj: Any, selfNode: Any, otherNodes: Any) -> None:
        self._auth: RaftAuthenticator = syncObj.authenticator
        self._sync_journal: bool = bool(getattr(syncObj, "sync_journal", True))
        super().__init__(syncObj, selfNode, otherNodes)

    def _onNewIncomingConnection(self, conn: TcpConnection) -> None:
        super()._onNewIncomingConnection(conn)
        remote = "an incoming connection"
        sock = getattr(conn, "_TcpConnection__socket", None)
        if sock is not None:
            try:
                host, port = sock.getpeername()[:2]
                remote = f"incoming connection from {join_host_port(host, port)}"
            except OSError:
                pass
        conn.encryptor = self._auth.for_connection(remote)

    def addNode(self, node: Any) -> None:
        super().addNode(node)
        conn = self._connections.get(node)
        if conn is not None:
            conn.encryptor = self._auth.for_connection(f"peer {node.id}")


def raft_request(auth: RaftAuthenticator, address: str, command: list[Any], timeout: float) -> Any:
    """Send one PySyncObj utility command (``['add', spec]``, ``['status']`` …) to ``address`` and wait.

    Blocking: call it from a worker thread. Raises PeerError when the far end closes the connection during
    the authenticated handshake (the usual sign of a different cluster secret), Unavailable when it cannot be
    reached, Timeout when it does not answer.
    """
    host, port = split_host_port(address)
    try:
        ip = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][4][0]
    except OSError as exc:
        raise Unavailable(f"cannot resolve Raft address {address}: {exc}") from exc
    poller = createPoller("auto")
    state: dict[str, Any] = {"result": None, "got": False, "handshake": False, "open": True}

    def on_message(conn: TcpConnection, message: Any) -> None:
        if not conn.sendRandKey:
            conn.sendRandKey = message
            state["handshake"] = True
            conn.send(command)
            return
        state["result"] = message
        state["got"] = True
        conn.disconnect()

    def on_connected(conn: TcpConnection) -> None:
        conn.recvRandKey = os.urandom(32)
        conn.send(conn.recvRandKey)

    def on_disconnected() -> None:
        state["open"] = False

    conn = TcpConnection(poller, timeout=timeout)
    conn.encryptor = auth.for_connection(f"peer at {address}")
    conn.setOnMessageReceivedCallback(functools.partial(on_message, conn))
    conn.setOnConnectedCallback(functools.partial(on_connected, conn))
    conn.setOnDisconnectedCallback(on_disconnected)
    if not conn.connect(ip, port):
        raise Unavailable(f"cannot connect to the Raft endpoint at {address}")
    deadline = time.monotonic() + timeout
    connected_once = False
    while state["open"]:
        poller.poll(0.05)
        if conn.state == CONNECTION_STATE.CONNECTED:
            connected_once = True
        if time.monotonic() > deadline:
            conn.disconnect()
            raise Timeout(f"the Raft endpoint at {address} did not answer within {timeout:.1f}s")
    if state["got"]:
        return state["result"]
    if not connected_once:
        raise Unavailable(f"cannot connect to the Raft endpoint at {address} (connection refused or reset)")
    if not state["handshake"]:
        raise PeerError(
            f"the peer at {address} closed the Raft connection during the authenticated handshake: this peer "
            f"{SECRET_MISMATCH} as {address} (or {address} is not a pincluster Raft endpoint)"
        )
    raise Unavailable(f"the Raft endpoint at {address} closed the connection before answering")


def sealed_frame(payload: bytes, auth: RaftAuthenticator | None) -> bytes:
    """PySyncObj's wire framing around an already-pickled ``payload`` (used by tests that play an attacker)."""
    data = zlib.compress(payload, 3)
    if auth is not None:
        data = auth.encrypt_at_time(data, int(time.monotonic()))
    return struct.pack("i", len(data)) + data
