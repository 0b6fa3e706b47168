"""Stream multiplexing over one secure channel (yamux-like).

Why yamux's shape: it is simple and proven (credit-based flow control per stream, SYN/FIN/RST flags),
so many concurrent requests share one connection and a slow reader only stalls its own stream.
Every mux frame is exactly one Noise message: ``header(12) || data``; the header is
``version u8 | type u8 | flags u16 | stream_id u32 | length u32`` (big-endian). On a stream, messages are
``u32 length || bytes``; the first message on a new stream names its handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from pincluster.errors import PinclusterError
from pincluster.p2p.errors import ConnectionClosed, MessageTooLarge, NoHandler, StreamReset
from pincluster.p2p.handshake import MAX_PLAINTEXT, SecureChannel

if TYPE_CHECKING:
    from pincluster.types.peer import PeerID

log = logging.getLogger("pincluster.p2p")

HEADER = struct.Struct(">BBHII")
MSG_LEN = struct.Struct(">I")
MAX_DATA = MAX_PLAINTEXT - HEADER.size
VERSION = 0
T_DATA, T_WINDOW, T_PING, T_GOAWAY = 0, 1, 2, 3
F_SYN, F_ACK, F_FIN, F_RST = 1, 2, 4, 8
INITIAL_WINDOW = 1 << 20
MAX_NAME = 256
MAX_STREAMS = 8192  # open streams per connection; more from the remote are reset (bounds memory)

StreamHandlerLookup = Callable[[str], "Callable[[Stream], Awaitable[None]] | None"]


class Stream:
    """One bidirectional, flow-controlled message stream to a peer."""

    def __init__(self, conn: Connection, sid: int, max_message_size: int) -> None:
        self._conn = conn
        self.id = sid
        self.remote_peer: PeerID = conn.remote_peer
        #: (major, minor) of the protocol the remote announced in its handshake ((0, 0) when not known).
        self.remote_version: tuple[int, int] = conn.remote_version
        self.name = ""
        self._max = max_message_size
        self._buf = bytearray()
        self._data_ev = asyncio.Event()
        self._send_window = INITIAL_WINDOW
        self._window_ev = asyncio.Event()
        self._window_ev.set()
        self._unacked = 0  # consumed, not yet credited back to the sender
        self._write_lock = asyncio.Lock()
        self._local_closed = False
        self._remote_closed = False
        self._error: BaseException | None = None
        self._reset_cbs: list[Callable[[BaseException], None]] = []
        self._syn = False  # the next frame must carry SYN (stream not yet announced)
        self._prefix: bytes | None = None  # the handler-name message, sent with the first frame

    # ----- reading
    async def _readexactly(self, n: int) -> bytes | None:
        """Take ``n`` bytes, crediting the sender as pieces are taken (a message may exceed the window)."""
        if len(self._buf) >= n:
            out = bytes(self._buf[:n])
            del self._buf[:n]
            self._credit(n)
            return out
        parts: list[bytes] = []
        need = n
        while need:
            if not self._buf:
                if self._error is not None:
                    raise self._error
                if self._remote_closed:
                    if need == n:
                        return None
                    raise StreamReset(f"stream from {self.remote_peer} ended in the middle of a message")
                self._data_ev.clear()
                await self._data_ev.wait()
                continue
            k = min(need, len(self._buf))
            parts.append(bytes(self._buf[:k]))
            del self._buf[:k]
            self._credit(k)
            need -= k
        return b"".join(parts)

    def _credit(self, n: int) -> None:
        self._unacked += n
        if self._unacked >= INITIAL_WINDOW // 2 and self._error is None and not self._remote_closed:
            self._conn._send_frame(T_WINDOW, 0, self.id, self._unacked)
            self._unacked = 0

    async def read_msg(self) -> bytes | None:
        """One whole message; None at clean end of stream; raises StreamReset/ConnectionClosed on abort."""
        hdr = await self._readexactly(MSG_LEN.size)
        if hdr is None:
            return None
        (n,) = MSG_LEN.unpack(hdr)
        if n > self._max:
            err = MessageTooLarge(n, self._max, "incoming")
            self._reset(err, f"message of {n} bytes exceeds the receiver's limit of {self._max} bytes")
            raise err
        if n == 0:
            return b""
        body = await self._readexactly(n)
        if body is None:
            raise StreamReset(f"stream from {self.remote_peer} ended in the middle of a message")
        return body

    # ----- writing
    async def write_msg(self, data: bytes, *, close: bool = False) -> None:
        """Send one message, waiting for the receiver's window (backpressure).

        ``close=True`` half-closes in the same frame (saves a frame per unary RPC).
        """
        if len(data) > self._max:
            raise MessageTooLarge(len(data), self._max, "outgoing")
        async with self._write_lock:
            if self._error is not None:
                raise self._error
            if self._local_closed:
                raise StreamReset("write on a stream that was closed for writing")
            head = MSG_LEN.pack(len(data))
            if self._prefix is not None:
                head, self._prefix = self._prefix + head, None
            if len(data) < 65536:
                await self._send(memoryview(head + data), close)
            else:
                await self._send(memoryview(head), False)
                await self._send(memoryview(data), close)
            if close:
                self._local_closed = True
                self._maybe_forget()

    async def _send(self, mv: memoryview, fin: bool) -> None:
        pos = 0
        total = len(mv)
        while pos < total:
            while self._send_window <= 0:
                if self._error is not None:
                    raise self._error
                self._window_ev.clear()
                await self._window_ev.wait()
            if self._error is not None:
                raise self._error
            n = min(total - pos, self._send_window, MAX_DATA)
            flags = 0
            if self._syn:
                flags, self._syn = F_SYN, False
            if fin and pos + n == total:
                flags |= F_FIN
            self._conn._send_frame(T_DATA, flags, self.id, n, mv[pos : pos + n])
            self._send_window -= n
            pos += n
            await self._conn.drain()

    def _flush_syn(self) -> None:
        """Announce a new stream that nobody wrote to right away (a reader-first protocol)."""
        if self._prefix is None or self._error is not None or self._write_lock.locked():
            return
        data, self._prefix = self._prefix, None
        self._syn = False
        self._send_window -= len(data)
        with contextlib.suppress(ConnectionClosed):
            self._conn._send_frame(T_DATA, F_SYN, self.id, len(data), memoryview(data))

    async def close(self) -> None:
        """Half-close: no more writes from here; the remote reads end-of-stream after buffered data."""
        async with self._write_lock:
            if self._local_closed or self._error is not None:
                return
            self._local_closed = True
            if self._prefix is not None:
                data, self._prefix = self._prefix, None
                self._syn = False
                self._conn._send_frame(T_DATA, F_SYN | F_FIN, self.id, len(data), memoryview(data))
            else:
                self._conn._send_frame(T_DATA, F_FIN, self.id, 0)
            self._maybe_forget()
        with contextlib.suppress(ConnectionClosed, ConnectionError):
            await self._conn.drain()

    def reset(self) -> None:
        """Abort both directions at once; the remote's pending reads and writes fail with StreamReset."""
        self._reset(StreamReset("stream reset locally"), "reset by the remote peer")

    def on_reset(self, cb: Callable[[BaseException], None]) -> None:
        """Run ``cb(error)`` when the stream is aborted (either side) or the connection dies."""
        if self._error is not None:
            cb(self._error)
        else:
            self._reset_cbs.append(cb)

    @property
    def is_reset(self) -> bool:
        return self._error is not None

    @property
    def remote_closed(self) -> bool:
        """The remote half-closed: everything it will send is buffered or read."""
        return self._remote_closed

    # ----- internals driven by the connection
    def _reset(self, local_err: BaseException, reason: str) -> None:
        if self._error is not None:
            return
        announced = not self._syn
        if announced and not (self._local_closed and self._remote_closed) and not self._conn.is_closed:
            with contextlib.suppress(ConnectionClosed):
                self._conn._send_frame(T_DATA, F_RST, self.id, 0, memoryview(reason.encode()[:1024]))
        self._fail(local_err)

    def _fail(self, err: BaseException) -> None:
        if self._error is not None:
            return
        self._error = err
        self._data_ev.set()
        self._window_ev.set()
        self._conn._streams.pop(self.id, None)
        cbs, self._reset_cbs = self._reset_cbs, []
        for cb in cbs:
            try:
                cb(err)
            except Exception:  # a callback must not break the reader loop
                log.exception("stream reset callback failed")

    def _on_data(self, data: bytes) -> None:
        if self._remote_closed:
            return
        if len(self._buf) + len(data) + self._unacked > INITIAL_WINDOW:
            self._reset(StreamReset(f"{self.remote_peer} overran the stream window"), "flow control violated")
            return
        self._buf += data
        self._data_ev.set()

    def _on_fin(self) -> None:
        self._remote_closed = True
        self._data_ev.set()
        self._maybe_forget()

    def _on_window(self, delta: int) -> None:
        self._send_window += delta
        self._window_ev.set()

    def _maybe_forget(self) -> None:
        if self._local_closed and self._remote_closed:
            self._conn._streams.pop(self.id, None)


class Connection:
    """A verified secure channel to one peer, carrying many streams."""

    def __init__(
        self,
        chan: SecureChannel,
        remote_peer: PeerID,
        initiator: bool,
        handlers: StreamHandlerLookup,
        max_message_size: int,
        on_close: Callable[[Connection], None],
        remote_addr: str,
        keepalive: float | None = None,
        remote_version: tuple[int, int] = (0, 0),
    ) -> None:
        self._chan = chan
        self.remote_peer = remote_peer
        self.remote_addr = remote_addr
        self.remote_version = remote_version
        self._handlers = handlers
        self._max = max_message_size
        self._on_close = on_close
        self._streams: dict[int, Stream] = {}
        self._next_id = 1 if initiator else 2
        self._closed: BaseException | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        loop = asyncio.get_running_loop()
        self._last_recv = loop.time()
        self._reader = loop.create_task(self._read_loop())
        self._keepalive: asyncio.Task[None] | None = None
        if keepalive:
            self._keepalive = loop.create_task(self._keepalive_loop(keepalive))

    @property
    def is_closed(self) -> bool:
        return self._closed is not None

    def _send_frame(self, typ: int, flags: int, sid: int, length: int, data: memoryview | None = None) -> None:
        if self._closed is not None:
            raise self._closed
        hdr = HEADER.pack(VERSION, typ, flags, sid, length)
        try:
            self._chan.send(hdr + data if data is not None else hdr)
        except (ConnectionError, RuntimeError) as e:
            self._shutdown(ConnectionClosed(f"connection to {self.remote_peer} lost: {e}"))
            raise ConnectionClosed(f"connection to {self.remote_peer} lost: {e}") from e

    async def drain(self) -> None:
        try:
            await self._chan.drain()
        except (ConnectionError, RuntimeError) as e:
            err = ConnectionClosed(f"connection to {self.remote_peer} lost: {e}")
            self._shutdown(err)
            raise err from e
        if self._closed is not None:
            raise self._closed

    async def open_stream(self, name: str) -> Stream:
        if self._closed is not None:
            raise self._closed
        sid = self._next_id
        self._next_id += 2
        raw = name.encode()
        if len(raw) > MAX_NAME:
            raise ValueError(f"stream name longer than {MAX_NAME} bytes: {name[:40]!r}…")
        st = Stream(self, sid, self._max)
        st.name = name
        st._syn = True
        st._prefix = MSG_LEN.pack(len(raw)) + raw
        self._streams[sid] = st
        asyncio.get_running_loop().call_soon(st._flush_syn)
        return st

    async def _read_loop(self) -> None:
        err: BaseException
        loop = asyncio.get_running_loop()
        try:
            while True:
                frame = await self._chan.recv()
                self._last_recv = loop.time()
                if len(frame) < HEADER.size:
                    raise ConnectionClosed(f"{self.remote_peer} sent a truncated frame")
                _v, typ, flags, sid, length = HEADER.unpack_from(frame)
                if typ == T_DATA:
                    self._on_data(flags, sid, frame)
                elif typ == T_WINDOW:
                    st = self._stream_for(flags, sid)
                    if st is not None and length:
                        st._on_window(length)
                elif typ == T_PING:
                    if not flags & F_ACK:
                        self._send_frame(T_PING, F_ACK, 0, length)
                elif typ == T_GOAWAY:
                    raise ConnectionClosed(f"{self.remote_peer} closed the connection")
        except asyncio.CancelledError:
            err = ConnectionClosed(f"connection to {self.remote_peer} closed")
        except ConnectionClosed as e:
            err = e
        except Exception as e:
            err = ConnectionClosed(f"connection to {self.remote_peer} failed: {e}")
        self._shutdown(err)

    async def _keepalive_loop(self, interval: float) -> None:
        """Ping when idle; a peer silent for 3 intervals is gone (half-open TCP never says so)."""
        loop = asyncio.get_running_loop()
        while self._closed is None:
            await asyncio.sleep(interval)
            idle = loop.time() - self._last_recv
            if idle > 3 * interval:
                self._shutdown(ConnectionClosed(f"peer {self.remote_peer} did not answer for {idle:.0f} s"))
                return
            if idle >= interval:
                with contextlib.suppress(ConnectionClosed):
                    self._send_frame(T_PING, F_SYN, 0, 0)

    def _stream_for(self, flags: int, sid: int) -> Stream | None:
        st = self._streams.get(sid)
        if st is None and flags & F_SYN:
            if sid % 2 == self._next_id % 2:
                return None  # the remote must use the other parity
            if len(self._streams) >= MAX_STREAMS:
                self._send_frame(T_DATA, F_RST, sid, 0, memoryview(b"too many open streams on this connection"))
                return None
            st = Stream(self, sid, self._max)
            self._streams[sid] = st
            task = asyncio.get_running_loop().create_task(self._serve(st))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return st

    def _on_data(self, flags: int, sid: int, frame: bytes) -> None:
        st = self._stream_for(flags, sid)
        if st is None:
            return
        if flags & F_RST:
            reason = frame[HEADER.size :].decode("utf-8", "replace") or "reset by the remote peer"
            st._fail(StreamReset(f"stream reset by {self.remote_peer}: {reason}"))
            return
        if len(frame) > HEADER.size:
            st._on_data(frame[HEADER.size :])
        if flags & F_FIN:
            st._on_fin()

    async def _serve(self, st: Stream) -> None:
        """Run the handler named by the stream's first message."""
        try:
            raw = await st.read_msg()
        except Exception:
            return
        if raw is None or len(raw) > MAX_NAME:
            st.reset()
            return
        st.name = raw.decode("utf-8", "replace")
        handler = self._handlers(st.name)
        if handler is None:
            st._reset(NoHandler(f"no handler for {st.name!r}"), f"no handler for stream {st.name!r}")
            return
        try:
            await handler(st)
        except (StreamReset, ConnectionClosed) as e:
            log.debug("stream %s from %s ended: %s", st.name, self.remote_peer, e)
            st._reset(e, "handler aborted")
            return
        except PinclusterError as e:
            log.warning("stream %s from %s: %s", st.name, self.remote_peer, e)
            st._reset(e, f"{type(e).__name__}: {e}")
            return
        except Exception as e:
            log.exception("stream handler %s failed for %s", st.name, self.remote_peer)
            st._reset(e, f"handler error: {type(e).__name__}: {e}")
            return
        if not st._local_closed and st._error is None:
            with contextlib.suppress(Exception):
                await st.close()

    def _shutdown(self, err: BaseException) -> None:
        if self._closed is not None:
            return
        self._closed = err
        for st in list(self._streams.values()):
            st._fail(err)
        self._streams.clear()
        self._chan.close()
        if not self._reader.done() and asyncio.current_task() is not self._reader:
            self._reader.cancel()
        if self._keepalive is not None and asyncio.current_task() is not self._keepalive:
            self._keepalive.cancel()
        for t in list(self._tasks):  # handlers of a dead connection have nobody to answer
            if t is not asyncio.current_task():
                t.cancel()
        self._on_close(self)

    async def close(self) -> None:
        """Say goodbye (GOAWAY) and close; streams still open fail with ConnectionClosed."""
        if self._closed is None:
            with contextlib.suppress(Exception):
                self._send_frame(T_GOAWAY, 0, 0, 0)
                await asyncio.wait_for(self._chan.drain(), 1.0)
            self._shutdown(ConnectionClosed(f"connection to {self.remote_peer} closed locally"))
        for t in list(self._tasks):
            t.cancel()
        with contextlib.suppress(BaseException):
            await self._reader
