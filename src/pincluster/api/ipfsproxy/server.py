"""The IPFS proxy (spec §9): a kubo RPC API in front of the IPFS node that turns pinning into cluster pinning.

``pin/add``, ``pin/rm``, ``pin/ls``, ``pin/update``, ``add``, ``repo/stat``, ``repo/gc`` (and ``block/put`` or
``dag/put`` with ``pin=true``) are answered by the cluster, in kubo's shapes, for methods GET, POST and PUT
under ``/api/v0``. Everything else is streamed to the node unchanged (:mod:`.upstream`). So a kubo client,
or another cluster using the proxy as its ``node_multiaddress``, pins cluster-wide without knowing it.

Where Go's proxy misbehaves (spec QUIRKs and kubo mismatches) this one does what a kubo client expects; each
difference is listed in ``docs/ipfs-proxy.md``.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Final

import msgspec
from aiohttp import web

from pincluster.api.common.http import HTTPServer, ListenOptions, Timeouts, header_limit_middleware
from pincluster.api.common.stream import stream_ndjson
from pincluster.api.interface import ClusterAPI
from pincluster.api.ipfsproxy.upstream import (
    FramedBody,
    HeaderCache,
    Upstream,
    UpstreamReply,
    forward_headers,
    relay_response,
)
from pincluster.api.ipfsproxy.upstream import request_body as upstream_body
from pincluster.api.rest.params import go_bool, parse_add_params
from pincluster.api.rest.server import multipart_entries
from pincluster.client.transport import HTTPResponse
from pincluster.config.sections import IPFSProxyConfig
from pincluster.errors import InvalidInput, NotFound, PinclusterError, Unavailable
from pincluster.ipfs.apiguard import FORBIDDEN_TEXT, go_http_error, origins_to_check
from pincluster.observe import tracing
from pincluster.observe.hooks import endpoint_of
from pincluster.types.cid import CID
from pincluster.types.models import VERSION, AddedOutput, PinOptions
from pincluster.types.multiaddr import Multiaddr
from pincluster.types.status import PinMode, PinType

__all__ = ["SERVER_HEADER", "IPFSProxy", "KuboError", "kubo_error"]

log = logging.getLogger("pincluster.ipfsproxy")
access_log = logging.getLogger("pincluster.ipfsproxylog")

SERVER_HEADER: Final = f"ipfs-cluster/ipfsproxy/{VERSION}"
#: Go's proxy also hijacks GET and PUT; kubo (since 0.5) refuses them (405), and a GET can come from any web page
#: (an ``<img>``), so they go to the node, which answers as kubo.
_Preflights = dict[str, UpstreamReply | None]  # the node's preflight answers for one request, by origin
_HIJACK_METHODS: Final = frozenset({"POST"})
_WITH_ARG: Final = frozenset({"/pin/add", "/pin/rm", "/pin/ls"})
_CORS_COPY: Final = ("Access-Control-Allow-Origin", "Vary", "Access-Control-Allow-Credentials")
_HEADERS_KEY: Final = web.RequestKey("pincluster.ipfsproxy.headers", list[tuple[str, str]])
_BATCH: Final = 64 * 1024
_MAX_LINE: Final = 16 * 1024 * 1024
_NOT_PINNED_RM: Final = "not pinned or pinned indirectly"  # kubo's text; the cluster connector accepts it
_FALSE: Final = frozenset({"0", "f", "F", "FALSE", "false", "False"})

Handler = Callable[[web.Request, str | None], Awaitable[web.StreamResponse]]


class KuboError(PinclusterError):
    """An error answered the kubo way: ``{"Message","Code":0,"Type":"error"}`` with ``status``."""

    def __init__(self, message: str, status: int = 500) -> None:
        super().__init__(message)
        self.status = status


def kubo_error_body(message: str) -> bytes:
    return json.dumps({"Message": message, "Code": 0, "Type": "error"}, separators=(",", ":")).encode() + b"\n"


def kubo_error(message: str, status: int = 500) -> web.Response:
    return web.Response(status=status, body=kubo_error_body(message), content_type="application/json")


def kubo_json(obj: Any) -> web.Response:
    return web.Response(body=json.dumps(obj, separators=(",", ":")).encode() + b"\n", content_type="application/json")


def _canonical(name: str) -> str:
    """Go's ``CanonicalMIMEHeaderKey`` (``access-control-allow-origin`` → ``Access-Control-Allow-Origin``)."""
    return "-".join(p[:1].upper() + p[1:].lower() for p in name.split("-"))


class _AddedKubo(msgspec.Struct, omit_defaults=True):
    """kubo's ``add`` output object (Go's ``ipfsAddResp``; empty fields omitted, ``Name`` always present)."""

    Name: str
    Hash: str = ""
    Bytes: int = 0
    Size: str = ""


_enc = msgspec.json.Encoder()


def _added_kubo(o: AddedOutput) -> _AddedKubo:
    return _AddedKubo(Name=o.name, Hash=str(o.cid) if o.cid is not None else "", Bytes=o.bytes,
                      Size=str(o.size) if o.size else "")


def _encode_added(o: AddedOutput) -> bytes:
    return _enc.encode(_added_kubo(o))


def _pin_ls_line(cid: str, mode: PinMode) -> bytes:
    return b'{"Cid":"%s","Type":"%s"}\n' % (cid.encode(), mode.value.encode())


def _arg_cid_path(text: str) -> str:
    """kubo's argument forms: a bare CID, ``<cid>/sub/path`` or an ``/ipfs|ipns|ipld/…`` path → a path."""
    text = text.strip()
    if not text:
        raise InvalidInput("empty path")
    if text.startswith("/"):
        parts = [p for p in text.split("/") if p]
        if len(parts) < 2 or parts[0] not in ("ipfs", "ipns", "ipld"):
            raise InvalidInput(f"{text} is not a valid IPFS path: use /ipfs/<cid>[/path] or /ipns/<name>")
        if parts[0] != "ipns":
            CID.decode(parts[1])
        return "/" + "/".join(parts)
    first, _, _rest = text.partition("/")
    CID.decode(first)
    return "/ipfs/" + text.strip("/")


def _direct_cid(path: str) -> CID | None:
    """The CID of ``/ipfs/<cid>`` (no sub-path), which needs no resolving."""
    parts = [p for p in path.split("/") if p]
    if len(parts) == 2 and parts[0] in ("ipfs", "ipld"):
        return CID.decode(parts[1])
    return None


def _first_values(query: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in query.items():
        out.setdefault(k, v)
    return out


def _types_filter(text: str) -> frozenset[PinMode] | None:
    """``pin/ls?type=``: which pin modes to list (None = all; the empty set = none, for ``indirect``)."""
    t = text or "all"
    if t == "all":
        return None
    if t == "recursive":
        return frozenset({PinMode.RECURSIVE})
    if t == "direct":
        return frozenset({PinMode.DIRECT})
    if t == "indirect":
        return frozenset()
    raise KuboError(f"invalid type '{text}', must be one of {{direct, indirect, recursive, all}}", 400)


class IPFSProxy(HTTPServer):
    """The proxy component: ``start()`` listens on every ``listen_multiaddress``; ``stop()`` closes.

    ``clock`` (monotonic seconds) times the cache of headers learned from the node; ``node_ssl_context``
    replaces the system CAs for ``node_https`` (a node with its own certificate authority).
    """

    NAME = "IPFS proxy"

    def __init__(self, cluster: ClusterAPI, cfg: IPFSProxyConfig, folder: str = "",
                 clock: Callable[[], float] = time.monotonic,
                 node_ssl_context: ssl.SSLContext | None = None) -> None:
        self.cluster = cluster
        self.cfg = cfg
        log_file = cfg.log_file
        if log_file and folder and not os.path.isabs(log_file):
            log_file = os.path.join(folder, log_file)
        self.log_file = log_file
        self.upstream = Upstream(cfg.node_multiaddress, https=cfg.node_https, ssl_context=node_ssl_context)
        self._headers = HeaderCache(cfg.extract_headers_ttl.total_seconds(), clock)
        super().__init__()
        self._hijack: dict[str, Handler] = {
            "/pin/add": self._pin_add,
            "/pin/rm": self._pin_rm,
            "/pin/ls": self._pin_ls,
            "/pin/update": self._pin_update,
            "/add": self._add,
            "/repo/stat": self._repo_stat,
            "/repo/gc": self._repo_gc,
            "/block/put": self._block_put,
            "/dag/put": self._dag_put,
        }

    @classmethod
    def from_config(cls, cluster: ClusterAPI, cfg: IPFSProxyConfig, folder: str) -> IPFSProxy:
        return cls(cluster, cfg, folder)

    # ------------------------------------------------------------------------------------------ lifecycle
    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[header_limit_middleware(self.cfg.max_header_bytes)])
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        app.on_response_prepare.append(self._on_prepare)
        return app

    def listen_options(self) -> ListenOptions:
        return ListenOptions(self.cfg.listen_multiaddress, log, access_log, None,
                             self.cfg.idle_timeout.total_seconds(), self.log_file,
                             timeouts=Timeouts.of(self.cfg))

    def listening_message(self, addr: Multiaddr) -> str:
        return f"IPFS Proxy is listening on {addr} (forwarding to {self.cfg.node_multiaddress})"

    async def stop(self) -> None:
        await super().stop()
        await self.upstream.close()

    # ------------------------------------------------------------------------------------------ routing
    def _match(self, method: str, path: str) -> tuple[Handler, str | None] | None:
        if method not in _HIJACK_METHODS or not path.startswith("/api/v0/"):
            return None
        sub = path[len("/api/v0"):]
        handler = self._hijack.get(sub)
        if handler is not None:
            return handler, None
        head, _, arg = sub.rpartition("/")
        if head in _WITH_ARG and arg:
            return self._hijack[head], arg
        return None

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        with tracing.span(lambda: f"ipfsproxy/{request.method} {endpoint_of(request.path)}",
                          **{"http.target": request.raw_path}):
            return await self._route(request)

    async def _route(self, request: web.Request) -> web.StreamResponse:
        found = self._match(request.method, request.path)
        if found is None:
            return await self._forward(request)
        handler, arg = found
        if request.path.endswith(("/block/put", "/dag/put")) and request.query.get("pin") != "true":
            return await self._forward(request)
        preflights: _Preflights = {}
        refusal = await self._cross_site_refusal(request, preflights)
        if refusal is not None:
            return refusal
        request[_HEADERS_KEY] = await self._hijack_headers(request, preflights)
        try:
            return await handler(request, arg)
        except KuboError as exc:
            return kubo_error(str(exc), exc.status)
        except PinclusterError as exc:
            return kubo_error(str(exc))
        except (web.HTTPException, ConnectionError):
            raise
        except Exception as exc:
            log.exception("%s %s failed", request.method, request.path)
            return kubo_error(str(exc) or type(exc).__name__)

    async def _forward(self, request: web.Request, target: str | None = None) -> web.StreamResponse:
        try:
            return await self.upstream.forward(request, target=target)
        except Unavailable as exc:
            # Go's reverse proxy answers 502 with an empty body when the node is down.
            log.warning("cannot reach the IPFS node at %s: %s", self.cfg.node_multiaddress, exc)
            return web.Response(status=502, text=f"ipfs proxy: cannot reach the IPFS node: {exc}\n",
                                content_type="text/plain")

    # ------------------------------------------------------------------------------------------ headers
    async def _preflight(self, request: web.Request, origin: str, replies: _Preflights) -> UpstreamReply | None:
        """The node's answer to a CORS preflight of this request from ``origin`` (None: no answer); asked once
        per origin and request."""
        if origin not in replies:
            try:
                replies[origin] = await self.upstream.call("OPTIONS", request.path, [
                    ("Origin", origin), ("Access-Control-Request-Method", request.method)])
            except PinclusterError as exc:
                log.debug("CORS preflight to the IPFS node failed: %s", exc)
                replies[origin] = None
        return replies[origin]

    async def _cross_site_refusal(self, request: web.Request, replies: _Preflights) -> web.Response | None:
        """kubo's cross-site checks (``ipfs.apiguard``) before a hijacked request runs, with the node's own
        policy: an origin is allowed when the node's preflight answer allows it. Go's proxy runs hijacked
        requests from any web page (a page can make the cluster pin, unpin or collect garbage); the node it
        stands for refuses them, and so does this proxy (403, as kubo)."""
        origins = origins_to_check(request.method, request.headers)
        if origins is not None:
            for origin in origins:
                reply = await self._preflight(request, origin, replies)
                if reply is None or not reply.header_values("Access-Control-Allow-Origin"):
                    break
            else:
                return None
        log.warning("IPFS proxy blocked request to %s from %s. (possible CSRF; the IPFS node does not allow "
                    "that origin: see its API.HTTPHeaders)", request.path_qs,
                    request.headers.get("Origin") or request.headers.get("Referer") or "a browser")
        return go_http_error(403, FORBIDDEN_TEXT)

    async def _hijack_headers(self, request: web.Request, replies: _Preflights) -> list[tuple[str, str]]:
        """Spec §9.2: CORS answers of the node for this request, the extracted headers, ``Server``."""
        out: list[tuple[str, str]] = []
        origin = request.headers.get("Origin")
        if origin:
            reply = await self._preflight(request, origin, replies)
            if reply is not None:
                out += [(name, v) for name in _CORS_COPY for v in reply.header_values(name)]
        out += await self._extracted_headers()
        out.append(("Server", SERVER_HEADER))
        return out

    async def _extracted_headers(self) -> list[tuple[str, str]]:
        cached = self._headers.get()
        if cached is not None:
            return cached
        async with self._headers.lock:
            cached = self._headers.get()
            if cached is not None:
                return cached
            names = ["Access-Control-Expose-Headers", *self.cfg.extract_headers_extra]
            try:
                reply = await self.upstream.call("POST", self.cfg.extract_headers_path)
            except PinclusterError as exc:  # not cached: asked again on the next hijacked request
                log.debug("cannot learn headers from the IPFS node: %s", exc)
                return []
            values = [(_canonical(n), v) for n in names for v in reply.header_values(n)]
            self._headers.set(values)
            return values

    async def _on_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        headers = request.get(_HEADERS_KEY)
        if headers is None:
            return
        for name in {n for n, _ in headers}:
            response.headers.popall(name, None)
        for name, value in headers:
            response.headers.add(name, value)
        response.headers["Content-Type"] = "application/json"

    # ------------------------------------------------------------------------------------------ helpers
    @staticmethod
    def _args(request: web.Request, arg: str | None) -> list[str]:
        return [arg] if arg is not None else list(request.query.getall("arg", []))

    async def _resolve(self, path: str) -> CID:
        """The CID at ``path``: direct for ``/ipfs/<cid>``, else the node's ``resolve``."""
        direct = _direct_cid(path)
        if direct is not None:
            return direct
        target = "/api/v0/resolve?arg=" + urllib.parse.quote(path, safe="")
        reply = await self.upstream.call("POST", target, timeout=300.0)
        try:
            doc = json.loads(reply.body)
        except ValueError:
            doc = {}
        if reply.status != 200:
            raise KuboError(str(doc.get("Message") or reply.body.decode(errors="replace").strip()))
        parts = [p for p in str(doc.get("Path", "")).split("/") if p]
        try:
            if len(parts) >= 2 and parts[0] in ("ipfs", "ipld"):
                return CID.decode(parts[1])
        except InvalidInput:
            pass
        raise KuboError(f"could not resolve {path}: the node answered {reply.body[:200]!r}")

    async def _arg_cid(self, text: str) -> CID:
        try:
            return await self._resolve(_arg_cid_path(text))
        except InvalidInput as exc:
            raise KuboError(f"Error parsing IPFS Path: {exc}") from None

    # ------------------------------------------------------------------------------------------ pin/*
    def _cid_paths(self, request: web.Request, arg: str | None) -> list[str]:
        """The ``arg``s of a pin request as ``/ipfs/…`` paths (kubo's errors for none or a bad one)."""
        args = self._args(request, arg)
        if not args:
            raise KuboError('argument "ipfs-path" is required', 400)
        try:
            return [_arg_cid_path(a) for a in args]
        except InvalidInput as exc:
            raise KuboError(f"Error parsing IPFS Path: {exc}") from None

    async def _pin_add(self, request: web.Request, arg: str | None) -> web.StreamResponse:
        paths = self._cid_paths(request, arg)
        q = request.query
        kind = q.get("type", "")
        direct = kind == "direct" or (not kind and q.get("recursive", "") in _FALSE)
        options = PinOptions(mode=PinMode.DIRECT if direct else PinMode.RECURSIVE, name=q.get("name", ""))
        pinned = [str((await self.cluster.pin_path(p, options)).cid) for p in paths]
        return kubo_json({"Pins": pinned})

    async def _pin_rm(self, request: web.Request, arg: str | None) -> web.StreamResponse:
        paths = self._cid_paths(request, arg)
        removed = []
        for p in paths:
            try:
                removed.append(str((await self.cluster.unpin_path(p)).cid))
            except NotFound:
                raise KuboError(_NOT_PINNED_RM) from None
        return kubo_json({"Pins": removed})

    async def _pin_ls(self, request: web.Request, arg: str | None) -> web.StreamResponse:
        q = request.query
        try:
            stream = go_bool(q, "stream", False) or go_bool(q, "s", False)
        except InvalidInput as exc:
            raise KuboError(str(exc), 400) from None
        modes = _types_filter(q.get("type", ""))
        args = self._args(request, arg)
        if args:
            return await self._pin_ls_args(args, modes, stream)
        if stream:
            chunks = (b"".join([_pin_ls_line(c, m) for c, m in page]) async for page in self._listed(modes))
            return await stream_ndjson(request, chunks, preencoded=True, immediate=True, always_trailer=False)
        return await self._pin_ls_keys(request, self._listed(modes))

    async def _pin_ls_args(self, args: list[str], modes: frozenset[PinMode] | None,
                           stream: bool) -> web.StreamResponse:
        pins = []
        for a in args:
            cid = await self._arg_cid(a)
            try:
                pin = await self.cluster.pin_get(cid)
            except NotFound:
                raise KuboError(f"Error: path '{a}' is not pinned") from None
            if pin.type is PinType.META or (modes is not None and pin.mode not in modes):
                raise KuboError(f"Error: path '{a}' is not pinned")
            pins.append(pin)
        if stream:
            body = b"".join(_pin_ls_line(str(p.cid), p.mode) for p in pins)
            return web.Response(body=body, content_type="application/json")
        return kubo_json({"Keys": {str(p.cid): {"Type": p.mode.value} for p in pins}})

    async def _listed(self, modes: frozenset[PinMode] | None) -> AsyncIterator[list[tuple[str, PinMode]]]:
        """Pages of (CID, mode) of the pins in ``modes`` (metadata pins never reach IPFS)."""
        if modes is not None and not modes:
            return
        async for page in self.cluster.pin_modes():
            if modes is not None:
                page = [(c, m) for c, m in page if m in modes]
            if page:
                yield page

    async def _pin_ls_keys(self, request: web.Request,
                           pages: AsyncIterator[list[tuple[str, PinMode]]]) -> web.StreamResponse:
        """``{"Keys":{…}}`` written incrementally; a failure after the start goes to the trailer."""
        it = aiter(pages)
        try:
            page: list[tuple[str, PinMode]] | None = await anext(it)
        except StopAsyncIteration:
            page = None
        resp = web.StreamResponse(status=200)
        resp.headers["Trailer"] = "X-Stream-Error"
        body = FramedBody(request, resp)
        await body.open()
        buf = bytearray(b'{"Keys":{')
        trailers: list[tuple[str, str]] = []
        sep = b""
        try:
            while page is not None:
                buf += sep + b",".join([b'"%s":{"Type":"%s"}' % (c.encode(), m.value.encode()) for c, m in page])
                sep = b","
                if len(buf) >= _BATCH:
                    await body.write(bytes(buf))
                    buf.clear()
                try:
                    page = await anext(it)
                except StopAsyncIteration:
                    page = None
        except PinclusterError as exc:
            log.warning("pin/ls stopped early: %s", exc)
            trailers.append(("X-Stream-Error", str(exc)))
        buf += b"}}\n"
        await body.write(bytes(buf))
        await body.close(trailers)
        return resp

    async def _pin_update(self, request: web.Request, arg: str | None) -> web.StreamResponse:
        args = list(request.query.getall("arg", []))
        if not args:
            raise KuboError('argument "from-path" is required', 400)
        if len(args) == 1:
            raise KuboError('argument "to-path" is required', 400)
        unpin = request.query.get("unpin", "") != "false"
        try:
            p_from = _arg_cid_path(args[0])
        except InvalidInput as exc:
            raise KuboError(f'error parsing "from-path" argument: {exc}') from None
        try:
            p_to = _arg_cid_path(args[1])
        except InvalidInput as exc:
            raise KuboError(f'error parsing "to-path" argument: {exc}') from None
        from_cid = await self._resolve(p_from)
        pin = await self.cluster.pin_path(p_to, PinOptions(pin_update=from_cid))
        if unpin and pin.cid != from_cid:  # never unpin what was just pinned (from == to)
            try:
                await self.cluster.unpin(from_cid)
            except NotFound:
                pass  # already gone: the update's goal is reached
        return kubo_json({"Pins": [str(from_cid), str(pin.cid)]})

    # ------------------------------------------------------------------------------------------ add
    async def _add(self, request: web.Request, arg: str | None) -> web.StreamResponse:
        if request.content_type not in ("multipart/form-data", "multipart/mixed"):
            raise KuboError("error reading request: request Content-Type isn't multipart/form-data")
        query = _first_values(request.query)
        try:
            if go_bool(query, "only-hash", False):
                # Go answers this error and then adds anyway (QUIRK): we only answer it.
                raise KuboError("only-hash is not supported when adding to cluster")
        except InvalidInput as exc:
            raise KuboError(f"error parsing options:{exc}") from None
        if query.get("trickle") == "true":
            query["layout"] = "trickle"
        if query.get("pin") == "false":
            query["no-pin"] = "true"
        try:
            params = parse_add_params(query)
        except InvalidInput as exc:
            raise KuboError(f"error parsing options:{exc}") from None
        reader = await request.multipart()
        source = self.cluster.add(multipart_entries(reader), params)
        if params.stream_channels:
            return await stream_ndjson(
                request, source, encode=_encode_added, immediate=True, always_trailer=False,
                extra_headers={"X-Chunked-Output": "1", "Cache-Control": "no-cache"}, force_close=True,
            )
        out: list[_AddedKubo] = []
        try:
            async for item in source:
                out.append(_added_kubo(item))
        except PinclusterError as exc:
            resp = kubo_error(str(exc))
        else:
            resp = web.Response(body=_enc.encode(out) + b"\n", content_type="application/json")
        resp.headers["Cache-Control"] = "no-cache"
        resp.force_close()
        return resp

    # ------------------------------------------------------------------------------------------ repo/*
    async def _repo_stat(self, request: web.Request, arg: str | None) -> web.StreamResponse:
        st = await self.cluster.repo_stat()
        return kubo_json({"RepoSize": st.repo_size, "StorageMax": st.storage_max})

    async def _repo_gc(self, request: web.Request, arg: str | None) -> web.StreamResponse:
        stream_errors = request.query.get("stream-errors") == "true"
        gc = await self.cluster.repo_gc()
        resp = web.StreamResponse(status=200)
        resp.headers["Trailer"] = "X-Stream-Error"
        body = FramedBody(request, resp)
        await body.open()
        errors: list[str] = []
        buf = bytearray()
        for peer, rg in (gc.peer_map or {}).items():
            for key in rg.keys or ():
                obj: dict[str, Any] = {}
                if key.key is not None:
                    obj["Key"] = {"/": str(key.key)}
                if key.error:
                    if stream_errors:
                        obj["Error"] = key.error
                    else:
                        errors.append(key.error)
                if obj:
                    buf += json.dumps(obj, separators=(",", ":")).encode() + b"\n"
            if rg.error:  # a peer whose GC failed (Go drops these; a kubo client should hear of them)
                message = f"{rg.peername or peer}: {rg.error}"
                if stream_errors:
                    buf += json.dumps({"Error": message}, separators=(",", ":")).encode() + b"\n"
                else:
                    errors.append(message)
            if len(buf) >= _BATCH:
                await body.write(bytes(buf))
                buf.clear()
        await body.write(bytes(buf))
        await body.close([("X-Stream-Error", "".join(e + "; " for e in errors))] if errors else [])
        return resp

    # ------------------------------------------------------------------------------------------ block/dag put
    async def _block_put(self, request: web.Request, arg: str | None) -> web.StreamResponse:
        """``block/put?pin=true``: the node stores (and pins) the blocks, the cluster pins each one."""
        return await self._put_and_pin(request, request.raw_path, "Key")

    async def _dag_put(self, request: web.Request, arg: str | None) -> web.StreamResponse:
        """``dag/put?pin=true``: the node stores with ``pin=false``, the cluster pins each root."""
        pairs = urllib.parse.parse_qsl(request.query_string, keep_blank_values=True)
        pairs = [(k, "false" if k == "pin" else v) for k, v in pairs]
        target = request.path + "?" + urllib.parse.urlencode(pairs, quote_via=urllib.parse.quote)
        return await self._put_and_pin(request, target, "Cid")

    async def _put_and_pin(self, request: web.Request, target: str, field: str) -> web.StreamResponse:
        upstream = await self.upstream.open(request.method, target, forward_headers(request),
                                            upstream_body(request))
        try:
            if upstream.status != 200:
                return await relay_response(request, upstream)
            resp = web.StreamResponse(status=200)
            resp.headers["Trailer"] = "X-Stream-Error"
            body = FramedBody(request, resp)
            await body.open()
            trailers: list[tuple[str, str]] = []
            try:
                async for line in _lines(upstream):
                    cid = _put_output_cid(line, field)
                    await self.cluster.pin(cid, PinOptions())
                    await body.write(line + b"\n")
                trailers = [(k, v) for k, v in upstream.trailers if k.lower() == "x-stream-error" and v]
            except (PinclusterError, ValueError) as exc:
                log.warning("%s: %s", request.path, exc)
                trailers = [("X-Stream-Error", str(exc))]
            await body.close(trailers)
            return resp
        finally:
            upstream.close()


def _put_output_cid(line: bytes, field: str) -> CID:
    """The CID of one ``block/put`` (``{"Key":"<cid>"}``) or ``dag/put`` (``{"Cid":{"/":"<cid>"}}``) line."""
    obj = json.loads(line)
    value = obj.get(field) if isinstance(obj, dict) else None
    if isinstance(value, dict):
        value = value.get("/")
    if not isinstance(value, str):
        raise InvalidInput(f"unexpected answer from the IPFS node: {line[:200]!r}")
    return CID.decode(value)


async def _lines(resp: HTTPResponse) -> AsyncIterator[bytes]:
    """The non-empty lines of an NDJSON body, read incrementally."""
    buf = b""
    async for chunk in resp.iter_body():
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            if line.strip():
                yield line.strip()
        if len(buf) > _MAX_LINE:
            raise InvalidInput("the IPFS node sent a line longer than 16 MiB")
    if buf.strip():
        yield buf.strip()
