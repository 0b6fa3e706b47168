"""The REST API server (spec §1): routes of §1.8 over :class:`~pincluster.api.interface.ClusterAPI`.

The request chain is header limit (431) → auth → CORS → trailing-slash redirect → router, as Go's; handlers
parse input with Go's error texts and raise typed errors, which become ``{"code","message"}`` bodies.
Listings stream as NDJSON with the ``X-Stream-Error`` trailer. :data:`ROUTES` drives both the router and
the OpenAPI document at ``/openapi.json``.
"""

from __future__ import annotations

import logging
import posixpath
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import msgspec
from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.multipart import content_disposition_filename, parse_content_disposition

from pincluster.aio import bounded_as_completed
from pincluster.api.common.auth import Authenticator, TokenIssuer
from pincluster.api.common.errors import JSON_CT, error_response, json_response, status_for
from pincluster.api.common.http import HTTPServer, ListenOptions, extra_headers_hook, request_chain
from pincluster.api.common.settings import HTTPAPIConfigLike, HTTPAPISettings
from pincluster.api.common.stream import ErrorSink, stream_ndjson
from pincluster.api.interface import ClusterAPI
from pincluster.api.rest.params import (
    parse_add_params,
    parse_cid,
    parse_ipfs_path,
    parse_peer,
    parse_pin_types,
)
from pincluster.errors import InvalidInput
from pincluster.ipfs.unixfs.importer import ImportEntry
from pincluster.types.cid import CID
from pincluster.types.codec import to_json
from pincluster.types.models import VERSION, GlobalPinInfo, PinOptions, Version
from pincluster.types.peer import PeerID
from pincluster.types.status import TrackerStatus

__all__ = ["ROUTES", "BandwidthReporter", "RestAPI", "Route", "multipart_entries", "parse_add_params"]

log = logging.getLogger("pincluster.restapi")
access_log = logging.getLogger("pincluster.restapilog")

_PARALLEL_STATUS = 64
#: Pre-encoded NDJSON chunks (~60 KB each) a listing may produce ahead of the client.
_CHUNKS_AHEAD = 8
_READ_CHUNK = 256 * 1024
_MAX_JSON_BODY = 1 << 20


@runtime_checkable
class BandwidthReporter(Protocol):
    """Optional: a cluster that can report libp2p bandwidth per protocol (``GET /health/bandwidth``)."""

    async def bandwidth(self) -> dict[str, Any] | None: ...


@dataclass(frozen=True)
class Route:
    """One route of spec §1.8: method, aiohttp path pattern, handler method name and its documentation."""

    method: str
    path: str
    handler: str
    summary: str
    query: tuple[str, ...] = ()
    response: str = ""
    status: int = 200
    streaming: bool = False
    body: str = ""


_PIN_QUERY = ("name", "mode", "replication", "replication-min", "replication-max", "shard-size",
              "user-allocations", "expire-at", "expire-in", "pin-update", "origins", "meta-*")
_ADD_QUERY = (*[q for q in _PIN_QUERY if q != "pin-update"], "local", "recursive", "hidden",
              "wrap-with-directory", "shard", "stream-channels", "format", "no-pin", "layout", "chunker",
              "raw-leaves", "progress", "cid-version", "hash", "nocopy")
_KEY = "{keyType:ipfs|ipns|ipld}"

#: Matched in this order (so ``POST /pins/recover`` is not a pin of "recover").
ROUTES: tuple[Route, ...] = (
    Route("GET", "/id", "id", "This peer's identity", response="ID"),
    Route("GET", "/version", "version", "The cluster version", response="Version"),
    Route("GET", "/peers", "peers", "Every cluster peer's ID", response="ID", streaming=True),
    Route("POST", "/peers", "peer_add", "Add a peer to the consensus peerset", response="ID", body="PeerAdd"),
    Route("DELETE", "/peers/{peer}", "peer_rm", "Remove a peer (its pins are re-allocated first)", status=204),
    Route("POST", "/add", "add", "Import content (multipart) and pin it", query=_ADD_QUERY,
          response="AddedOutput", streaming=True, body="multipart"),
    Route("GET", "/allocations", "allocations", "The pinset, filtered by pin type", query=("filter",),
          response="Pin", streaming=True),
    Route("GET", "/allocations/{hash}", "allocation", "One pin of the pinset", response="Pin"),
    Route("GET", "/pins", "pins", "Pin statuses, cluster-wide or local", query=("local", "filter", "cids"),
          response="GlobalPinInfo", streaming=True),
    Route("POST", "/pins/{hash}/recover", "recover", "Re-queue a failed pin or unpin", query=("local",),
          response="GlobalPinInfo"),
    Route("POST", "/pins/recover", "recover_all", "Re-queue every failed item", query=("local",),
          response="GlobalPinInfo", streaming=True),
    Route("GET", "/pins/{hash}", "status", "The status of a CID", query=("local",), response="GlobalPinInfo"),
    Route("POST", "/pins/{hash}", "pin", "Pin a CID", query=_PIN_QUERY, response="Pin"),
    Route("POST", f"/pins/{_KEY}/{{path:.+}}", "pin_path", "Resolve an IPFS path and pin it", query=_PIN_QUERY,
          response="Pin"),
    Route("DELETE", "/pins/{hash}", "unpin", "Unpin a CID", response="Pin"),
    Route("DELETE", f"/pins/{_KEY}/{{path:.+}}", "unpin_path", "Resolve an IPFS path and unpin it",
          response="Pin"),
    Route("POST", "/ipfs/gc", "repo_gc", "Run IPFS garbage collection", query=("local",),
          response="GlobalRepoGC"),
    Route("GET", "/health/graph", "graph", "The connection graph", response="ConnectGraph"),
    Route("GET", "/health/alerts", "alerts", "Recent alerts, newest first", response="Alert[]"),
    Route("GET", "/health/bandwidth", "bandwidth", "Bandwidth by libp2p protocol", response="Bandwidth"),
    Route("GET", "/monitor/metrics/{name}", "metrics", "Latest metrics of a name", response="Metric[]"),
    Route("GET", "/monitor/metrics", "metric_names", "Metric names", response="string[]"),
    Route("POST", "/token", "token", "Issue a JWT for the authenticated user", response="Token"),
    Route("GET", "/health", "health", "Liveness (no authentication needed)", status=204),
    Route("GET", "/openapi.json", "openapi", "This API's OpenAPI document", response="object"),
)


class _PeerAdd(msgspec.Struct):
    peer_id: str = ""


class _Token(msgspec.Struct):
    token: str


def _local(request: web.Request) -> bool:
    return request.query.get("local") == "true"


async def _part_chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    while True:
        chunk = await part.read_chunk(_READ_CHUNK)
        if not chunk:
            return
        yield chunk


def _part_path(part: BodyPartReader | MultipartReader, prefix: str = "") -> str:
    _, params = parse_content_disposition(part.headers.get("Content-Disposition"))
    raw = content_disposition_filename(params, "filename")
    if raw is None:
        raise InvalidInput("multipart part has no filename: name every part (Content-Disposition filename)")
    name = posixpath.normpath("/" + urllib.parse.unquote_plus(raw)).lstrip("/")
    if prefix and not name.startswith(prefix.rstrip("/") + "/") and name != prefix:
        name = posixpath.join(prefix, name)
    return name


async def multipart_entries(reader: MultipartReader, prefix: str = "") -> AsyncIterator[ImportEntry]:
    """The parts of a go-ipfs-files multipart body as import entries, streamed (spec §1.11).

    Each file's chunks must be read before the next entry is asked for: aiohttp skips unread data when it
    moves on (which is right for entries the importer skips, such as hidden files).
    """
    while True:
        part = await reader.next()
        if part is None:
            return
        path = _part_path(part, prefix)
        if isinstance(part, MultipartReader):
            yield ImportEntry(path=path, kind="dir")
            async for sub in multipart_entries(part, path):
                yield sub
            continue
        ctype = part.headers.get("Content-Type", "application/octet-stream").split(";")[0].strip().lower()
        if ctype in ("application/x-directory", "multipart/form-data"):
            yield ImportEntry(path=path, kind="dir")
        elif ctype == "application/symlink":
            raise InvalidInput(f"{path}: symbolic links are not supported by /add; add the target instead")
        else:
            yield ImportEntry(path=path, kind="file", chunks=_part_chunks(part))


class RestAPI(HTTPServer):
    """The REST API component: ``start()`` listens on every ``http_listen_multiaddress``; ``stop()`` closes."""

    NAME = "REST API"

    def __init__(self, cluster: ClusterAPI, settings: HTTPAPISettings | None = None) -> None:
        self.cluster = cluster
        self.settings = settings or HTTPAPISettings()
        creds = self.settings.basic_auth_credentials
        self.issuer = TokenIssuer(creds, self.settings.token_lifetime) if creds else None
        self.auth = Authenticator(creds, self.issuer, exempt_get_paths=("/health", "/openapi.json"))
        self.cors = self.settings.cors_policy()
        super().__init__()
        self._openapi: bytes | None = None

    @classmethod
    def from_config(cls, cluster: ClusterAPI, cfg: HTTPAPIConfigLike, config_dir: str | None = None,
                    **overrides: Any) -> RestAPI:
        return cls(cluster, HTTPAPISettings.from_config(cfg, config_dir, **overrides))

    # --- lifecycle ------------------------------------------------------------------------------------------
    def build_app(self) -> web.Application:
        # header limit → auth → CORS → trailing slash → router, errors as JSON: one middleware, one frame
        chain = request_chain(self.settings.effective_max_header_bytes, self.auth, self.cors)
        app = web.Application(middlewares=[chain], client_max_size=_MAX_JSON_BODY)
        for r in ROUTES:
            handler: Callable[[web.Request], Awaitable[web.StreamResponse]] = getattr(self, "_h_" + r.handler)
            app.router.add_route(r.method, r.path, handler, name=r.handler + "_" + r.method.lower())
        app.on_response_prepare.append(self.cors.on_prepare)
        if self.settings.headers:  # a hook costs a coroutine per response: only when there are headers
            app.on_response_prepare.append(extra_headers_hook(self.settings.headers))
        return app

    def listen_options(self) -> ListenOptions:
        return self.settings.listen_options(log, access_log)

    # --- handlers -------------------------------------------------------------------------------------------
    async def _h_id(self, request: web.Request) -> web.StreamResponse:
        return json_response(to_json(await self.cluster.id()))

    async def _h_version(self, request: web.Request) -> web.StreamResponse:
        return json_response(to_json(Version(version=VERSION)))

    async def _h_peers(self, request: web.Request) -> web.StreamResponse:
        return await stream_ndjson(request, self.cluster.peers())

    async def _h_peer_add(self, request: web.Request) -> web.StreamResponse:
        try:
            body = msgspec.json.decode(await request.read(), type=_PeerAdd)
        except (msgspec.DecodeError, web.HTTPRequestEntityTooLarge):
            raise InvalidInput("error decoding request body") from None
        try:
            peer = PeerID.decode(body.peer_id)
        except InvalidInput:
            raise InvalidInput("error decoding peer_id") from None
        return json_response(to_json(await self.cluster.peer_add(peer)))

    async def _h_peer_rm(self, request: web.Request) -> web.StreamResponse:
        await self.cluster.peer_rm(parse_peer(request.match_info["peer"]))
        return web.Response(status=204)

    async def _h_add(self, request: web.Request) -> web.StreamResponse:
        if request.content_type not in ("multipart/form-data", "multipart/mixed"):
            raise InvalidInput("request Content-Type isn't multipart/form-data")
        params = parse_add_params(request.query)
        reader = await request.multipart()
        source = self.cluster.add(multipart_entries(reader), params)
        if params.stream_channels:
            return await stream_ndjson(
                request, source, immediate=True, always_trailer=False,
                extra_headers={"X-Chunked-Output": "1", "Cache-Control": "no-cache"}, force_close=True,
            )
        out = []
        try:
            async for item in source:
                out.append(item)
        except Exception as exc:  # Go answers 500 here; bad input (e.g. a symlink part) is still 400
            status = status_for(exc)
            resp = error_response(500 if status == 404 else status, str(exc))
        else:
            resp = json_response(to_json(out))
        resp.headers["Cache-Control"] = "no-cache"
        resp.force_close()
        return resp

    async def _h_allocations(self, request: web.Request) -> web.StreamResponse:
        types = parse_pin_types(request.query.get("filter", ""))
        return await stream_ndjson(request, self.cluster.pins_ndjson(types), preencoded=True,
                                   queue_size=_CHUNKS_AHEAD)

    async def _h_allocation(self, request: web.Request) -> web.StreamResponse:
        cid = parse_cid(request.match_info["hash"])
        return json_response(to_json(await self.cluster.pin_get(cid)))

    async def _h_pins(self, request: web.Request) -> web.StreamResponse:
        local = _local(request)
        cids_text = request.query.get("cids", "")
        if cids_text:
            cids = [parse_cid(c) for c in cids_text.split(",")]
            sink = ErrorSink()
            return await stream_ndjson(request, self._statuses(cids, local, sink), sink=sink)
        flt = TrackerStatus.from_filter_string(request.query.get("filter", ""))
        return await stream_ndjson(request, self.cluster.status_all_ndjson(flt, local=local), preencoded=True,
                                   queue_size=_CHUNKS_AHEAD)

    async def _statuses(self, cids: list[CID], local: bool, sink: ErrorSink) -> AsyncIterator[GlobalPinInfo]:
        """Statuses fetched in parallel (at most 64 at once), yielded in completion order; a failing CID
        goes to ``sink`` and the others go on."""

        async def one(cid: CID) -> tuple[CID, GlobalPinInfo | BaseException]:
            try:
                return cid, await self.cluster.status(cid, local=local)
            except Exception as exc:
                return cid, exc

        async for cid, result in bounded_as_completed(one, cids, _PARALLEL_STATUS):
            if isinstance(result, BaseException):
                sink.add(f"{cid}: {result}")
            else:
                yield result

    async def _h_recover(self, request: web.Request) -> web.StreamResponse:
        cid = parse_cid(request.match_info["hash"])
        return json_response(to_json(await self.cluster.recover(cid, local=_local(request))))

    async def _h_recover_all(self, request: web.Request) -> web.StreamResponse:
        return await stream_ndjson(request, self.cluster.recover_all(local=_local(request)))

    async def _h_status(self, request: web.Request) -> web.StreamResponse:
        cid = parse_cid(request.match_info["hash"])
        return json_response(to_json(await self.cluster.status(cid, local=_local(request))))

    async def _h_pin(self, request: web.Request) -> web.StreamResponse:
        cid = parse_cid(request.match_info["hash"])
        options = PinOptions.from_query(request.query)
        return json_response(to_json(await self.cluster.pin(cid, options)))

    async def _h_pin_path(self, request: web.Request) -> web.StreamResponse:
        path = parse_ipfs_path(request.match_info["keyType"], request.match_info["path"])
        options = PinOptions.from_query(request.query)
        return json_response(to_json(await self.cluster.pin_path(path, options)))

    async def _h_unpin(self, request: web.Request) -> web.StreamResponse:
        cid = parse_cid(request.match_info["hash"])
        return json_response(to_json(await self.cluster.unpin(cid)))

    async def _h_unpin_path(self, request: web.Request) -> web.StreamResponse:
        path = parse_ipfs_path(request.match_info["keyType"], request.match_info["path"])
        return json_response(to_json(await self.cluster.unpin_path(path)))

    async def _h_repo_gc(self, request: web.Request) -> web.StreamResponse:
        return json_response(to_json(await self.cluster.repo_gc(local=_local(request))))

    async def _h_graph(self, request: web.Request) -> web.StreamResponse:
        return json_response(to_json(await self.cluster.connect_graph()))

    async def _h_alerts(self, request: web.Request) -> web.StreamResponse:
        return json_response(to_json(list(await self.cluster.alerts())))

    async def _h_bandwidth(self, request: web.Request) -> web.StreamResponse:
        if isinstance(self.cluster, BandwidthReporter):
            return json_response(to_json(await self.cluster.bandwidth()))
        return json_response(b"null")

    async def _h_metrics(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        return json_response(to_json(list(await self.cluster.latest_metrics(name))))

    async def _h_metric_names(self, request: web.Request) -> web.StreamResponse:
        return json_response(to_json(list(await self.cluster.metric_names())))

    async def _h_token(self, request: web.Request) -> web.StreamResponse:
        if self.issuer is None:
            return error_response(401, "unauthorized")
        user = self.auth.identify(request)
        if user is None:
            return error_response(401, "unauthorized")
        return json_response(to_json(_Token(token=self.issuer.issue(user))))

    async def _h_health(self, request: web.Request) -> web.StreamResponse:
        return web.Response(status=204)

    async def _h_openapi(self, request: web.Request) -> web.StreamResponse:
        if self._openapi is None:
            from pincluster.api.rest.openapi import openapi_document

            self._openapi = msgspec.json.encode(openapi_document(ROUTES))
        return web.Response(body=self._openapi, content_type=JSON_CT)

