"""The proxy's leg to the IPFS node: a streaming reverse proxy that keeps HTTP trailers.

aiohttp's client parses HTTP trailers and drops them, but kubo reports errors that happen after a stream
started (``cat`` of a block it cannot find, a failing ``pin/ls``) only in the ``X-Stream-Error`` trailer; a
proxy that lost it would turn a broken download into a silently truncated success. So the upstream leg uses
the project's ``h11`` transport (:mod:`pincluster.client.transport`), which hands trailers back, and the
downstream leg writes the chunk framing itself so the trailers reach the client unchanged.

Bodies stream both ways chunk by chunk with back-pressure: nothing is buffered whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass

from aiohttp import web
from aiohttp.http_writer import StreamWriter

from pincluster.client.transport import Endpoint, HTTPResponse, Transport, TransportError
from pincluster.types.multiaddr import Multiaddr

__all__ = ["HOP_BY_HOP", "FramedBody", "HeaderCache", "Upstream", "UpstreamReply", "relay_response"]

log = logging.getLogger("pincluster.ipfsproxy")

#: Headers that belong to one connection, never forwarded (RFC 9110 §7.6.1, Go's ``httputil`` list). The
#: ``Trailer`` announcement is kept: the trailers themselves are relayed.
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "te",
    "transfer-encoding", "upgrade",
})
_REQUEST_DROP = HOP_BY_HOP | {"host", "content-length", "trailer", "expect"}
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class UpstreamReply:
    """A small upstream answer read whole (headers lower-cased)."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k == name), None)

    def header_values(self, name: str) -> list[str]:
        name = name.lower()
        return [v for k, v in self.headers if k == name]


def _endpoint(addr: Multiaddr, https: bool) -> Endpoint:
    scheme = "https" if https else "http"
    if addr.is_unix():
        return Endpoint(scheme=scheme, unix_path=addr.unix_path())
    host, port = addr.tcp_host_port()
    return Endpoint(scheme=scheme, host=host, port=port)


class FramedBody:
    """A downstream response body whose chunk framing is written here, so that it can end with trailers
    (aiohttp's writer cannot send them). HTTP/1.0 clients get the raw bytes and a closed connection."""

    def __init__(self, request: web.Request, response: web.StreamResponse) -> None:
        self.request = request
        self.response = response
        self.framed = False

    async def open(self) -> None:
        writer = await self.response.prepare(self.request)
        if isinstance(writer, StreamWriter) and writer.chunked:
            writer.chunked = False
            self.framed = True

    async def write(self, data: bytes) -> None:
        if not data:
            return
        if self.framed:
            await self.response.write(b"%x\r\n%b\r\n" % (len(data), data))
        else:
            await self.response.write(data)

    async def close(self, trailers: Iterable[tuple[str, str]] = ()) -> None:
        if self.framed:
            lines = "".join(f"{k}: {' '.join(v.splitlines())}\r\n" for k, v in trailers)
            await self.response.write(b"0\r\n" + lines.encode("utf-8", "replace") + b"\r\n")
        await self.response.write_eof()


class Upstream:
    """Requests to the IPFS node's RPC API at ``node_multiaddress`` (TCP or ``/unix/``, HTTP or HTTPS).

    Two connection pools: requests without a body reuse kept-alive connections; requests that stream a body
    always open a fresh one, because a body that is being streamed cannot be replayed when a kept-alive
    connection turns out to have been closed by the node meanwhile.
    """

    def __init__(self, node: Multiaddr, *, https: bool = False, ssl_context: ssl.SSLContext | None = None) -> None:
        self.node = node
        self.endpoint = _endpoint(node, https)
        ctx = (ssl_context or ssl.create_default_context()) if https else None
        self._pool = Transport(self.endpoint, ctx, None, max_idle=32)
        self._fresh = Transport(self.endpoint, ctx, None, max_idle=0)

    async def close(self) -> None:
        await self._pool.close()
        await self._fresh.close()

    # ---------------------------------------------------------------------------------------- small requests
    async def call(self, method: str, target: str, headers: Sequence[tuple[str, str]] = (),
                   timeout: float = 30.0) -> UpstreamReply:
        """One request whose answer is read whole (headers learning, CORS preflights, ``resolve``)."""

        async def run() -> UpstreamReply:
            resp = await self._pool.request(method, target, list(headers))
            try:
                body = await resp.read()
            finally:
                resp.close()
            return UpstreamReply(resp.status, resp.headers, body)

        try:
            return await asyncio.wait_for(run(), timeout)
        except TimeoutError:
            raise TransportError(f"{method} {self.endpoint}{target}: no answer within {timeout:g} s") from None

    async def open(self, method: str, target: str, headers: Sequence[tuple[str, str]],
                   body: AsyncIterator[bytes] | None) -> HTTPResponse:
        """Send a request (``body`` streamed with chunked encoding) and return once the headers are in."""
        transport = self._pool if body is None else self._fresh
        return await transport.request(method, target, list(headers), body)

    # ---------------------------------------------------------------------------------------- reverse proxy
    async def forward(self, request: web.Request, *, target: str | None = None) -> web.StreamResponse:
        """Relay ``request`` to the node and its answer (status, headers, body, trailers) back, streamed."""
        resp = await self.open(request.method, target or request.raw_path, forward_headers(request),
                               request_body(request))
        try:
            return await relay_response(request, resp)
        finally:
            resp.close()


def forward_headers(request: web.Request) -> list[tuple[str, str]]:
    """The client's headers minus hop-by-hop ones, plus ``X-Forwarded-For`` as Go's reverse proxy adds."""
    out = [(k, v) for k, v in request.headers.items() if k.lower() not in _REQUEST_DROP]
    if request.remote:
        prior = request.headers.get("X-Forwarded-For")
        out = [(k, v) for k, v in out if k.lower() != "x-forwarded-for"]
        out.append(("X-Forwarded-For", f"{prior}, {request.remote}" if prior else request.remote))
    return out


def request_body(request: web.Request) -> AsyncIterator[bytes] | None:
    """The request body as a stream of chunks, or None when there is none."""
    if not request.body_exists:
        return None

    async def chunks() -> AsyncIterator[bytes]:
        async for chunk in request.content.iter_chunked(_CHUNK):
            yield chunk

    return chunks()


def _must_be_empty(method: str, status: int) -> bool:
    return method == "HEAD" or status in (204, 304) or 100 <= status < 200


async def relay_response(request: web.Request, upstream: HTTPResponse) -> web.StreamResponse:
    """Stream an upstream response to the client: headers minus hop-by-hop ones, the body, the trailers."""
    out = web.StreamResponse(status=upstream.status)
    length: int | None = None
    for k, v in upstream.headers:
        if k in HOP_BY_HOP:
            continue
        if k == "content-length":
            with contextlib.suppress(ValueError):
                length = int(v)
            continue
        out.headers.add(k, v)
    chunked = upstream.header("transfer-encoding") is not None
    if length is not None and not chunked:
        out.content_length = length
    body = FramedBody(request, out)
    await body.open()
    if _must_be_empty(request.method, upstream.status):
        with contextlib.suppress(Exception):
            await upstream.read()
        await out.write_eof()
        return out
    try:
        async for chunk in upstream.iter_body():
            await body.write(chunk)
    except TransportError as exc:
        # The node broke the stream: tell the client the way kubo tells late errors, then end it.
        log.warning("%s %s: the IPFS node broke the stream: %s", request.method, request.path, exc)
        if body.framed:
            await body.close([("X-Stream-Error", f"ipfs proxy: the IPFS node broke the stream: {exc}")])
        else:  # a Content-Length body: the client sees it cut short, as from the node itself
            out.force_close()
            with contextlib.suppress(Exception):
                await out.write_eof()
        return out
    await body.close(upstream.trailers)
    return out


class HeaderCache:
    """Values learned from the node and kept for a while (``extract_headers_ttl``; 0 = forever)."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._value: list[tuple[str, str]] | None = None
        self._at = 0.0
        self._lock = asyncio.Lock()

    def get(self) -> list[tuple[str, str]] | None:
        if self._value is None:
            return None
        if self.ttl > 0 and self._clock() - self._at > self.ttl:
            return None
        return self._value

    def set(self, value: list[tuple[str, str]]) -> None:
        self._value = value
        self._at = self._clock()

    @property
    def lock(self) -> asyncio.Lock:
        return self._lock
