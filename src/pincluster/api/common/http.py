"""Server plumbing shared by the HTTP APIs: the request chain (header limit, auth, CORS, trailing-slash
redirect, Go-style 404/405 and error bodies), extra headers, and listeners on multiaddrs (TCP or ``/unix``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import ssl
import stat
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from pincluster.api.common.errors import error_response, status_for
from pincluster.errors import ConfigError, PinclusterError
from pincluster.types.multiaddr import Multiaddr

__all__ = [
    "PARSER_LINE_LIMIT",
    "error_middleware",
    "extra_headers_hook",
    "header_limit_middleware",
    "open_listeners",
    "trailing_slash_middleware",
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
log = logging.getLogger("pincluster.restapi")

#: Per-line limit given to aiohttp's parser: larger than any header block we accept, so oversized headers
#: reach :func:`header_limit_middleware` and get Go's 431 instead of the parser's 400.
PARSER_LINE_LIMIT = 64 * 1024


def header_limit_middleware(max_header_bytes: int) -> Middleware:
    """431 when the request line plus headers exceed ``max_header_bytes`` + 4096 (Go's read limit: the
    configured size plus the 4096-byte buffer slack of ``net/http``)."""
    limit = max_header_bytes + 4096

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        size = len(request.method) + len(request.raw_path) + 12
        for k, v in request.raw_headers:
            size += len(k) + len(v) + 4
            if size > limit:
                return web.Response(status=431, text="431 Request Header Fields Too Large",
                                    content_type="text/plain")
        return await handler(request)

    return middleware


@web.middleware
async def trailing_slash_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """``/pins/?x=1`` → 307 to ``/pins?x=1`` (method and body are kept by 307)."""
    path = request.raw_path.partition("?")[0]
    if len(path) > 1 and path.endswith("/"):
        location = path.rstrip("/") or "/"
        if request.query_string:
            location += "?" + request.query_string
        return web.Response(status=307, headers={"Location": location})
    return await handler(request)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Go's router answers: unknown path → 404 JSON, wrong method → 405 with an empty body; errors raised
    by handlers become ``{"code","message"}`` with the status of their kind."""
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return error_response(404, "not found")
    except web.HTTPMethodNotAllowed:
        return web.Response(status=405)
    except web.HTTPException:
        raise
    except PinclusterError as exc:
        return error_response(status_for(exc), str(exc))
    except Exception as exc:
        log.exception("%s %s failed", request.method, request.path)
        return error_response(500, str(exc) or type(exc).__name__)


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


async def open_listeners(
    runner: web.BaseRunner, listen: Sequence[Multiaddr], ssl_context: ssl.SSLContext | None
) -> tuple[list[web.SockSite], list[Multiaddr]]:
    """Start one site per multiaddr; returns the sites and the addresses actually bound (port 0 resolved)."""
    sites: list[web.SockSite] = []
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
            site = web.SockSite(runner, sock, ssl_context=ssl_context)
            await site.start()
            sites.append(site)
            bound.append(real)
    except BaseException:
        for s in sites:
            with contextlib.suppress(Exception):
                await s.stop()
        raise
    return sites, bound
