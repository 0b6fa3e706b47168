"""The Raft transport seam: how PySyncObj's messages travel between peers, and who may send them.

Today Raft runs PySyncObj's transport logic on a TCP port of its own (``consensus.raft.listen_multiaddress``,
default ``/ip4/0.0.0.0/tcp/9098``) over our own connection class (``SealedConnection``): every message is a
protocol-5 pickle (unpickled through ``safe_pickle``'s allow-list) sealed with AES-256-GCM under a key of
its own per connection direction, derived with HKDF from ``cluster.secret`` and a random salt the sender
picks; the GCM nonce is a frame counter that must go up. A frame that fails authentication is dropped before
it reaches the unpickler, the connection is closed and the failure is logged as a cluster-secret mismatch.
On top, PySyncObj's handshake makes every message carry the random key the receiver chose for the
connection, so frames recorded on one connection are refused on another.

Wire format of a frame: ``length (4, big-endian) | version 2 (1) | salt (16) | counter (8) | ciphertext+tag``;
the plaintext is a flag byte (0 plain, 1 zlib, used only for large messages such as snapshot chunks) and the
pickle. Peers of releases that sealed frames with Fernet cannot talk to this one (the log says so).

The seam is ``SecretTCPTransport`` (a ``pysyncobj.transport.Transport``) plus ``RaftAuthenticator``: to move
Raft onto the peer layer (one cluster port, 9096, as in Go) write another ``Transport`` subclass that sends
PySyncObj's message dicts over a ``/pincluster/raft`` stream of the secure channel, and pass it as
``transport_class`` to ``RaftConsensus``. Nothing else in ``raft.py`` depends on TCP.

Nodes are ``PeerNode`` objects whose id is ``<peer id>@<host>:<port>``, so the Raft configuration itself
records which cluster peer each Raft member is.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import io
import logging
import os
import pickle
import socket
import struct
import threading
import time
import zlib
from typing import TYPE_CHECKING, Any, NoReturn

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pysyncobj.dns_resolver import globalDnsResolver
from pysyncobj.node import Node, TCPNode
from pysyncobj.poller import POLL_EVENT_TYPE, createPoller
from pysyncobj.tcp_connection import CONNECTION_STATE, _getAddrType, set_keepalive
from pysyncobj.transport import TCPTransport

from pincluster.consensus import safe_pickle
from pincluster.errors import InvalidInput, PeerError, Timeout, Unavailable

if TYPE_CHECKING:
    from pincluster.observe.bandwidth import Meter

log = logging.getLogger("pincluster.raft")

_HKDF_SALT = b"pincluster/raft/transport/v1"
_HKDF_INFO = b"pincluster raft fernet key"
_FRAME_KEY_INFO = b"pincluster raft frame key v2"
_WARN_EVERY = 10.0
_FRAME_VERSION = 2
_SALT_LEN = 16
_SEQ_AT = 1 + _SALT_LEN
_HEAD_LEN = _SEQ_AT + 8
_NONCE_PAD = b"\x00\x00\x00\x00"
_LEN = struct.Struct("!I")
_SEQ = struct.Struct("!Q")
_MAX_FIRST_FRAME = 64 * 1024  # before a peer has authenticated, buffer no more than this
_MAX_FRAME = 256 * 1024 * 1024
_COMPRESS_MIN = 128 * 1024
_COMPRESS_SAMPLE = 8 * 1024
_RECV_CHUNK = 256 * 1024
# Receive buffers, one per thread (the Raft thread reads every connection; a one-off request may read on
# another): ``sock.recv(256 KiB)`` allocates that much for each call, above malloc's mmap threshold, and cost
# ~20 µs more per call than ``recv_into`` a buffer kept for the next one (~4 µs; several reads a Raft round).
_RECV_BUFFERS = threading.local()
_READ = POLL_EVENT_TYPE.READ
_WRITE = POLL_EVENT_TYPE.WRITE
_ERROR = POLL_EVENT_TYPE.ERROR

SECRET_MISMATCH = "does not share the same cluster.secret"
#: The name Raft's traffic is counted under in ``GET /health/bandwidth`` (the frame format's version).
RAFT_PROTOCOL = f"/pincluster/raft/{_FRAME_VERSION}"


def _recv_buffer(size: int) -> memoryview:
    """This thread's receive buffer, of at least ``size`` bytes (made once, kept for every read)."""
    view: memoryview | None = getattr(_RECV_BUFFERS, "view", None)
    if view is None or len(view) < size:
        view = _RECV_BUFFERS.view = memoryview(bytearray(size))
    return view


def derive_raft_key(secret: bytes) -> bytes:
    """The 32-byte Raft master key: HKDF-SHA256 of the cluster secret (never the raw secret); each connection
    direction derives its own frame key from it."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=_HKDF_SALT, info=_HKDF_INFO).derive(secret)


class FrameError(Exception):
    """A received Raft frame is malformed, replayed or fails authentication (the connection is closed)."""


class RaftAuthenticator:
    """Seals and opens Raft frames with keys derived from the cluster secret.

    Each TCP connection direction gets its own AES-256-GCM key: the sender picks a random 16-byte salt and
    derives ``HKDF(raft key, salt)``, so nonces (a per-direction frame counter) never repeat under one key
    even though every peer shares the secret. ``for_connection`` returns a view that names the remote end in
    the log line written when a frame fails authentication.
    """

    def __init__(self, secret: bytes) -> None:
        if not secret:
            log.warning(
                "cluster.secret is empty: Raft traffic is encrypted with a key anyone can derive, so it is "
                "NOT authenticated; set a 32-byte hex cluster.secret on every peer"
            )
        self._key = derive_raft_key(secret)
        self._lock = threading.Lock()
        self._last_warn: dict[str, float] = {}
        self._default_sealer: FrameSealer | None = None
        self.failures = 0

    def connection_key(self, salt: bytes) -> AESGCM:
        """The AEAD of one connection direction, from the salt its sender chose."""
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=_FRAME_KEY_INFO).derive(self._key)
        return AESGCM(key)

    def sealer(self) -> FrameSealer:
        return FrameSealer(self)

    def opener(self, remote: str = "unknown peer") -> FrameOpener:
        return FrameOpener(self, remote)

    def seal(self, plain: bytes) -> bytes:
        """One frame (length prefix included) from this authenticator's own sender; its counter keeps going
        across calls, so successive frames written to one socket are accepted in order (tests, tools)."""
        with self._lock:
            if self._default_sealer is None:
                self._default_sealer = FrameSealer(self)
            sealer = self._default_sealer
        out = bytearray()
        sealer.seal_into(out, plain)
        return bytes(out)

    def report(self, remote: str, why: str) -> None:
        now = time.monotonic()
        with self._lock:
            self.failures += 1
            last = self._last_warn.get(remote, -_WARN_EVERY)
            if now - last < _WARN_EVERY:
                return
            self._last_warn[remote] = now
        log.error(
            "rejected a Raft connection with %s: %s, so it %s as this peer (or it is not a pincluster Raft "
            "endpoint of this release); check cluster.secret on both peers",
            remote,
            why,
            SECRET_MISMATCH,
        )

    def for_connection(self, remote: str) -> _ConnectionAuthenticator:
        return _ConnectionAuthenticator(self, remote)


class _ConnectionAuthenticator:
    """Per-connection view of a ``RaftAuthenticator`` that knows the remote end's name."""

    __slots__ = ("auth", "remote")

    def __init__(self, auth: RaftAuthenticator, remote: str) -> None:
        self.auth = auth
        self.remote = remote

    def sealer(self) -> FrameSealer:
        return FrameSealer(self.auth)

    def opener(self, remote: str | None = None) -> FrameOpener:
        return FrameOpener(self.auth, remote or self.remote)


class FrameSealer:
    """The sending half of one connection: random salt, own key, frame counter (the GCM nonce)."""

    __slots__ = ("_aead", "_head", "_seq")

    def __init__(self, auth: RaftAuthenticator) -> None:
        salt = os.urandom(_SALT_LEN)
        self._aead = auth.connection_key(salt)
        self._head = bytes([_FRAME_VERSION]) + salt
        self._seq = 0

    def seal_into(self, out: bytearray, plain: bytes) -> None:
        """Append one frame: ``len(4) | version(1) | salt(16) | counter(8) | AES-GCM(plain)``."""
        self._seq += 1
        seq = _SEQ.pack(self._seq)
        ct = self._aead.encrypt(_NONCE_PAD + seq, plain, None)
        out += _LEN.pack(_HEAD_LEN + len(ct))
        out += self._head
        out += seq
        out += ct


class FrameOpener:
    """The receiving half: the first authentic frame fixes the sender's salt; later frames must carry the
    same salt and a larger counter (a replayed, reordered or spliced frame is refused)."""

    __slots__ = ("_aead", "_auth", "_remote", "_salt", "_seq")

    def __init__(self, auth: RaftAuthenticator, remote: str) -> None:
        self._auth = auth
        self._remote = remote
        self._salt: bytes | None = None
        self._aead: AESGCM | None = None
        self._seq = 0

    @property
    def authenticated(self) -> bool:
        return self._aead is not None

    def open(self, body: bytes) -> bytes:
        if len(body) < _HEAD_LEN + 16 or body[0] != _FRAME_VERSION:
            self._fail("its frames are not pincluster Raft frames of this release")
        salt = body[1:_SEQ_AT]
        seq_raw = body[_SEQ_AT:_HEAD_LEN]
        (seq,) = _SEQ.unpack(seq_raw)
        aead = self._aead
        if aead is None:
            aead = self._auth.connection_key(salt)
        elif salt != self._salt:
            self._fail("a frame switched keys in the middle of the connection")
        if seq <= self._seq:
            self._fail("a frame was replayed or reordered")
        try:
            plain = aead.decrypt(_NONCE_PAD + seq_raw, memoryview(body)[_HEAD_LEN:], None)
        except InvalidTag:
            self._fail("its messages fail authentication")
        self._aead = aead
        self._salt = salt
        self._seq = seq
        return plain

    def _fail(self, why: str) -> NoReturn:
        self._auth.report(self._remote, why)
        raise FrameError(f"Raft frame from {self._remote} refused: {why}")


def encode_message(message: Any) -> bytes:
    """A PySyncObj message as frame plaintext: a flag byte, then a protocol-5 pickle (bytes travel as bytes,
    no codec globals), zlib-compressed only when large (snapshot chunks): hashes barely compress and zlib
    cost ~1 ms per 40 KB append-entries message."""
    data = pickle.dumps(message, 5)
    if len(data) >= _COMPRESS_MIN:
        # Append-entries of random hashes do not compress: try a sample first (zlib costs ~10 µs per KB).
        sample = data[len(data) // 2:len(data) // 2 + _COMPRESS_SAMPLE]
        if len(zlib.compress(sample, 1)) < len(sample) * 3 // 4:
            packed = zlib.compress(data, 1)
            if len(packed) < len(data) - len(data) // 8:
                return b"\x01" + packed
    return b"\x00" + data


def decode_message(plain: bytes) -> Any:
    """Inverse of ``encode_message``, through the allow-list unpickler."""
    flag = plain[:1]
    if flag == b"\x00":
        return safe_pickle.SafeUnpickler(io.BytesIO(memoryview(plain)[1:]), encoding="latin1").load()
    if flag == b"\x01":
        d = zlib.decompressobj()
        data = d.decompress(memoryview(plain)[1:], _MAX_FRAME)
        if d.unconsumed_tail:
            raise FrameError("a compressed Raft message expands beyond the frame limit")
        return safe_pickle.SafeUnpickler(io.BytesIO(data), encoding="latin1").load()
    raise FrameError(f"unknown Raft message encoding {flag!r}")


class SealedConnection:
    """A drop-in for ``pysyncobj.tcp_connection.TcpConnection`` with AES-GCM frames and cheap buffers.

    Same interface and callbacks as PySyncObj's (the transport code drives it unchanged), but: one AEAD call
    per frame each way instead of Fernet (base64, AES-CBC, HMAC, Python wrapper) plus zlib; bytearray buffers
    instead of ``bytes +=`` and slicing per recv; no ``getsockopt(SO_ERROR)`` after each recv; the poller
    registration changes only when write interest does; a frame counter per direction instead of Fernet's
    one-second timestamps for replay protection.
    """

    def __init__(self, poller: Any, onMessageReceived: Any = None, onConnected: Any = None,
                 onDisconnected: Any = None, sock: socket.socket | None = None, timeout: float = 10.0,
                 sendBufferSize: int = 2 ** 16, recvBufferSize: int = 2 ** 16, keepalive: Any = None,
                 encryptor: Any = None) -> None:
        self.sendRandKey: bytes | None = None
        self.recvRandKey: bytes | None = None
        self.recvLastTimestamp = 0
        self.encryptor = encryptor
        self._poller = poller
        self._timeout = timeout
        self._keepalive = keepalive
        self._send_size = sendBufferSize
        self._recv_size = max(recvBufferSize, _RECV_CHUNK)
        self._on_message = onMessageReceived
        self._on_connected = onConnected
        self._on_disconnected = onDisconnected
        self._rbuf = bytearray()
        self._wbuf = bytearray()
        self._sealer: FrameSealer | None = None
        self._opener: FrameOpener | None = None
        self._last_read = time.monotonic()
        self._mask = 0
        self._sock: socket.socket | None = sock
        self._fileno: int | None = None
        self.remote = "unknown peer"
        #: Where the bytes this connection moves are counted (``GET /health/bandwidth``), if anywhere.
        self.meter: Meter | None = None
        if sock is not None:
            self._fileno = sock.fileno()
            self._state = CONNECTION_STATE.CONNECTED
            with contextlib.suppress(OSError):
                host, port = sock.getpeername()[:2]
                self.remote = f"incoming connection from {join_host_port(host, port)}"
            self._set_keepalive()
            self._subscribe(_READ | _WRITE | _ERROR)
        else:
            self._state = CONNECTION_STATE.DISCONNECTED

    # -- PySyncObj's TcpConnection interface --------------------------------------------------------------

    def setOnConnectedCallback(self, cb: Any) -> None:
        self._on_connected = cb

    def setOnMessageReceivedCallback(self, cb: Any) -> None:
        self._on_message = cb

    def setOnDisconnectedCallback(self, cb: Any) -> None:
        self._on_disconnected = cb

    @property
    def state(self) -> int:
        return int(self._state)

    def fileno(self) -> int | None:
        return self._fileno

    def getSendBufferSize(self) -> int:
        return len(self._wbuf)

    def connect(self, host: str | None, port: int) -> bool:
        if host is None:
            return False
        self._state = CONNECTION_STATE.DISCONNECTED
        self._fileno = None
        sock = socket.socket(_getAddrType(host), socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._send_size)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self._recv_size)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        self._sock = sock
        self._set_keepalive()
        self._reset_buffers()
        self._last_read = time.monotonic()
        try:
            sock.connect((host, port))
        except OSError as e:
            if e.errno not in (errno.EINPROGRESS, errno.EWOULDBLOCK):
                sock.close()
                self._sock = None
                return False
        self._fileno = sock.fileno()
        self._state = CONNECTION_STATE.CONNECTING
        self._mask = 0
        self._subscribe(_READ | _WRITE | _ERROR)
        return True

    def send(self, message: Any) -> None:
        if self._state == CONNECTION_STATE.DISCONNECTED:
            return
        if time.monotonic() - self._last_read > self._timeout:
            self.disconnect()  # as PySyncObj's: nothing heard for connectionTimeout, the peer is gone
            return
        if self.sendRandKey:
            message = (self.sendRandKey, message)
        sealer = self._sealer
        if sealer is None:
            sealer = self._sealer = self._require_encryptor().sealer()
        sealer.seal_into(self._wbuf, encode_message(message))
        self._try_send()

    def disconnect(self) -> None:
        notify = self._on_disconnected is not None and self._state != CONNECTION_STATE.DISCONNECTED
        self.sendRandKey = None
        self.recvRandKey = None
        self.recvLastTimestamp = 0
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._fileno is not None:
            self._poller.unsubscribe(self._fileno)
            self._fileno = None
        self._mask = 0
        self._reset_buffers()
        self._state = CONNECTION_STATE.DISCONNECTED
        if notify:
            self._on_disconnected()

    # -- internals ------------------------------------------------------------------------------------------

    def _require_encryptor(self) -> Any:
        if self.encryptor is None:
            raise FrameError("a Raft connection has no authenticator; refusing to send or receive in the clear")
        return self.encryptor

    def _reset_buffers(self) -> None:
        self._rbuf = bytearray()
        self._wbuf = bytearray()
        self._sealer = None
        self._opener = None

    def _set_keepalive(self) -> None:
        if self._sock is not None and self._keepalive is not None:
            set_keepalive(self._sock, *self._keepalive[:3])

    def _subscribe(self, mask: int) -> None:
        if mask != self._mask and self._fileno is not None:
            self._mask = mask
            self._poller.subscribe(self._fileno, self._process, mask)

    def _process(self, descr: int, event: int) -> None:
        if descr != self._fileno:
            self._poller.unsubscribe(descr)
            return
        if event & _ERROR:
            self.disconnect()
            return
        if time.monotonic() - self._last_read > self._timeout:
            self.disconnect()
            return
        if self._state == CONNECTION_STATE.CONNECTING:
            sock = self._sock
            if sock is None or sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                self.disconnect()
                return
            if self._on_connected is not None:
                self._on_connected()
            if self._state == CONNECTION_STATE.DISCONNECTED:
                return
            self._state = CONNECTION_STATE.CONNECTED
            self._last_read = time.monotonic()
            self._subscribe(_READ | _ERROR | (_WRITE if self._wbuf else 0))
            return
        if event & _WRITE:
            self._try_send()
            if self._state == CONNECTION_STATE.DISCONNECTED:
                return
        if event & _READ:
            self._read()

    def _try_send(self) -> None:
        sock = self._sock
        wbuf = self._wbuf
        if self._state == CONNECTION_STATE.CONNECTED and sock is not None and wbuf:
            try:
                while wbuf:
                    sent = sock.send(wbuf)
                    if sent <= 0:
                        break
                    del wbuf[:sent]
                    if self.meter is not None:
                        self.meter.bytes_out += sent
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                self.disconnect()
                return
        if self._state == CONNECTION_STATE.CONNECTED:
            self._subscribe(_READ | _ERROR | (_WRITE if wbuf else 0))

    def _read(self) -> None:
        sock = self._sock
        assert sock is not None
        view = _recv_buffer(self._recv_size)
        while True:
            try:
                n = sock.recv_into(view)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self.disconnect()
                return
            if not n:
                self.disconnect()
                return
            self._rbuf += view[:n]
            if self.meter is not None:
                self.meter.bytes_in += n
            if n < len(view):
                break
        self._last_read = time.monotonic()
        self._parse()

    def _parse(self) -> None:
        buf = self._rbuf
        pos = 0
        end = len(buf)
        while end - pos >= 4:
            (length,) = _LEN.unpack_from(buf, pos)
            if end - pos - 4 < length and length <= _MAX_FIRST_FRAME:
                break
            body = bytes(buf[pos + 4:pos + 4 + length]) if end - pos - 4 >= length else None
            try:
                message = self._open(length, body)
            except Exception as exc:  # a frame we cannot accept: PySyncObj's connection drops the peer too
                log.debug("closing a Raft connection with %s: %s", self.remote, exc)
                self.disconnect()
                return
            if body is None:
                break  # a large frame, still arriving
            pos += 4 + length
            if self._on_message is not None:
                self._on_message(message)
            if self._state == CONNECTION_STATE.DISCONNECTED or self._rbuf is not buf:
                return
        if pos:
            del buf[:pos]

    def _open(self, length: int, body: bytes | None) -> Any:
        """Check a frame's length (before it has all arrived) and, once complete, authenticate and decode it."""
        opener = self._opener
        if opener is None:
            opener = self._opener = self._require_encryptor().opener()
        limit = _MAX_FRAME if opener.authenticated else _MAX_FIRST_FRAME
        if length > limit:
            opener._fail(f"it sent a frame of {length} bytes")
        if body is None:
            return None
        message = decode_message(opener.open(body))
        if self.recvRandKey:
            rand_key, message = message
            if rand_key != self.recvRandKey:
                raise FrameError("a Raft message carries another connection's key")
        return message


class SealedServer:
    """PySyncObj's ``TcpServer`` (same interface), handing out ``SealedConnection``s."""

    def __init__(self, poller: Any, host: str, port: int | str, onNewConnection: Any,
                 sendBufferSize: int = 2 ** 16, recvBufferSize: int = 2 ** 16, connectionTimeout: float = 3.5,
                 keepalive: Any = None) -> None:
        self._poller = poller
        self._host = host
        self._port = int(port)
        self._family = _getAddrType(host)
        self._send_size = sendBufferSize
        self._recv_size = recvBufferSize
        self._timeout = connectionTimeout
        self._keepalive = keepalive
        self._on_new = onNewConnection
        self._sock: socket.socket | None = None
        self._fileno: int | None = None

    def bind(self) -> None:
        sock = socket.socket(self._family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._send_size)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self._recv_size)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setblocking(False)
            sock.bind((self._host, self._port))
            sock.listen(16)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._fileno = sock.fileno()
        self._poller.subscribe(self._fileno, self._accept, _READ | _ERROR)

    @property
    def port(self) -> int:
        """The bound port (useful after binding port 0)."""
        return int(self._sock.getsockname()[1]) if self._sock is not None else self._port

    def unbind(self) -> None:
        if self._fileno is not None:
            self._poller.unsubscribe(self._fileno)
            self._fileno = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _accept(self, descr: int, event: int) -> None:
        if event & _READ and self._sock is not None:
            try:
                sock, _addr = self._sock.accept()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._send_size)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self._recv_size)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setblocking(False)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.unbind()
                return
            conn = SealedConnection(poller=self._poller, sock=sock, timeout=self._timeout,
                                    sendBufferSize=self._send_size, recvBufferSize=self._recv_size,
                                    keepalive=self._keepalive)
            self._on_new(conn)
        if event & _ERROR:
            self.unbind()


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


# PySyncObj messages that tell another peer this one holds journal entries.
_VOUCHING = frozenset({"append_entries", "next_node_idx"})


class SecretTCPTransport(TCPTransport):  # type: ignore[misc]
    """PySyncObj's TCP transport over ``SealedConnection``s, whose authenticators name the remote end."""

    def __init__(self, syncObj: Any, selfNode: Any, otherNodes: Any) -> None:
        self._auth: RaftAuthenticator = syncObj.authenticator
        self._meter: Meter | None = getattr(syncObj, "bandwidth_meter", None)
        self._sync_journal: bool = bool(getattr(syncObj, "sync_journal", True))
        self._flushed_mark: tuple[int, Any] = (0, None)
        self.journal_flushes = 0
        #: Log entries sent in append-entries messages, and how many of them had been sent to that node
        #: already (sent again after it answered ``reset``, or a duplicate send: see ``_PinsetSyncObj``).
        self.entries_sent = 0
        self.entries_resent = 0
        self._highest_sent: dict[Any, int] = {}
        #: Set by the leader around the append-entries it sends at the end of a tick; it syncs right after
        #: (``flush_journal``), before its next poll, so the disk write overlaps the replication (Raft §10.2.1)
        #: and the leader's log is durable before any answer can make it count itself in a majority.
        self.defer_journal_sync = False
        super().__init__(syncObj, selfNode, otherNodes)

    def send(self, node: Any, message: Any) -> bool:
        """As PySyncObj's, but the journal reaches the disk before a message that vouches for it leaves.

        Raft counts an entry as stored by a peer once that peer says so: a follower's ``next_node_idx`` answer
        and the leader's own ``append_entries`` (the leader counts itself in the majority). PySyncObj's journal
        is an mmap it never syncs, so after a power loss a majority could have "forgotten" a committed entry;
        sync it first (only when entries were added since the last sync)."""
        if self._sync_journal and isinstance(message, dict) and message.get("type") in _VOUCHING and not (
                self.defer_journal_sync and message.get("type") == "append_entries"):
            self.flush_journal()
        if isinstance(message, dict) and message.get("entries"):
            self._count_entries(node, message["entries"])
        return bool(super().send(node, message))

    def _count_entries(self, node: Any, entries: list[Any]) -> None:
        first, last = int(entries[0][1]), int(entries[-1][1])  # (command, index, term)
        highest = self._highest_sent.get(node, 0)
        self.entries_sent += len(entries)
        if first <= highest:
            self.entries_resent += min(highest, last) - first + 1
        if last > highest:
            self._highest_sent[node] = last

    def flush_journal(self) -> None:
        """Sync the journal if entries were added since the last sync (PySyncObj's flush: an fdatasync on
        Linux, see ``journal.install``)."""
        if not self._sync_journal:
            return
        journal = getattr(self._syncObj, "_SyncObj__raftLog", None)
        flush = getattr(journal, "flush", None)
        if journal is None or flush is None:
            return  # an in-memory journal (tests): nothing to sync
        n = len(journal)
        mark = (n, journal[n - 1][1:] if n else None)
        if mark == self._flushed_mark:
            return
        flush()
        self._flushed_mark = mark
        self.journal_flushes += 1

    def _createServer(self) -> None:
        conf = self._syncObj.conf
        bind = conf.bindAddress
        if bind is not None:
            host, port = bind.rsplit(":", 1)
        else:
            host, port = self._selfNode.address.rsplit(":", 1)
            host = "::" if ":" in host else "0.0.0.0"
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if host not in ("0.0.0.0", "::"):
            host = globalDnsResolver().resolve(host)
        self._server = SealedServer(self._syncObj._poller, host, port, onNewConnection=self._onNewIncomingConnection,
                                    sendBufferSize=conf.sendBufferSize, recvBufferSize=conf.recvBufferSize,
                                    connectionTimeout=conf.connectionTimeout, keepalive=conf.tcp_keepalive)

    def _onNewIncomingConnection(self, conn: SealedConnection) -> None:
        super()._onNewIncomingConnection(conn)
        conn.encryptor = self._auth.for_connection(conn.remote)
        conn.meter = self._meter

    def addNode(self, node: Any) -> None:
        """As PySyncObj's, with a ``SealedConnection`` for the nodes this peer dials."""
        self._nodes.add(node)
        self._nodeAddrToNode[node.address] = node
        if self._shouldConnect(node):
            conf = self._syncObj.conf
            conn = SealedConnection(
                poller=self._syncObj._poller,
                timeout=conf.connectionTimeout,
                sendBufferSize=conf.sendBufferSize,
                recvBufferSize=conf.recvBufferSize,
                keepalive=conf.tcp_keepalive,
                encryptor=self._auth.for_connection(f"peer {node.id}"),
            )
            conn.meter = self._meter
            conn.setOnConnectedCallback(functools.partial(self._onOutgoingConnected, conn))
            conn.setOnMessageReceivedCallback(functools.partial(self._onMessageReceived, node))
            conn.setOnDisconnectedCallback(functools.partial(self._onDisconnected, conn))
            self._connections[node] = conn


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

    def on_message(conn: SealedConnection, message: Any) -> None:
        if not conn.sendRandKey:
            conn.sendRandKey = message
            state["handshake"] = True
            conn.send(command)
            return
        state["result"] = message
        state["got"] = True
        conn.disconnect()

    def on_connected(conn: SealedConnection) -> None:
        conn.recvRandKey = os.urandom(32)
        conn.send(conn.recvRandKey)

    def on_disconnected() -> None:
        state["open"] = False

    conn = SealedConnection(poller, timeout=timeout, encryptor=auth.for_connection(f"peer at {address}"))
    conn.setOnMessageReceivedCallback(functools.partial(on_message, conn))
    conn.setOnConnectedCallback(functools.partial(on_connected, conn))
    conn.setOnDisconnectedCallback(on_disconnected)
    if not conn.connect(str(ip), port):
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
    """A frame around an already-pickled ``payload`` (used by tests that play an attacker): sealed by
    ``auth``'s own sender (successive frames count up, as on one connection), or bare without ``auth``."""
    plain = b"\x00" + payload
    if auth is None:
        return _LEN.pack(len(plain)) + plain
    return auth.seal(plain)
