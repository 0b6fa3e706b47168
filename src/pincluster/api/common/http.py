"""Server plumbing shared by the HTTP APIs: the request chain (header limit, auth, CORS, trailing-slash
redirect, Go-style 404/405 and error bodies), extra headers, and listeners on multiaddrs (TCP or ``/unix``).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
import ssl
import stat
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from aiohttp import web
from aiohttp.typedefs import Middleware

from pincluster.api.common.errors import ErrorBody, error_body, error_response, status_for
from pincluster.errors import ConfigError, InvalidInput, PinclusterError
from pincluster.log import facility_of
from pincluster.observe import tracing
from pincluster.types.multiaddr import Multiaddr

__all__ = [
    "PARSER_LINE_LIMIT",
    "Deadlines",
    "Timeouts",
    "close_listeners",
    "extra_headers_hook",
    "header_limit_middleware",
    "open_listeners",
    "request_chain",
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
log = logging.getLogger("pincluster.restapi")

#: Per-line limit given to aiohttp's parser: larger than any header block we accept, so oversized headers
#: reach :func:`header_limit_middleware` and get Go's 431 instead of the parser's 400.
PARSER_LINE_LIMIT = 64 * 1024


def _too_large(request: web.Request, limit: int) -> web.Response | None:
    """Go's 431 when the request line plus headers exceed ``limit``."""
    size = len(request.method) + len(request.raw_path) + 12
    for k, v in request.raw_headers:
        size += len(k) + len(v) + 4
        if size > limit:
            return web.Response(status=431, text="431 Request Header Fields Too Large", content_type="text/plain")
    return None


def header_limit_middleware(max_header_bytes: int) -> Middleware:
    """431 when the request line plus headers exceed ``max_header_bytes`` + 4096 (Go's read limit: the
    configured size plus the 4096-byte buffer slack of ``net/http``)."""
    limit = max_header_bytes + 4096

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        deadline = request_started(request)  # Go's timeouts: this request's headers are in
        try:
            return _too_large(request, limit) or await handler(request)
        finally:
            if deadline is not None:
                deadline.request_done()

    return middleware


class _Check(Protocol):
    def check(self, request: web.Request) -> web.Response | None: ...


class _Cors(_Check, Protocol):
    def refusal(self, request: web.Request) -> str | None: ...


def _span_name(facility: str, request: web.Request) -> str:
    """``restapi/GET /pins/{hash}``: the route, not the path (a bounded set of span names)."""
    route = request.match_info.route.resource
    return f"{facility}/{request.method} {route.canonical if route is not None else '?'}"


def request_chain(
    max_header_bytes: int,
    auth: _Check,
    cors: _Cors,
    body: ErrorBody = error_body,
    logger: logging.Logger = log,
) -> Middleware:
    """The whole request chain of the REST and Pinning Service APIs as one middleware: header limit (431) →
    auth (401) → CORS preflight, and 403 for a cross-site request the CORS policy does not allow (see
    ``CORSPolicy.refusal``) → trailing-slash redirect (307: ``/pins/?x=1`` → ``/pins?x=1``, method and
    body kept) → handler. Go's router answers an unknown path with a 404 JSON body and a wrong method with an
    empty 405; errors raised by handlers become error bodies rendered by ``body`` with the status of their
    kind. One coroutine frame instead of five stacked middlewares (thousands of requests per second)."""
    limit = max_header_bytes + 4096
    facility = facility_of(logger.name)  # names the request spans: restapi/GET /pins/{hash}

    @web.middleware
    async def chain(request: web.Request, handler: Handler) -> web.StreamResponse:
        deadline = request_started(request)  # Go's timeouts: this request's headers are in
        try:
            answer = _too_large(request, limit) or auth.check(request)
            if answer is not None:
                return answer
            answer = cors.check(request)
            if answer is not None:
                return answer
            refused = cors.refusal(request)
            if refused is not None:
                logger.warning("%s %s refused: %s (possible CSRF)", request.method, request.path, refused)
                return error_response(403, refused, body=body)
            path = request.raw_path.partition("?")[0]
            if len(path) > 1 and path[-1] == "/":
                location = path.rstrip("/") or "/"
                if request.query_string:
                    location += "?" + request.query_string
                return web.Response(status=307, headers={"Location": location})
            try:
                with tracing.span(lambda: _span_name(facility, request), **{"http.target": request.raw_path}):
                    return await handler(request)
            except web.HTTPNotFound:
                return error_response(404, "not found", body=body)
            except web.HTTPMethodNotAllowed:
                return web.Response(status=405)
            except web.HTTPException:
                raise
            except PinclusterError as exc:
                return error_response(status_for(exc), str(exc), body=body)
            except Exception as exc:
                logger.exception("%s %s failed", request.method, request.path)
                return error_response(500, str(exc) or type(exc).__name__, body=body)
        finally:
            if deadline is not None:
                deadline.request_done()

    return chain


def extra_headers_hook(
    headers: Mapping[str, Sequence[str]],
) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    """An ``on_response_prepare`` hook adding the configured ``headers`` to every response."""

    async def hook(request: web.Request, response: web.StreamResponse) -> None:
        for name, values in headers.items():
            if name in response.headers:
                continue
            for v in values:
                response.headers.add(name, v)

    return hook


def _tcp_socket(addr: Multiaddr) -> socket.socket:
    host, port = addr.tcp_host_port()
    family = socket.AF_INET6 if addr.has("ip6") else socket.AF_INET
    if addr.has("dns") or addr.has("dns4") or addr.has("dns6"):
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        if not infos:
            raise ConfigError("http_listen_multiaddress", f"{addr}: {host} does not resolve")
        family = infos[0][0]
        host = str(infos[0][4][0])
    try:
        return socket.create_server((host, port), family=family, backlog=512, reuse_port=False)
    except OSError as exc:
        raise ConfigError("http_listen_multiaddress", f"cannot listen on {addr}: {exc}") from None


def _unix_socket(addr: Multiaddr) -> socket.socket:
    path = addr.unix_path()
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.stat(path).st_mode):
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(path)
            except OSError:
                os.unlink(path)  # a stale socket from a previous run
            else:
                raise ConfigError("http_listen_multiaddress", f"{addr}: another process is listening there")
            finally:
                probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        sock.listen(512)
    except OSError as exc:
        sock.close()
        raise ConfigError("http_listen_multiaddress", f"cannot listen on {addr}: {exc}") from None
    return sock


@dataclasses.dataclass(frozen=True)
class Timeouts:
    """Go's ``http.Server`` timeouts, in seconds (0: none)."""

    read_header: float = 0.0
    read: float = 0.0
    write: float = 0.0

    def __bool__(self) -> bool:
        return bool(self.read_header or self.read or self.write)

    @classmethod
    def of(cls, cfg: Any) -> Timeouts:
        """From a config section with Go's ``read_header_timeout``, ``read_timeout`` and ``write_timeout``
        (timedeltas): the REST, Pinning Service and proxy sections all have them."""
        return cls(cfg.read_header_timeout.total_seconds(), cfg.read_timeout.total_seconds(),
                   cfg.write_timeout.total_seconds())


class Deadlines(asyncio.Protocol):
    """Go's ``ReadHeaderTimeout``, ``ReadTimeout`` and ``WriteTimeout`` around aiohttp's protocol, for one
    connection; a connection past one of its deadlines is closed, as Go's server closes it.

    - **read_header**: a request's line and headers must arrive within it, counted from the connection's start,
      or from the first byte of a later request on a kept-alive connection. aiohttp alone keeps a client that
      sends a header byte now and then until its keep-alive timeout (minutes), so a few hundred such clients
      would hold that many sockets (slowloris).
    - **read**: the whole request, body included, from the same start; a handler that has read the whole body
      may take longer.
    - **write**: from the end of the headers to the end of the answer (a long stream is cut off, as in Go).

    aiohttp calls no hook when a request's headers are complete, so the first middleware of the server's
    chain reports it (:func:`request_started`, then ``request_done``); everything else is handed to aiohttp's
    protocol unchanged. Deadlines are numbers set per request; one timer per connection checks them and
    re-arms itself for a later one, so requests on a busy connection create no timers."""

    __slots__ = ("_body", "_busy", "_header_at", "_inner", "_loop", "_read_at", "_t", "_timer", "_timer_at",
                 "_transport", "_write_at")

    def __init__(self, inner: asyncio.Protocol, timeouts: Timeouts) -> None:
        self._inner = inner
        self._t = timeouts
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._transport: asyncio.BaseTransport | None = None
        self._busy = False  # a request's headers are in, its answer is not finished
        self._header_at: float | None = None  # when the headers being read must be in
        self._read_at: float | None = None  # when the request being read must be in, body included
        self._write_at: float | None = None  # when the answer being written must be done
        self._body: Any = None  # the body of the request in progress (aiohttp's StreamReader)

    def _schedule(self, when: float) -> None:
        if self._timer is not None:
            if self._timer_at <= when:
                return  # the pending check comes first and re-arms for this one
            self._timer.cancel()
        self._timer_at = when
        self._timer = self._loop.call_at(when, self._check)

    def _request_begins(self) -> None:
        """The first byte of a request: its header and read deadlines start."""
        now = self._loop.time()
        t = self._t
        if t.read_header:
            self._header_at = now + t.read_header
            self._schedule(self._header_at)
        if t.read:
            self._read_at = now + t.read
            self._schedule(self._read_at)

    def _check(self) -> None:
        self._timer = None
        if self._transport is None:
            return
        now = self._loop.time()
        due: list[float] = []
        why = ""
        if not self._busy:
            if self._header_at is not None:
                if now >= self._header_at:
                    why = f"request headers took over {self._t.read_header:.1f} s"
                due.append(self._header_at)
        else:
            body = self._body
            if self._read_at is not None and body is not None and not body.is_eof():
                if now >= self._read_at:
                    why = f"request took over {self._t.read:.1f} s to arrive"
                due.append(self._read_at)
            if self._write_at is not None:
                if now >= self._write_at:
                    why = f"answer took over {self._t.write:.1f} s"
                due.append(self._write_at)
        if why:
            log.debug("closing a connection: its %s", why)
            self._transport.close()
            return
        if due:
            self._schedule(min(due))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._request_begins()
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if not self._busy and self._header_at is None and self._read_at is None:
            self._request_begins()
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._transport = None
        self._body = None
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def request_begun(self, body: Any) -> None:
        """The request's headers are in (``body``: its body stream): the header deadline is met, the write
        deadline starts."""
        self._busy = True
        self._header_at = None
        if self._read_at is not None:
            self._body = body
        if self._t.write:
            self._write_at = when = self._loop.time() + self._t.write
            self._schedule(when)

    def request_done(self) -> None:
        self._busy = False
        self._read_at = self._write_at = self._body = None


def request_started(request: web.Request) -> Deadlines | None:
    """Tell the connection's :class:`Deadlines` (if any) that a request's headers are in; the caller calls
    ``request_done()`` on what this returns once the answer is finished."""
    transport = request.transport
    deadlines = transport.get_protocol() if transport is not None else None
    if type(deadlines) is not Deadlines:
        return None
    deadlines.request_begun(request.content)
    return deadlines


async def open_listeners(
    runner: web.BaseRunner, listen: Sequence[Multiaddr], ssl_context: ssl.SSLContext | None,
    timeouts: Timeouts = Timeouts(),
) -> tuple[list[asyncio.Server], list[Multiaddr]]:
    """Listen on every multiaddr with ``runner``'s request handler (wrapped in :class:`Deadlines` when a timeout
    is set: the app's first middleware must call :func:`request_started`); returns the servers (close them
    before ``runner.cleanup()``) and the addresses actually bound (port 0 resolved)."""
    handlers = runner.server
    assert handlers is not None, "runner.setup() first"

    def protocol() -> asyncio.Protocol:
        inner = handlers()
        return Deadlines(inner, timeouts) if timeouts else inner

    loop = asyncio.get_running_loop()
    servers: list[asyncio.Server] = []
    bound: list[Multiaddr] = []
    try:
        for addr in listen:
            if addr.is_unix():
                sock = _unix_socket(addr)
                real = addr
            else:
                sock = _tcp_socket(addr)
                name: Any = sock.getsockname()
                real = Multiaddr.from_host_port(str(name[0]), int(name[1]))
                if addr.has("dns") or addr.has("dns4") or addr.has("dns6"):
                    real = Multiaddr(f"/{addr.protocols[0][0]}/{addr.protocols[0][1]}/tcp/{name[1]}")
            servers.append(await loop.create_server(protocol, sock=sock, ssl=ssl_context, backlog=512))
            bound.append(real)
    except BaseException:
        await close_listeners(servers)
        raise
    return servers, bound


async def close_listeners(servers: Sequence[asyncio.Server], runner: web.BaseRunner | None = None) -> None:
    """Stop accepting on ``servers``, then close the open connections (``runner.cleanup()``: in-flight answers
    get its shutdown grace), then wait for the servers. In that order: since Python 3.12 ``wait_closed`` waits
    for every connection, so waiting first would hang on an idle keep-alive."""
    for server in servers:
        server.close()
    if runner is not None:
        await runner.cleanup()
    for server in servers:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 10)


class HTTPServer(abc.ABC):
    """The lifecycle the REST API, the Pinning Service API and the IPFS proxy share: bind an aiohttp app to
    every listen address (port 0 resolved into ``addresses``), stop it, and tell its URL.

    A subclass gives its app (``build_app``) and where/how to listen (``listen_options``); it may extend
    ``stop`` to close what else it owns.
    """

    #: The name in log lines and errors ("REST API", "IPFS proxy", …).
    NAME = "HTTP API"

    def __init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self._servers: list[asyncio.Server] = []
        self._tls = False
        self.addresses: list[Multiaddr] = []

    @abc.abstractmethod
    def build_app(self) -> web.Application:
        """The server's aiohttp application (routes, middlewares)."""

    @abc.abstractmethod
    def listen_options(self) -> ListenOptions:
        """Where and how to listen."""

    def listening_message(self, addr: Multiaddr) -> str:
        return f"{self.NAME} ({'HTTPS' if self._tls else 'HTTP'}) listening on {addr}"

    async def start(self) -> None:
        """Bind the listeners; raises ConfigError for bad TLS files or unusable addresses."""
        if self._runner is not None:
            return
        from pincluster.api.common.accesslog import make_access_logger

        opts = self.listen_options()
        self._tls = opts.ssl_context is not None
        idle = opts.idle_timeout
        runner = web.AppRunner(
            self.build_app(),
            access_log_class=make_access_logger(opts.log_file),
            access_log=opts.access_log,
            keepalive_timeout=idle if idle > 0 else 75.0,
            max_line_size=PARSER_LINE_LIMIT,
            max_field_size=PARSER_LINE_LIMIT,
            handle_signals=False,
        )
        await runner.setup()
        try:
            self._servers, self.addresses = await open_listeners(runner, opts.listen, opts.ssl_context,
                                                                 opts.timeouts)
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._log_file = opts.log_file
        for a in self.addresses:
            opts.logger.info("%s", self.listening_message(a))

    async def stop(self) -> None:
        from pincluster.api.common.accesslog import close_log_files

        runner, self._runner = self._runner, None
        servers, self._servers = self._servers, []
        await close_listeners(servers, runner)
        if runner is not None and self._log_file:
            close_log_files()

    @property
    def url(self) -> str:
        """``http(s)://host:port`` of the first TCP listener (for clients and tests)."""
        scheme = "https" if self._tls else "http"
        for a in self.addresses:
            if not a.is_unix():
                host, port = a.tcp_host_port()
                if ":" in host:
                    host = f"[{host}]"
                return f"{scheme}://{host}:{port}"
        raise InvalidInput(f"the {self.NAME} has no TCP listener")

    _log_file = ""


@dataclasses.dataclass(frozen=True)
class ListenOptions:
    """Where and how an :class:`HTTPServer` listens."""

    listen: Sequence[Multiaddr]
    logger: logging.Logger
    access_log: logging.Logger
    ssl_context: ssl.SSLContext | None = None
    idle_timeout: float = 0.0  # seconds; 0 → aiohttp's 75 s keep-alive
    log_file: str = ""
    timeouts: Timeouts = Timeouts()  # Go's read-header, read and write timeouts (see Deadlines)
