"""The kubo RPC API (``/api/v0/*``) of the embedded node, on aiohttp.

Kubo clients must work unchanged, so this follows go-ipfs-cmds' HTTP conventions: POST only (other methods
get 405), arguments in repeated ``arg`` query parameters, booleans as Go's strconv.ParseBool reads them
(``true``/``True``/``1``…), errors as HTTP 500 ``{"Message","Code":0,"Type":"error"}`` (400 and Code 1 for bad
arguments), streamed lists as NDJSON with ``X-Chunked-Output: 1`` and byte streams with ``X-Stream-Output: 1``;
an error after the first byte is sent in the HTTP trailer ``X-Stream-Error`` (declared in ``Trailer``).
Unknown commands get Go's ``404 page not found``.
"""

from __future__ import annotations

import asyncio
import base64
import decimal
import json
import logging
import os
import platform
import struct
import urllib.parse
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import BodyPartReader, MultipartReader, hdrs, web

from pincluster.errors import InvalidInput, NotFound, PinclusterError
from pincluster.ipfs import dagpb
from pincluster.ipfs.apiguard import (
    ALLOW,
    API_ORIGIN_ENV,
    AUTH_DENIED_TEXT,
    EXPOSED_HEADERS,
    FORBIDDEN_TEXT,
    METHOD_NOT_ALLOWED_TEXT,
    CorsPolicy,
    RpcAuthorizations,
    go_http_error,
    origins_to_check,
)
from pincluster.ipfs.car import CarError, CarReader, dag_blocks, export_car
from pincluster.ipfs.dag import named_links
from pincluster.types.cid import (
    BLAKE2B_256,
    BLAKE3,
    CID,
    DAG_CBOR,
    DAG_PB,
    IDENTITY,
    LIBP2P_KEY,
    RAW,
    SHA2_256,
    b58encode,
    hash_digest,
    multihash_encode,
)
from pincluster.types.codec import go_float_raw, go_json_plain
from pincluster.types.gotext import GO_FALSE, GO_TRUE, go_quote
from pincluster.types.gotime import format_time, from_unix_nano, parse_duration_ns
from pincluster.types.multiaddr import Multiaddr
from pincluster.types.peer import PeerID

if TYPE_CHECKING:
    from pincluster.ipfs.node import IpfsNode

log = logging.getLogger("pincluster.ipfs")

BLOCK_SIZE_LIMIT = 1 << 20        # kubo refuses bigger blocks unless allow-big-block
BIG_BLOCK_HARD_LIMIT = 32 << 20   # even with allow-big-block: protects the node's memory
_FLUSH_BYTES = 64 * 1024
_CODECS = {"raw": RAW, "dag-pb": DAG_PB, "protobuf": DAG_PB, "dag-cbor": DAG_CBOR, "cbor": 0x51,
           "dag-json": 0x0129, "json": 0x0200, "libp2p-key": LIBP2P_KEY}
_HASHES = {"sha2-256": SHA2_256, "sha2-512": 0x13, "blake2b-256": BLAKE2B_256, "blake3": BLAKE3,
           "identity": IDENTITY}


class ArgError(InvalidInput):
    """A bad or missing argument/option: HTTP 400, Code 1 (kubo's ErrClient)."""


# --- request helpers --------------------------------------------------------------------------------------
def opt_bool(req: web.Request, name: str, default: bool = False, *aliases: str) -> bool:
    """A boolean option as go-ipfs-cmds parses it; a bare ``?flag`` means true."""
    for key in (name, *aliases):
        if key in req.query:
            v = req.query[key]
            if v == "" or v.strip() in GO_TRUE or v.strip().lower() == "true":
                return True
            if v.strip() in GO_FALSE or v.strip().lower() == "false":
                return False
            raise ArgError(f"invalid value {v!r} for boolean option {name!r}: use true or false")
    return default


def opt_int(req: web.Request, name: str, default: int, *aliases: str) -> int:
    for key in (name, *aliases):
        if key in req.query and req.query[key] != "":
            try:
                return int(req.query[key])
            except ValueError:
                raise ArgError(f"invalid value {req.query[key]!r} for integer option {name!r}") from None
    return default


def opt_str(req: web.Request, name: str, default: str, *aliases: str) -> str:
    for key in (name, *aliases):
        if key in req.query:
            return req.query[key]
    return default


def args(req: web.Request) -> list[str]:
    return list(req.query.getall("arg", []))


def one_arg(req: web.Request, what: str) -> str:
    a = args(req)
    if not a:
        raise ArgError(f'argument "{what}" is required')
    return a[0]


def parse_cid(text: str) -> CID:
    try:
        return CID.decode(text.strip())
    except InvalidInput as exc:
        raise ArgError(str(exc)) from None


def error_body(message: str, code: int = 0) -> bytes:
    return go_json_plain({"Message": message, "Code": code, "Type": "error"}) + b"\n"


def error_response(message: str, status: int = 500, code: int = 0) -> web.Response:
    return web.Response(status=status, body=error_body(message, code), content_type="application/json")


def json_response(obj: Any) -> web.Response:
    return web.Response(body=go_json_plain(obj) + b"\n", content_type="application/json")


class Output:
    """A streamed response with kubo's headers and a real HTTP trailer for late errors.

    aiohttp cannot send trailers, so the chunked framing is written here (``Transfer-Encoding: chunked`` and
    the final ``0\\r\\nX-Stream-Error: …\\r\\n\\r\\n``); aiohttp's own length logic is switched off.
    """

    def __init__(self, req: web.Request, *, kind: str = "chunked", content_type: str = "application/json") -> None:
        self.req = req
        self.resp = web.StreamResponse(status=200)
        self.resp.headers[hdrs.CONTENT_TYPE] = content_type
        self.resp.headers["X-Chunked-Output" if kind == "chunked" else "X-Stream-Output"] = "1"
        self.resp.headers["Trailer"] = "X-Stream-Error"
        self.resp.headers[hdrs.TRANSFER_ENCODING] = "chunked"
        self._raw = req.version >= (1, 1)
        if self._raw:
            self.resp._length_check = False  # we frame the chunks ourselves (see class docstring)
        else:
            del self.resp.headers[hdrs.TRANSFER_ENCODING]
        self._buf = bytearray()
        self.started = False

    async def start(self) -> None:
        if not self.started:
            self.started = True
            await self.resp.prepare(self.req)

    async def write(self, data: bytes, *, flush: bool = False) -> None:
        self._buf += data
        if flush or len(self._buf) >= _FLUSH_BYTES:
            await self.flush()

    async def send(self, obj: Any, *, flush: bool = False) -> None:
        await self.write(go_json_plain(obj) + b"\n", flush=flush)

    async def flush(self) -> None:
        await self.start()
        if self._buf:
            data = bytes(self._buf)
            self._buf.clear()
            if self._raw:
                await self.resp.write(b"%x\r\n%s\r\n" % (len(data), data))
            else:
                await self.resp.write(data)

    async def finish(self, error: str | None = None) -> web.StreamResponse:
        await self.flush()
        if self._raw:
            trailer = b""
            if error:
                clean = error.replace("\r", " ").replace("\n", " ")
                trailer = b"X-Stream-Error: " + clean.encode("utf-8", "replace") + b"\r\n"
            await self.resp.write(b"0\r\n" + trailer + b"\r\n")
        await self.resp.write_eof()
        return self.resp


def _bootstrap_addr(text: str) -> Multiaddr:
    """A bootstrap address argument, or kubo's error for one that does not parse."""
    try:
        return Multiaddr(text)
    except InvalidInput as exc:
        reason = str(exc).partition("': ")[2] or str(exc)
        raise PinclusterError(f"failed to parse multiaddr {go_quote(text)}: {reason}") from None


#: Go's zero ``time.Time`` as JSON: what kubo's ``ls`` shows for an entry without a stored mtime.
_GO_ZERO_TIME = "0001-01-01T00:00:00Z"


def _ls_json(lk: Any) -> dict[str, Any]:
    """kubo's ``LsLink`` JSON of an ``exporter.LsLink``. ``ModTime`` is in UTC (Go's shows the daemon's zone)."""
    mtime = _GO_ZERO_TIME
    if lk.mtime is not None and 0 <= lk.mtime[1] <= 999_999_999:  # boxo's ModTime: other nanos give zero
        mtime = format_time(from_unix_nano(lk.mtime[0] * 1_000_000_000 + lk.mtime[1]))
    return {"Name": lk.name, "Hash": str(lk.cid), "Size": lk.size, "Type": lk.type, "Target": lk.target,
            "Mode": lk.mode, "ModTime": mtime}


def _cid_text(raw: bytes) -> str:
    """``str(CID(raw))`` for a stored key; a CIDv0 is its base58 text directly."""
    return b58encode(raw) if raw[:1] == b"\x12" else str(CID(raw))


async def stream_items(req: web.Request, items: AsyncIterator[Any], *, flush_each: bool = False) -> web.StreamResponse:
    """Send each item as an NDJSON line; an error before the first item becomes a plain 500 error."""
    out = Output(req)
    try:
        first = await anext(items)
    except StopAsyncIteration:
        return await out.finish()
    await out.send(first, flush=flush_each)
    try:
        async for item in items:
            await out.send(item, flush=flush_each)
    except (PinclusterError, OSError) as exc:
        return await out.finish(str(exc))
    return await out.finish()


async def stream_bytes(req: web.Request, chunks: AsyncIterator[bytes], content_type: str) -> web.StreamResponse:
    out = Output(req, kind="stream", content_type=content_type)
    try:
        first = await anext(chunks)
    except StopAsyncIteration:
        return await out.finish()
    await out.write(first)
    try:
        async for chunk in chunks:
            await out.write(chunk)
    except (PinclusterError, OSError) as exc:
        return await out.finish(str(exc))
    return await out.finish()


# --- the server ---------------------------------------------------------------------------------------------
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: What ``_command`` adds to the answer (a typed request key: aiohttp ≥ 3.14 warns about plain strings).
_HEADERS_KEY: web.RequestKey[list[tuple[str, str]]] = web.RequestKey("pincluster.ipfs.api.headers", list)


class ApiServer:
    """kubo RPC server bound to ``node``; ``start(addr)`` binds (port 0 picks a free port)."""

    def __init__(self, node: IpfsNode) -> None:
        self.node = node
        self.app = web.Application(client_max_size=1 << 40, middlewares=[self._errors])
        self.app.on_response_prepare.append(self._add_headers)
        self._runner: web.AppRunner | None = None
        # the API's own origins need its port: set again once bound
        self.policy = self._cors_policy(node.config.api.tcp_host_port()[1])
        self.authorizations = RpcAuthorizations.from_scopes(node.config.authorizations)
        self.multiaddr: Multiaddr | None = None
        routes: dict[str, Handler] = {
            "version": self.version, "id": self.id, "add": self.add, "cat": self.cat, "get": self.get,
            "block/put": self.block_put, "block/get": self.block_get, "block/stat": self.block_stat,
            "block/rm": self.block_rm, "pin/add": self.pin_add, "pin/ls": self.pin_ls, "pin/rm": self.pin_rm,
            "pin/update": self.pin_update, "pin/verify": self.pin_verify, "refs": self.refs,
            "refs/local": self.refs_local, "repo/stat": self.repo_stat, "repo/gc": self.repo_gc,
            "repo/version": self.repo_version, "swarm/connect": self.swarm_connect,
            "swarm/disconnect": self.swarm_disconnect, "swarm/peers": self.swarm_peers,
            "swarm/addrs/local": self.swarm_addrs_local, "dag/get": self.dag_get, "resolve": self.resolve,
            "dag/import": self.dag_import, "dag/export": self.dag_export,
            "config/show": self.config_show, "config": self.config_get, "ls": self.ls,
            "dag/stat": self.dag_stat, "stats/repo": self.repo_stat, "bootstrap": self.bootstrap_list,
            "bootstrap/list": self.bootstrap_list, "bootstrap/add": self.bootstrap_add,
            "bootstrap/add/default": self.bootstrap_add_default, "bootstrap/rm": self.bootstrap_rm,
            "bootstrap/rm/all": self.bootstrap_rm_all, "stats/bw": self.stats_bw,
        }
        for name, handler in routes.items():
            self.app.router.add_route("*", f"/api/v0/{name}", self._command(handler))
        self.app.router.add_route("*", "/api/v0/{tail:.*}", self._command(self._not_found))
        self.app.router.add_route("*", "/{tail:.*}", self._not_found)

    async def start(self, addr: Multiaddr) -> None:
        host, port = addr.tcp_host_port()
        # handler_cancellation: a client that hangs up (a cluster pin that timed out) cancels its fetch, as kubo does
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        bound_port = sockets[0].getsockname()[1] if sockets else port
        self.multiaddr = Multiaddr.from_host_port(host, bound_port)
        env_origin = os.environ.get(API_ORIGIN_ENV, "")
        if env_origin:
            log.warning("You are using the %s environment variable (it allows %s). It is deprecated, as in kubo: "
                        "list the origin in API.HTTPHeaders.Access-Control-Allow-Origin of the node's config "
                        "instead.", API_ORIGIN_ENV, env_origin)
        self.policy = self._cors_policy(bound_port)
        log.info("kubo RPC API listening on %s", self.multiaddr)
        if self.authorizations.by_header:
            log.info("RPC API access is limited by the rules defined in API.Authorizations")

    def _cors_policy(self, port: int) -> CorsPolicy:
        return CorsPolicy.from_http_headers(self.node.config.http_headers, port, os.environ.get(API_ORIGIN_ENV, ""))

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        assert self.multiaddr is not None
        host, port = self.multiaddr.tcp_host_port()
        return f"http://{host}:{port}"

    # -- plumbing ------------------------------------------------------------------------------------------
    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except ArgError as exc:
            return error_response(str(exc), 400, 1)
        except PinclusterError as exc:
            return error_response(str(exc))
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as exc:
            log.exception("API %s failed", request.path)
            return error_response(f"internal error: {exc}")

    def _command(self, handler: Handler) -> Handler:
        """go-ipfs-cmds' handler around a command, with kubo's ``API.Authorizations`` and rs/cors in front:
        without a configured authorization that allows the path, 403 (preflights included, as kubo); preflights
        answered from the CORS policy; OPTIONS 204 and other methods than POST 405, with ``Allow``; then the
        cross-site checks (403, see ``apiguard``) before the command runs."""

        async def wrapped(request: web.Request) -> web.StreamResponse:
            h = request.headers
            if not self.authorizations.allows(h.get("Authorization", ""), request.path):
                log.warning("API refused %s %s: no authorization of API.Authorizations allows it", request.method,
                            request.path)
                return go_http_error(403, AUTH_DENIED_TEXT)
            if request.method == "OPTIONS" and h.get("Access-Control-Request-Method"):
                return web.Response(status=204, headers=self.policy.preflight(
                    h, h.getall("Access-Control-Request-Headers", [])))
            headers = self.policy.actual(h.get("Origin", ""), request.method)
            request[_HEADERS_KEY] = headers
            if request.method == "OPTIONS":
                return web.Response(status=204, headers={"Allow": ALLOW})
            if request.method != "POST":
                log.warning("The IPFS API does not support %s requests.", request.method)
                return go_http_error(405, METHOD_NOT_ALLOWED_TEXT, {"Allow": ALLOW})
            origins = origins_to_check(request.method, h)
            if origins is None or not all(self.policy.allows(o) for o in origins):
                log.warning("API blocked request to %s from %s. (possible CSRF; to allow a web app, list its "
                            "origin in API.HTTPHeaders.Access-Control-Allow-Origin of the node's config)",
                            request.path_qs, h.get("Origin") or h.get("Referer") or "a browser")
                return go_http_error(403, FORBIDDEN_TEXT)
            headers += [("Access-Control-Allow-Headers", EXPOSED_HEADERS),
                        ("Access-Control-Expose-Headers", EXPOSED_HEADERS), *self.policy.extra]
            return await handler(request)

        return wrapped

    @staticmethod
    async def _add_headers(request: web.Request, response: web.StreamResponse) -> None:
        """The CORS and configured headers ``_command`` chose, on whatever answer the command gives."""
        headers = request.get(_HEADERS_KEY)
        if not headers:
            return
        for name in {n for n, _ in headers}:
            response.headers.popall(name, None)
        for name, value in headers:
            response.headers.add(name, value)

    @staticmethod
    async def _not_found(request: web.Request) -> web.StreamResponse:
        return web.Response(status=404, text="404 page not found\n", content_type="text/plain")

    def _getter(self, cache: bool = True) -> Any:
        return self.node.getter(cache=cache)

    async def _resolve(self, path: str) -> CID:
        """``/ipfs/<cid>/a/b``, ``<cid>/a`` or ``<cid>`` → the CID at that path (UnixFS names, dag-pb links)."""
        p = path.strip()
        if p.startswith("/ipns/"):
            raise PinclusterError(f"cannot resolve {p}: IPNS names are not supported by this node")
        if p.startswith("/ipfs/"):
            p = p[len("/ipfs/") :]
        elif p.startswith("/"):
            raise ArgError(f"invalid path {path!r}: use /ipfs/<cid>[/sub/path] or a bare CID")
        parts = [x for x in p.split("/") if x]
        if not parts:
            raise ArgError(f"invalid path {path!r}: no CID")
        cid = parse_cid(parts[0])
        if len(parts) == 1:
            return cid
        from pincluster.ipfs.unixfs.exporter import lookup

        getter = self._getter()
        for name in parts[1:]:
            if cid.codec != DAG_PB:
                raise NotFound(f"no link named {go_quote(name)} under {cid} (not a dag-pb node)")
            found = await lookup(getter, cid, name)  # a HAMT-sharded directory is searched by the name's hash
            if found is None:
                raise NotFound(f"no link named {go_quote(name)} under {cid}")
            cid = found
        return cid

    # -- commands ------------------------------------------------------------------------------------------
    async def version(self, req: web.Request) -> web.StreamResponse:
        from pincluster.ipfs.node import KUBO_COMPAT_VERSION, REPO_VERSION

        return json_response({
            "Version": KUBO_COMPAT_VERSION, "Commit": "", "Repo": str(REPO_VERSION),
            "System": f"{_arch()}/{platform.system().lower()}",
            "Golang": f"python{platform.python_version()} (pincluster, kubo RPC compatible)",
        })

    async def id(self, req: web.Request) -> web.StreamResponse:
        from pincluster.ipfs.node import AGENT_VERSION, SWARM_PROTOCOL

        a = args(req)
        if a and a[0] != str(self.node.peer_id):
            raise PinclusterError(f"looking up other peers ({a[0]}) is not supported by this node; ask it directly")
        pub = self.node.config.private_key.public_key()
        return json_response({
            "ID": str(self.node.peer_id),
            "PublicKey": base64.b64encode(pub.to_protobuf()).decode(),
            "Addresses": [str(m) for m in self.node.swarm_addrs()],
            "AgentVersion": AGENT_VERSION,
            "ProtocolVersion": "ipfs/0.1.0",
            "Protocols": [SWARM_PROTOCOL],
        })

    # add ---------------------------------------------------------------------------------------------------
    async def add(self, req: web.Request) -> web.StreamResponse:
        from pincluster.ipfs.unixfs.importer import AddOptions, import_entries

        for unsupported in ("nocopy", "fscache", "inline", "to-files"):
            if opt_bool(req, unsupported, False) if unsupported != "to-files" else req.query.get(unsupported):
                raise ArgError(f"option {unsupported!r} is not supported by this node")
        try:
            opts = AddOptions.from_kubo_args(dict(req.query))
        except InvalidInput as exc:
            raise ArgError(str(exc)) from None
        if not req.content_type.startswith("multipart/"):
            raise ArgError("add needs a multipart/form-data body with the files (Content-Type: multipart/form-data)")
        reader = await req.multipart()
        out = Output(req)
        root: CID | None = None
        sink = None if opts.only_hash else self.node.blockstore
        try:
            async with self._add_lock():
                async for ev in import_entries(_multipart_entries(reader), sink, opts):
                    obj: dict[str, Any] = {"Name": ev.name}
                    if ev.cid is not None:
                        obj["Hash"] = str(ev.cid)
                        root = ev.cid
                    if ev.bytes:
                        obj["Bytes"] = ev.bytes
                    if ev.cid is not None:
                        obj["Size"] = str(ev.size)
                    await out.send(obj, flush=ev.cid is None)
                if root is not None and opts.pin and not opts.only_hash:
                    await self.node.pins.add(root, recursive=True, assume_complete=True)
        except (PinclusterError, OSError, ValueError) as exc:
            if not out.started:
                raise PinclusterError(str(exc)) from exc
            return await out.finish(str(exc))
        return await out.finish()

    def _add_lock(self) -> Any:
        """The GC lock that adds hold shared, so a concurrent GC never removes the blocks of a fresh add."""
        return self.node.pins.gc_lock.shared()

    # cat / get ----------------------------------------------------------------------------------------------
    async def cat(self, req: web.Request) -> web.StreamResponse:
        from pincluster.ipfs.unixfs.exporter import cat

        cid = await self._resolve(one_arg(req, "ipfs-path"))
        offset = opt_int(req, "offset", 0, "o")
        length_opt = opt_int(req, "length", -1, "l")
        if offset < 0:
            raise ArgError(f"cannot specify negative offset {offset}")
        if "length" in req.query and length_opt < 0:
            raise ArgError(f"cannot specify negative length {length_opt}")
        length = None if length_opt < 0 else length_opt
        getter = self._getter()
        return await stream_bytes(req, _closing(cat(getter, cid, offset, length), getter), "text/plain")

    async def ls(self, req: web.Request) -> web.StreamResponse:
        """kubo's ``ls``: each path's entries sorted by name in one object; with ``stream``, one object per entry
        as the directory is walked (a HAMT-sharded one in shard order)."""
        from pincluster.ipfs.unixfs.exporter import ls

        paths = args(req)
        if not paths:
            raise ArgError('argument "ipfs-path" is required')
        resolve = opt_bool(req, "resolve-type", True) or opt_bool(req, "size", True)
        getter = self._getter()
        if not opt_bool(req, "stream", False, "s"):
            objects = []
            for path in paths:
                links = [_ls_json(lk) async for lk in ls(getter, await self._resolve(path), resolve)]
                links.sort(key=lambda lk: lk["Name"])  # Go's strings.Compare: UTF-8 byte order, as code points
                objects.append({"Hash": path, "Links": links})
            return json_response({"Objects": objects})

        async def entries() -> AsyncIterator[dict[str, Any]]:
            for path in paths:
                async for lk in ls(getter, await self._resolve(path), resolve):
                    yield {"Objects": [{"Hash": path, "Links": [_ls_json(lk)]}]}

        return await stream_items(req, entries())

    async def get(self, req: web.Request) -> web.StreamResponse:
        from pincluster.ipfs.unixfs.exporter import get_tar

        path = one_arg(req, "ipfs-path")
        cid = await self._resolve(path)
        compress = opt_bool(req, "compress", False, "C")
        level = opt_int(req, "compression-level", -1, "l")
        if level != -1 and not 1 <= level <= 9:
            raise ArgError(f"compression level must be between 1 and 9, got {level}")
        name = path.rstrip("/").split("/")[-1] or str(cid)
        getter = self._getter()
        chunks = _closing(get_tar(getter, cid, name), getter)
        if compress:
            chunks = _gzip(chunks, 6 if level == -1 else level)
            return await stream_bytes(req, chunks, "application/gzip")
        return await stream_bytes(req, chunks, "application/x-tar")

    # blocks ---------------------------------------------------------------------------------------------------
    async def block_put(self, req: web.Request) -> web.StreamResponse:
        fmt = opt_str(req, "format", "", "f")
        codec_name = opt_str(req, "cid-codec", "")
        mhtype = opt_str(req, "mhtype", "sha2-256")
        mhlen = opt_int(req, "mhlen", -1)
        pin = opt_bool(req, "pin", False)
        allow_big = opt_bool(req, "allow-big-block", False)
        version = 1
        if fmt:
            if codec_name:
                raise ArgError("unable to use \"format\" (deprecated) and a custom \"cid-codec\" at the same time")
            if fmt == "v0":
                codec_name, version = "dag-pb", 0
            else:
                codec_name = {"cbor": "dag-cbor", "protobuf": "dag-pb"}.get(fmt, fmt)
        codec_name = codec_name or "raw"
        codec = _CODECS.get(codec_name)
        if codec is None:
            raise ArgError(f"unrecognized CID codec {codec_name!r}; use one of {', '.join(sorted(_CODECS))}")
        hcode = _HASHES.get(mhtype)
        if hcode is None:
            raise ArgError(f"unrecognized multihash function {mhtype!r}; use one of {', '.join(sorted(_HASHES))}")
        if version == 0 and hcode != SHA2_256:
            raise ArgError("CIDv0 (format=v0) only supports sha2-256")
        if not req.content_type.startswith("multipart/"):
            raise ArgError("block/put needs a multipart/form-data body with the block data")
        limit = BIG_BLOCK_HARD_LIMIT if allow_big else BLOCK_SIZE_LIMIT
        reader = await req.multipart()

        async def blocks() -> AsyncIterator[dict[str, Any]]:
            batch: list[tuple[CID, bytes]] = []
            batch_bytes = 0
            async for part in _iter_parts(reader):
                if part.headers.get(hdrs.CONTENT_TYPE, "") == "application/x-directory":
                    continue
                data = await _read_limited(part, limit, allow_big)
                digest = await asyncio.to_thread(hash_digest, hcode, data) if len(data) > 16384 else \
                    hash_digest(hcode, data)
                if mhlen not in (-1, len(digest)):
                    raise ArgError(f"mhlen {mhlen} is not supported for {mhtype} (its length is {len(digest)})")
                mh = multihash_encode(hcode, digest)
                cid = CID(mh) if version == 0 else CID.v1(codec, mh)
                batch.append((cid, data))
                batch_bytes += len(data)
                if len(batch) >= 64 or batch_bytes >= 8 << 20:
                    await self.node.blockstore.put_many(batch)
                    for c, d in batch:
                        yield await self._after_put(c, d, pin)
                    batch, batch_bytes = [], 0
            if batch:
                await self.node.blockstore.put_many(batch)
                for c, d in batch:
                    yield await self._after_put(c, d, pin)

        return await stream_items(req, blocks())

    async def _after_put(self, cid: CID, data: bytes, pin: bool) -> dict[str, Any]:
        if pin:
            await self.node.pins.add(cid, recursive=True)
        return {"Key": str(cid), "Size": len(data)}

    async def block_get(self, req: web.Request) -> web.StreamResponse:
        cid = await self._resolve(one_arg(req, "cid"))
        data = await self._getter().get(cid)
        return web.Response(body=data, content_type="text/plain",
                            headers={"X-Stream-Output": "1", "Trailer": "X-Stream-Error"})

    async def block_stat(self, req: web.Request) -> web.StreamResponse:
        cid = await self._resolve(one_arg(req, "cid"))
        data = await self._getter().get(cid)
        return json_response({"Key": str(cid), "Size": len(data)})

    async def block_rm(self, req: web.Request) -> web.StreamResponse:
        cids = [parse_cid(a) for a in args(req)]
        if not cids:
            raise ArgError('argument "cid" is required')
        force = opt_bool(req, "force", False, "f")
        quiet = opt_bool(req, "quiet", False, "q")

        async def removed() -> AsyncIterator[dict[str, Any]]:
            # Like kubo, hold the GC lock (no add or pin may be using the blocks while they go); the results,
            # one per argument, are collected first so a slow client never holds the lock.
            async with self.node.pins.gc_lock.exclusive():
                results = [item async for item in remove_each()]
            for item in results:
                yield item

        async def remove_each() -> AsyncIterator[dict[str, Any]]:
            for cid in cids:
                err = ""
                pinned = await self.node.pins.is_pinned(cid)
                if pinned:
                    err = f"pinned via {pinned.split()[-1]}" if pinned.startswith("indirect") else f"pinned: {pinned}"
                elif not await self.node.blockstore.has(cid):
                    if force:
                        continue
                    err = "ipld: could not find node"
                else:
                    await self.node.blockstore.delete(cid)
                if err or not quiet:
                    obj: dict[str, Any] = {"Hash": str(cid)}
                    if err:
                        obj["Error"] = err
                    yield obj

        return await stream_items(req, removed())

    # pins -------------------------------------------------------------------------------------------------------
    async def pin_add(self, req: web.Request) -> web.StreamResponse:
        paths = args(req)
        if not paths:
            raise ArgError('argument "ipfs-path" is required')
        recursive = opt_bool(req, "recursive", True, "r")
        progress = opt_bool(req, "progress", False)
        cids = [await self._resolve(p) for p in paths]
        fetched = 0

        def on_progress(n: int) -> None:
            nonlocal fetched
            fetched = n

        async def run() -> None:
            for cid in cids:
                getter = self._getter(cache=False)
                try:
                    await self.node.pins.add(cid, recursive=recursive, getter=getter,
                                             progress=on_progress if progress else None)
                finally:
                    getter.close()

        if not progress:
            await run()
            return json_response({"Pins": [str(c) for c in cids]})
        out = Output(req)
        task = asyncio.create_task(run())
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=0.5)
                if done:
                    break
                if fetched:
                    await out.send({"Progress": fetched}, flush=True)
                else:
                    await out.start()
            task.result()
        except (PinclusterError, OSError) as exc:
            if not out.started:
                raise PinclusterError(str(exc)) from exc
            return await out.finish(str(exc))
        finally:
            if not task.done():
                task.cancel()
        if fetched:
            await out.send({"Progress": fetched})
        await out.send({"Pins": [str(c) for c in cids]})
        return await out.finish()

    async def pin_ls(self, req: web.Request) -> web.StreamResponse:
        ptype = opt_str(req, "type", "all", "t")
        if ptype not in ("all", "direct", "indirect", "recursive"):
            raise ArgError(f"invalid type '{ptype}', must be one of {{direct, indirect, recursive, all}}")
        stream = opt_bool(req, "stream", False, "s")
        opt_bool(req, "quiet", False, "q")  # checked, and like kubo's, only its CLI's text leaves the type out
        cids = [await self._resolve(p) for p in args(req)]
        if stream and not cids and ptype in ("recursive", "direct"):
            return await self._pin_ls_pages(req, ptype)
        items = self.node.pins.ls(ptype, cids).__aiter__()
        if stream:
            async def lines() -> AsyncIterator[dict[str, Any]]:
                async for cid, t in items:
                    yield {"Cid": str(cid), "Type": t}

            return await stream_items(req, lines())
        # Non-stream form: one {"Keys":{…}} object, still written incrementally to keep memory flat.
        out = Output(req)
        try:
            first = await anext(items)
        except StopAsyncIteration:
            return json_response({"Keys": {}})
        await out.write(b'{"Keys":{')
        sep = b""
        error: str | None = None
        try:
            pending: Any = first
            while True:
                cid, t = pending
                val = {"Type": t, "Name": ""}  # kubo's PinLsType (no pin names here); ``quiet`` is for its CLI
                await out.write(sep + go_json_plain(str(cid)) + b":" + go_json_plain(val))
                sep = b","
                try:
                    pending = await anext(items)
                except StopAsyncIteration:
                    break
        except (PinclusterError, OSError) as exc:
            error = str(exc)
        await out.write(b"}}\n")
        return await out.finish(error)

    async def _pin_ls_pages(self, req: web.Request, ptype: str) -> web.StreamResponse:
        """``pin/ls?stream=true`` of one pin type: the same lines as ``stream_items`` (``{"Cid":…,"Type":…}``;
        CID texts never need JSON escaping), written a database page at a time. The pin tracker lists every
        pin this way for each status listing."""
        tail = f'","Type":"{ptype}"}}\n'
        out = Output(req)
        try:
            async for page in self.node.pins.key_pages(ptype):
                await out.write(("".join(['{"Cid":"' + _cid_text(raw) + tail for raw in page])).encode())
        except (PinclusterError, OSError) as exc:
            if not out.started:
                raise
            return await out.finish(str(exc))
        return await out.finish()

    async def pin_rm(self, req: web.Request) -> web.StreamResponse:
        paths = args(req)
        if not paths:
            raise ArgError('argument "ipfs-path" is required')
        recursive = opt_bool(req, "recursive", True, "r")
        cids = [await self._resolve(p) for p in paths]
        for cid in cids:
            await self.node.pins.rm(cid, recursive=recursive)
        return json_response({"Pins": [str(c) for c in cids]})

    async def pin_update(self, req: web.Request) -> web.StreamResponse:
        a = args(req)
        if len(a) < 1:
            raise ArgError('argument "from-path" is required')
        if len(a) < 2:
            raise ArgError('argument "to-path" is required')
        unpin = opt_bool(req, "unpin", True)
        old, new = await self._resolve(a[0]), await self._resolve(a[1])
        await self.node.pins.update(old, new, unpin=unpin, getter=self._getter(cache=False))
        return json_response({"Pins": [str(old), str(new)]})

    async def pin_verify(self, req: web.Request) -> web.StreamResponse:
        verbose = opt_bool(req, "verbose", False)
        quiet = opt_bool(req, "quiet", False, "q")

        async def results() -> AsyncIterator[dict[str, Any]]:
            async for item in self.node.pins.verify():
                cid, ok, bad = _verify_item(item)
                if ok and not verbose:
                    continue
                if quiet:
                    if not ok:
                        yield {"Cid": str(cid), "Ok": False}
                    continue
                obj: dict[str, Any] = {"Cid": str(cid), "Ok": ok}
                if bad:
                    obj["BadNodes"] = [{"Cid": str(c), "Err": e} for c, e in bad]
                yield obj

        return await stream_items(req, results())

    # refs -----------------------------------------------------------------------------------------------------
    async def refs(self, req: web.Request) -> web.StreamResponse:
        roots = [await self._resolve(p) for p in args(req)]
        if not roots:
            raise ArgError('argument "ipfs-path" is required')
        recursive = opt_bool(req, "recursive", False, "r")
        unique = opt_bool(req, "unique", False, "u")
        edges = opt_bool(req, "edges", False, "e")
        fmt = opt_str(req, "format", "<dst>")
        max_depth = opt_int(req, "max-depth", -1) if recursive else 1  # kubo: max-depth only with recursive
        if edges and fmt != "<dst>":
            raise ArgError("using format argument with edges is not allowed")
        if edges:
            fmt = "<src> -> <dst>"
        getter = self._getter()
        seen: dict[CID, int] = {}  # with ``unique``: the smallest depth each CID was reached at

        def line(src: CID, dst: CID, name: str) -> dict[str, str]:
            text = fmt.replace("<src>", str(src)).replace("<dst>", str(dst)).replace("<linkname>", name)
            return {"Ref": text, "Err": ""}

        def visit(cid: CID, depth: int) -> tuple[bool, bool]:
            """kubo's ``RefWriter.visit``: (go deeper, write the edge)."""
            if max_depth >= 0 and depth > max_depth:
                return False, False
            deeper = not (max_depth >= 0 and depth == max_depth)
            if not unique:
                return deeper, True
            old = seen.get(cid)
            if old is not None and (max_depth < 0 or old <= depth):
                return False, False
            seen[cid] = depth
            return deeper, old is None

        async def walk() -> AsyncIterator[dict[str, str]]:
            # kubo's RefWriter: each link's edge, then (depth first) the refs below it, before the next link. An
            # explicit stack of (node, its links, next link, depth) keeps deep DAGs off the C stack.
            for root in roots:
                stack = [(root, named_links(root, await getter.get(root)), 0, 0)]
                while stack:
                    cid, kids, i, depth = stack[-1]
                    if i >= len(kids):
                        stack.pop()
                        continue
                    stack[-1] = (cid, kids, i + 1, depth)
                    child, name = kids[i]
                    deeper, write = visit(child, depth + 1)
                    if not deeper and not write:
                        continue
                    data = await getter.get(child)  # a ref printed is a block fetched, as kubo's
                    if write:
                        yield line(cid, child, name)
                    if deeper:
                        stack.append((child, named_links(child, data), 0, depth + 1))

        return await stream_items(req, walk())

    async def refs_local(self, req: web.Request) -> web.StreamResponse:
        async def keys() -> AsyncIterator[dict[str, str]]:
            async for cid in self.node.blockstore.keys():
                yield {"Ref": str(cid), "Err": ""}

        return await stream_items(req, keys())

    # repo -------------------------------------------------------------------------------------------------------
    async def repo_stat(self, req: web.Request) -> web.StreamResponse:
        from pincluster.ipfs.node import REPO_VERSION

        num, size = await self.node.blockstore.stat()
        smax = self.node.config.storage_max_bytes
        if opt_bool(req, "size-only", False):
            return json_response({"RepoSize": size, "StorageMax": smax})
        return json_response({"RepoSize": size, "StorageMax": smax, "NumObjects": num,
                              "RepoPath": str(self.node.repo), "Version": f"fs-repo@{REPO_VERSION}"})

    async def stats_bw(self, req: web.Request) -> web.StreamResponse:
        """kubo's ``stats bw``: the swarm's traffic in total, of one peer (``peer``) or of one protocol (``proto``,
        ours is ``/pincluster/ipfs/1.0``); with ``poll``, again every ``interval`` until the client hangs up."""
        self._host()  # online only, as kubo
        has_peer = "peer" in req.query or "p" in req.query
        has_proto = "proto" in req.query or "t" in req.query
        if has_peer and has_proto:
            raise ArgError("please only specify peer OR protocol")
        peer = ""
        if has_peer:
            text = opt_str(req, "peer", "", "p")
            try:
                peer = str(PeerID.decode(text))
            except InvalidInput as exc:
                raise PinclusterError(f"failed to parse peer ID: {exc}") from None
        proto = opt_str(req, "proto", "", "t")
        interval_text = opt_str(req, "interval", "1s", "i")
        interval = parse_duration_ns(interval_text) / 1e9
        poll = opt_bool(req, "poll", False)
        if poll and interval <= 0:
            raise ArgError(f"interval must be above zero with poll, got {interval_text!r}")
        bw = self.node.bandwidth
        out = Output(req)
        while True:
            st = bw.for_peer(peer) if has_peer else bw.for_protocol(proto) if has_proto else bw.totals()
            await out.send({"TotalIn": st.total_in, "TotalOut": st.total_out, "RateIn": go_float_raw(st.rate_in),
                            "RateOut": go_float_raw(st.rate_out)}, flush=True)
            if not poll:
                return await out.finish()
            await asyncio.sleep(interval)

    async def repo_gc(self, req: web.Request) -> web.StreamResponse:
        from pincluster.ipfs.gc import gc

        stream_errors = opt_bool(req, "stream-errors", False)
        quiet = opt_bool(req, "quiet", False, "q")
        errors: list[str] = []

        async def results() -> AsyncIterator[dict[str, Any]]:
            async for cid, err in gc(self.node.blockstore, self.node.pins):
                if err:
                    if stream_errors:
                        yield {"Error": err}
                    else:
                        errors.append(err)
                elif cid is not None and not quiet:
                    yield {"Key": {"/": str(cid)}}

        out = Output(req)
        try:
            async for item in results():
                await out.send(item)
        except (PinclusterError, OSError) as exc:
            errors.append(str(exc))
        if errors and not out.started:
            return error_response("; ".join(errors))
        return await out.finish("; ".join(errors) if errors else None)

    async def repo_version(self, req: web.Request) -> web.StreamResponse:
        from pincluster.ipfs.node import REPO_VERSION

        return json_response({"Version": str(REPO_VERSION)})

    # swarm ------------------------------------------------------------------------------------------------------
    async def swarm_connect(self, req: web.Request) -> web.StreamResponse:
        addrs = args(req)
        if not addrs:
            raise ArgError('argument "address" is required')
        out = []
        for text in addrs:
            try:
                ma = Multiaddr(text)
            except InvalidInput as exc:
                raise ArgError(str(exc)) from None
            who = str(ma.peer_id) if ma.peer_id else str(ma)
            try:
                pid = await self.node.connect(ma)
            except (PinclusterError, OSError) as exc:
                raise PinclusterError(f"connect {who} failure: {exc}") from exc
            out.append(f"connect {pid} success")
        return json_response({"Strings": out})

    async def swarm_disconnect(self, req: web.Request) -> web.StreamResponse:
        addrs = args(req)
        if not addrs:
            raise ArgError('argument "address" is required')
        host = self._host()
        out = []
        for text in addrs:
            try:
                ma = Multiaddr(text)
            except InvalidInput as exc:
                raise ArgError(str(exc)) from None
            pid = ma.peer_id
            if pid is None:
                raise ArgError(f"{text}: address must end with /p2p/<peer id>")
            if pid not in host.connected_peers():
                raise PinclusterError(f"disconnect {pid} failure: not connected")
            await host.disconnect(pid)
            out.append(f"disconnect {pid} success")
        return json_response({"Strings": out})

    async def swarm_peers(self, req: web.Request) -> web.StreamResponse:
        host = self._host()
        peers = []
        for pid in sorted(host.connected_peers()):
            addrs = host.peerstore.addrs(pid)
            peers.append({"Addr": str(addrs[0].without_p2p()) if addrs else "", "Peer": str(pid)})
        return json_response({"Peers": peers})

    async def swarm_addrs_local(self, req: web.Request) -> web.StreamResponse:
        with_id = opt_bool(req, "id", False)
        addrs = self.node.swarm_addrs()
        return json_response({"Strings": [str(a if with_id else a.without_p2p()) for a in addrs]})

    def _host(self) -> Any:
        if self.node.host is None:
            raise PinclusterError("this action must be run in online mode, try running 'pincluster-ipfs daemon' first")
        return self.node.host

    # dag / resolve / config -------------------------------------------------------------------------------------
    async def dag_get(self, req: web.Request) -> web.StreamResponse:
        cid = await self._resolve(one_arg(req, "ref"))
        codec = opt_str(req, "output-codec", "dag-json")
        data = await self._getter().get(cid)
        if codec in ("raw", "dag-pb") and {"raw": RAW, "dag-pb": DAG_PB}[codec] == cid.codec:
            return web.Response(body=data, content_type="application/octet-stream")
        if codec not in ("dag-json", "json"):
            raise PinclusterError(f"cannot encode a {_codec_name(cid.codec)} node as {codec}; use dag-json")
        if cid.codec == RAW:
            obj: Any = {"/": {"bytes": _b64(data)}}
        elif cid.codec == DAG_PB:
            node = dagpb.decode_node(data)
            obj = {}
            if node.data is not None:
                obj["Data"] = {"/": {"bytes": _b64(node.data)}}
            links = []
            for link in node.links:
                lo: dict[str, Any] = {"Hash": {"/": str(link.cid)}}
                if link.name is not None:
                    lo["Name"] = link.name
                if link.tsize is not None:
                    lo["Tsize"] = link.tsize
                links.append(lo)
            obj["Links"] = links
        else:
            raise PinclusterError(f"dag/get supports dag-pb and raw blocks; {cid} is {_codec_name(cid.codec)}")
        body = json.dumps(obj, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()
        return web.Response(body=body, content_type="application/json")

    async def dag_import(self, req: web.Request) -> web.StreamResponse:
        """kubo's ``dag import``: every multipart part is a CAR (v1, or v2's v1 payload); blocks are verified and
        stored in batches, then each distinct root is pinned recursively (``pin-roots``, default true) and
        reported as ``{"Root":{"Cid":{"/":…},"PinErrorMsg":…}}``; ``stats`` adds the block count and bytes."""
        pin_roots = opt_bool(req, "pin-roots", True)
        stats = opt_bool(req, "stats", False)
        silent = opt_bool(req, "silent", False)
        allow_big = opt_bool(req, "allow-big-block", False)
        if not req.content_type.startswith("multipart/"):
            raise ArgError("dag import needs a multipart/form-data body with the CAR files")
        limit = BIG_BLOCK_HARD_LIMIT if allow_big else BLOCK_SIZE_LIMIT
        reader = await req.multipart()

        async def lines() -> AsyncIterator[dict[str, Any]]:
            roots: dict[CID, None] = {}
            count = nbytes = 0
            async with self._add_lock():  # blocks stay safe from GC until their roots are pinned
                async for part in _iter_parts(reader):
                    if part.headers.get(hdrs.CONTENT_TYPE, "") == "application/x-directory":
                        continue
                    try:
                        car = await CarReader.open(_part_chunks(part), max_section=limit + 128)
                        roots.update(dict.fromkeys(car.header.roots))
                        await self._store_car_blocks(car, limit)
                    except CarError as exc:  # kubo's wording; the message names the bad block or byte
                        raise CarError(f"import failed: {exc}") from None
                    count += car.blocks_read
                    nbytes += car.bytes_read
                if pin_roots:
                    results: list[dict[str, Any]] = []
                    for root in roots:
                        err = ""
                        try:  # the walk reads only the local blockstore: an incomplete DAG is an error, not a fetch
                            await self.node.pins.add(root, recursive=True)
                        except PinclusterError as exc:
                            err = str(exc)
                        results.append({"Root": {"Cid": {"/": str(root)}, "PinErrorMsg": err}})
                    if not silent:
                        for item in results:
                            yield item
            if stats and not silent:
                yield {"Stats": {"BlockCount": count, "BlockBytesCount": nbytes}}

        return await stream_items(req, lines())

    async def _store_car_blocks(self, car: CarReader, limit: int) -> None:
        """Store a CarReader's (verified) blocks in fsynced batches of at most 64 blocks or 8 MiB."""
        batch: list[tuple[CID, bytes]] = []
        batch_bytes = 0
        async for cid, data in car.blocks():
            if len(data) > limit:
                raise ArgError(f"block {cid} is over {limit >> 20}MiB: big blocks can't be exchanged with other "
                               "peers; pass --allow-big-block to override")
            batch.append((cid, data))
            batch_bytes += len(data)
            if len(batch) >= 64 or batch_bytes >= 8 << 20:
                await self.node.blockstore.put_many(batch)
                batch, batch_bytes = [], 0
        if batch:
            await self.node.blockstore.put_many(batch)

    async def dag_export(self, req: web.Request) -> web.StreamResponse:
        """kubo's ``dag export``: a CAR v1 of the DAG under the root, blocks depth-first, each once, streamed."""
        root = await self._resolve(one_arg(req, "root"))
        getter = self._getter()
        return await stream_bytes(req, _closing(export_car(getter, root), getter), "application/vnd.ipld.car")

    async def dag_stat(self, req: web.Request) -> web.StreamResponse:
        """kubo's ``dag stat``: each root's blocks (each once, depth-first in link order) and their size; over all
        roots the distinct blocks, their size, the size the roots share and the ratio. With ``progress`` (the
        default over HTTP, as in kubo) the summary so far follows every block, then the final one."""
        paths = args(req)
        if not paths:
            raise ArgError('argument "root" is required')
        progress = opt_bool(req, "progress", True, "p")
        getter = self._getter()

        async def events() -> AsyncIterator[dict[str, Any]]:
            every: set[CID] = set()
            total = visited = 0
            stats: list[dict[str, Any]] = []
            for path in paths:
                root = await self._resolve(path)
                mine: dict[str, Any] = {"Cid": str(root), "Size": 0, "NumBlocks": 0}
                stats.append(mine)
                async for cid, data in dag_blocks(getter, root):  # ``dag export``'s walk: kubo's order for both
                    mine["Size"] += len(data)
                    mine["NumBlocks"] += 1
                    if cid not in every:
                        every.add(cid)
                        total += len(data)
                    visited += len(data)
                    if progress:
                        yield _dag_stat_summary(stats, total)
            yield _dag_stat_summary(stats, total, unique=len(every), visited=visited)

        return await stream_items(req, events())

    async def resolve(self, req: web.Request) -> web.StreamResponse:
        path = one_arg(req, "name")
        cid = await self._resolve(path)
        return json_response({"Path": f"/ipfs/{cid}"})

    # bootstrap --------------------------------------------------------------------------------------------------
    async def bootstrap_list(self, req: web.Request) -> web.StreamResponse:
        return json_response({"Peers": [str(a) for a in self.node.config.bootstrap]})

    async def bootstrap_add(self, req: web.Request) -> web.StreamResponse:
        """kubo's ``bootstrap add``: each address must name its peer (``/p2p/<id>``); answers the ones given."""
        added: list[Multiaddr] = []
        for text in args(req):
            addr = _bootstrap_addr(text)
            if addr.peer_id is None:
                raise PinclusterError(f"invalid bootstrap address: {text}")
            if addr not in added:
                added.append(addr)
        if not added:
            raise PinclusterError("no bootstrap peers to add")
        self.node.set_bootstrap(added + [a for a in self.node.config.bootstrap if a not in added])  # kubo's order
        return json_response({"Peers": [str(a) for a in added]})

    async def bootstrap_add_default(self, req: web.Request) -> web.StreamResponse:
        raise PinclusterError("cannot add default bootstrap peers: this node has none (its swarm is a private "
                              "network); add specific peer addresses instead")

    async def bootstrap_rm(self, req: web.Request) -> web.StreamResponse:
        """kubo's ``bootstrap rm``: the addresses given (``/p2p/<id>`` alone: every address of that peer), or with
        ``all`` every one; answers those removed."""
        if opt_bool(req, "all", False):
            return await self.bootstrap_rm_all(req)
        current = list(self.node.config.bootstrap)
        gone: list[Multiaddr] = []
        for text in args(req):
            addr = _bootstrap_addr(text)
            if addr.peer_id is None:
                raise PinclusterError("invalid p2p multiaddr")
            whole_peer = addr.without_p2p() == addr  # ``/p2p/<id>`` alone
            gone += [a for a in current if a not in gone and (a == addr or (whole_peer and a.peer_id == addr.peer_id))]
        if gone:
            self.node.set_bootstrap([a for a in current if a not in gone])
        return json_response({"Peers": [str(a) for a in gone]})

    async def bootstrap_rm_all(self, req: web.Request) -> web.StreamResponse:
        gone = list(self.node.config.bootstrap)
        if gone:
            self.node.set_bootstrap([])
        return json_response({"Peers": [str(a) for a in gone]})

    async def config_show(self, req: web.Request) -> web.StreamResponse:
        return json_response(self.node.config.to_json(secrets=False))

    async def config_get(self, req: web.Request) -> web.StreamResponse:
        a = args(req)
        if not a:
            raise ArgError('argument "key" is required')
        if len(a) > 1:
            raise PinclusterError("setting config values through the API is not supported; edit the config file "
                                  "and restart the node")
        key = a[0]
        if key.startswith("Identity.PrivKey"):
            raise PinclusterError("cannot show or change private key through API")
        cur: Any = self.node.config.to_json(secrets=False)
        for part in key.replace("/", ".").split("."):
            if not isinstance(cur, dict) or part not in cur:
                raise PinclusterError(f"failed to get config value: key has no attribute {part}")
            cur = cur[part]
        return json_response({"Key": key, "Value": cur})


# --- helpers ----------------------------------------------------------------------------------------------------
async def _iter_parts(reader: MultipartReader) -> AsyncIterator[BodyPartReader]:
    """Every leaf part, descending into nested ``multipart/mixed`` (old go-ipfs-files directories)."""
    while True:
        part = await reader.next()
        if part is None:
            return
        if isinstance(part, MultipartReader):
            async for sub in _iter_parts(part):
                yield sub
        else:
            yield part


def _part_path(part: BodyPartReader) -> str:
    """The part's relative path: go-ipfs-files puts it, query-escaped, in Content-Disposition filename."""
    raw = part.headers.get(hdrs.CONTENT_DISPOSITION, "")
    name = None
    for param in raw.split(";")[1:]:
        k, _, v = param.strip().partition("=")
        if k.strip().lower() == "filename":
            name = v.strip().strip('"')
            break
    if name is None:
        name = part.filename or part.name or ""
    return urllib.parse.unquote_plus(name)


async def _multipart_entries(reader: MultipartReader) -> AsyncIterator[Any]:
    from pincluster.ipfs.unixfs.importer import ImportEntry

    async for part in _iter_parts(reader):
        ctype = part.headers.get(hdrs.CONTENT_TYPE, "application/octet-stream")
        path = _part_path(part).strip("/")
        if ctype == "application/x-directory":
            yield ImportEntry(path, "dir")
        elif ctype == "application/symlink":
            raise ArgError(f"{path}: symlinks are not supported by this node; add the target instead")
        else:
            yield ImportEntry(path, "file", _part_chunks(part))


async def _part_chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    while True:
        chunk = await part.read_chunk(256 * 1024)
        if not chunk:
            return
        yield chunk


async def _read_limited(part: BodyPartReader, limit: int, allow_big: bool) -> bytes:
    buf = bytearray()
    while True:
        chunk = await part.read_chunk(256 * 1024)
        if not chunk:
            return bytes(buf)
        buf += chunk
        if len(buf) > limit:
            if allow_big:
                raise ArgError(f"block is over the hard limit of {limit >> 20}MiB")
            raise ArgError("produced block is over 1MiB: big blocks can't be exchanged with other peers. consider "
                           "using UnixFS for automatic chunking of bigger files, or pass --allow-big-block to "
                           "override")


async def _closing(chunks: AsyncIterator[bytes], getter: Any) -> AsyncIterator[bytes]:
    """Yield ``chunks``, then drop the fetch session's unused prefetches (also on error or disconnect)."""
    try:
        async for chunk in chunks:
            yield chunk
    finally:
        getter.close()


async def _gzip(chunks: AsyncIterator[bytes], level: int) -> AsyncIterator[bytes]:
    comp = zlib.compressobj(level, zlib.DEFLATED, 31)  # wbits 31 = gzip container
    async for chunk in chunks:
        out = comp.compress(chunk)
        if out:
            yield out
    yield comp.flush()


def _verify_item(item: Any) -> tuple[CID, bool, list[tuple[CID, str]]]:
    """Normalise PinStore.verify's items (tuple or object) to (cid, ok, bad nodes)."""
    if isinstance(item, tuple):
        cid, ok = item[0], bool(item[1])
        bad = list(item[2]) if len(item) > 2 and item[2] else []
        return cid, ok, bad
    cid = item.cid
    ok = bool(getattr(item, "ok", True))
    bad = list(getattr(item, "bad_nodes", None) or getattr(item, "bad", None) or [])
    return cid, ok, bad


def _dag_stat_summary(stats: list[dict[str, Any]], total: int, *, unique: int = 0, visited: int = 0) -> dict[str, Any]:
    """kubo's ``DagStatSummary`` JSON (its ``omitempty`` fields left out when zero); ``unique`` and ``visited``
    (bytes over all roots, a block shared by two counted twice) only in the final one, which has the ratio."""
    out: dict[str, Any] = {}
    if unique:
        out["UniqueBlocks"] = unique
    if total:
        out["TotalSize"] = total
    if unique and visited - total:
        out["SharedSize"] = visited - total
    if unique and total:
        out["Ratio"] = msgspec.Raw(_go_float32(visited / total).encode())
    if stats:
        out["DagStats"] = [{"Cid": st["Cid"], **{k: st[k] for k in ("Size", "NumBlocks") if st[k]}} for st in stats]
    return out


def _go_float32(x: float) -> str:
    """Go's JSON of a ``float32`` (``strconv.FormatFloat(f, 'f', -1, 32)`` for the values ``dag stat`` has): the
    shortest decimal that reads back as the same float32."""
    f32 = struct.unpack("<f", struct.pack("<f", x))[0]
    for digits in range(1, 10):
        text = f"{f32:.{digits}g}"
        if struct.unpack("<f", struct.pack("<f", float(text)))[0] == f32:
            break
    return format(decimal.Decimal(text), "f")


def _codec_name(code: int) -> str:
    for name, c in _CODECS.items():
        if c == code:
            return name
    return f"0x{code:x}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _arch() -> str:
    m = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)

