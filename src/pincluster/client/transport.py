"""A small HTTP/1.1 client on asyncio streams and ``h11``, for the REST API.

aiohttp's client parses HTTP trailers and throws them away, but the REST API reports errors that happen
mid-stream only in the ``X-Stream-Error`` trailer (spec §1.4), so the SDK needs a client that keeps them.
``h11`` (the sans-IO HTTP/1.1 library under httpcore/httpx) gives them to us; this module adds sockets
(TCP, TLS, Unix), keep-alive reuse, chunked uploads from async iterators and per-operation timeouts.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import h11

from pincluster.errors import Timeout, Unavailable

__all__ = ["Endpoint", "HTTPResponse", "Transport", "TransportError"]

_READ = 64 * 1024


class TransportError(Unavailable):
    """The API could not be reached or the connection failed (Go clients report these with code 0)."""

    code = 0


class TransportTimeout(TransportError, Timeout):
    """No progress for longer than the client's timeout."""


@dataclass(frozen=True)
class Endpoint:
    """Where the API listens: TCP host and port (``https`` or not), or a Unix socket path."""

    scheme: str = "http"
    host: str = "127.0.0.1"
    port: int = 9094
    unix_path: str = ""

    @property
    def host_header(self) -> str:
        if self.unix_path:
            return "localhost"
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"

    def __str__(self) -> str:
        if self.unix_path:
            return f"{self.scheme}+unix://{self.unix_path}"
        return f"{self.scheme}://{self.host_header}"


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.h11 = h11.Connection(h11.CLIENT)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class HTTPResponse:
    """A response whose body is read incrementally; ``trailers`` are filled once the body is consumed."""

    def __init__(self, transport: Transport, conn: _Conn, status: int, headers: list[tuple[str, str]],
                 sender: asyncio.Task[None] | None) -> None:
        self._transport = transport
        self._conn: _Conn | None = conn
        self.status = status
        self.headers = headers
        self.trailers: list[tuple[str, str]] = []
        self._sender = sender
        self._done = False

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k == name), None)

    def trailer_values(self, name: str) -> list[str]:
        name = name.lower()
        return [v for k, v in self.trailers if k == name]

    async def iter_body(self) -> AsyncIterator[bytes]:
        """The body chunks as they arrive; then the trailers are set and the connection is released."""
        conn = self._conn
        if conn is None or self._done:
            return
        try:
            while True:
                event = await self._transport._next_event(conn)
                if isinstance(event, h11.Data):
                    yield bytes(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    self.trailers = [(k.decode("latin-1"), v.decode("utf-8", "replace")) for k, v in event.headers]
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    raise TransportError("the API closed the connection before the response ended")
        except BaseException:
            err = _sender_error(self._sender) if self._sender is not None else None
            self.close()
            if err is not None:
                raise err from None
            raise
        self._done = True
        await self._finish()

    async def read(self) -> bytes:
        return b"".join([c async for c in self.iter_body()])

    async def _finish(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._sender is not None:
            try:
                await self._sender
            except Exception:
                conn.close()
                return
        self._transport._release(conn)

    def close(self) -> None:
        """Abandon the response (drops the connection if the body was not read to the end)."""
        conn, self._conn = self._conn, None
        if self._sender is not None and not self._sender.done():
            self._sender.cancel()
        if conn is not None:
            conn.close()


def _sender_error(sender: asyncio.Task[None]) -> BaseException | None:
    """The error that stopped an upload, if it failed (it explains why the connection broke)."""
    if sender.done() and not sender.cancelled():
        return sender.exception()
    return None


class Transport:
    """Opens connections to one endpoint, sends requests, and keeps idle connections for reuse."""

    def __init__(self, endpoint: Endpoint, ssl_context: ssl.SSLContext | None, timeout: float | None,
                 max_idle: int = 4) -> None:
        self.endpoint = endpoint
        self.ssl_context = ssl_context
        self.timeout = timeout if timeout and timeout > 0 else None
        self._idle: list[_Conn] = []
        self._max_idle = max_idle

    async def _wait(self, aw: Any, what: str) -> Any:
        try:
            return await asyncio.wait_for(aw, self.timeout)
        except TimeoutError:
            raise TransportTimeout(f"{what} {self.endpoint}: no answer within {self.timeout} s") from None

    async def _connect(self) -> _Conn:
        ep = self.endpoint
        try:
            if ep.unix_path:
                r, w = await self._wait(asyncio.open_unix_connection(
                    ep.unix_path, ssl=self.ssl_context,
                    server_hostname="localhost" if self.ssl_context else None), "connecting to")
            else:
                r, w = await self._wait(asyncio.open_connection(
                    ep.host, ep.port, ssl=self.ssl_context, limit=_READ * 4), "connecting to")
        except ssl.SSLError as exc:
            raise TransportError(f"TLS handshake with {ep} failed: {exc}") from None
        except OSError as exc:
            raise TransportError(f"cannot connect to {ep}: {exc.strerror or exc}") from None
        return _Conn(r, w)

    def _release(self, conn: _Conn) -> None:
        h = conn.h11
        if h.our_state is h11.DONE and h.their_state is h11.DONE and len(self._idle) < self._max_idle:
            try:
                h.start_next_cycle()
            except h11.LocalProtocolError:
                conn.close()
                return
            self._idle.append(conn)
        else:
            conn.close()

    async def _next_event(self, conn: _Conn) -> Any:
        while True:
            unanswered = conn.h11.their_state is h11.SEND_RESPONSE
            try:
                event = conn.h11.next_event()
            except h11.RemoteProtocolError as exc:
                if unanswered and conn.h11.trailing_data == (b"", True):  # EOF before any byte of an answer
                    raise TransportError(self._closed_unanswered()) from None
                raise TransportError(f"bad HTTP from {self.endpoint}: {exc}") from None
            if event is not h11.NEED_DATA:
                return event
            try:
                data = await self._wait(conn.reader.read(_READ), "reading from")
            except (OSError, ssl.SSLError) as exc:
                raise TransportError(f"connection to {self.endpoint} failed: {exc}") from None
            conn.h11.receive_data(data)

    def _closed_unanswered(self) -> str:
        why = f"{self.endpoint} closed the connection without answering"
        if self.endpoint.scheme == "http" and not self.endpoint.unix_path:
            why += " (an HTTPS server answers plain HTTP that way: if it is one, use https, e.g. ctl --https)"
        return why

    async def _send(self, conn: _Conn, event: Any) -> None:
        data = conn.h11.send(event)
        if data:
            conn.writer.write(data)
            try:
                await self._wait(conn.writer.drain(), "writing to")
            except (OSError, ssl.SSLError) as exc:
                raise TransportError(f"connection to {self.endpoint} failed: {exc}") from None

    async def _send_body(self, conn: _Conn, body: AsyncIterable[bytes]) -> None:
        try:
            async for chunk in body:
                if chunk:
                    await self._send(conn, h11.Data(data=chunk))
            await self._send(conn, h11.EndOfMessage())
        except BaseException:
            conn.close()  # the reading side then ends too, and reports this error (see _sender_error)
            raise

    async def request(
        self,
        method: str,
        target: str,
        headers: Sequence[tuple[str, str]],
        body: bytes | AsyncIterable[bytes] | None = None,
    ) -> HTTPResponse:
        """Send a request and return once the status and headers are in. A streamed ``body`` is sent with
        chunked encoding from a task, so the response can be read while the upload goes on."""
        hdrs = [("Host", self.endpoint.host_header), *headers]
        if isinstance(body, bytes | bytearray):
            hdrs.append(("Content-Length", str(len(body))))
        elif body is not None:
            hdrs.append(("Transfer-Encoding", "chunked"))
        elif method in ("POST", "PUT", "PATCH"):
            hdrs.append(("Content-Length", "0"))
        replayable = body is None or isinstance(body, bytes | bytearray)
        if self._idle:
            conn = self._idle.pop()
            try:
                return await self._exchange(conn, method, target, hdrs, body)
            except TransportError:
                if not replayable:
                    raise
                # a kept-alive connection the server had closed meanwhile: try once on a fresh one
        conn = await self._connect()
        return await self._exchange(conn, method, target, hdrs, body)

    async def _exchange(self, conn: _Conn, method: str, target: str, hdrs: list[tuple[str, str]],
                        body: bytes | AsyncIterable[bytes] | None) -> HTTPResponse:
        sender: asyncio.Task[None] | None = None
        try:
            await self._send(conn, h11.Request(method=method, target=target, headers=hdrs))
            if isinstance(body, bytes | bytearray):
                if body:
                    await self._send(conn, h11.Data(data=bytes(body)))
                await self._send(conn, h11.EndOfMessage())
            elif body is not None:
                sender = asyncio.ensure_future(self._send_body(conn, body))
            else:
                await self._send(conn, h11.EndOfMessage())
            while True:
                event = await self._next_event(conn)
                if isinstance(event, h11.Response):
                    break
                if isinstance(event, h11.ConnectionClosed):
                    if sender is not None and sender.done() and sender.exception() is not None:
                        raise sender.exception()  # type: ignore[misc]
                    raise TransportError(self._closed_unanswered())
        except h11.LocalProtocolError as exc:
            if sender is not None:
                sender.cancel()
            conn.close()
            raise TransportError(f"cannot send the request to {self.endpoint}: {exc}") from None
        except BaseException:
            conn.close()
            if sender is not None:
                err = _sender_error(sender)
                sender.cancel()
                if err is not None:
                    raise err from None
            raise
        headers_out = [(k.decode("latin-1").lower(), v.decode("utf-8", "replace")) for k, v in event.headers]
        return HTTPResponse(self, conn, event.status_code, headers_out, sender)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
