"""The IPFS Pinning Service API server (spec §10; ipfs/pinning-services-api-spec v1.0.0) on ``:9097``.

It shares the REST API's machinery (header limit → auth → CORS → trailing-slash redirect → router, TLS,
``/unix`` listeners, access log, JWT ``/token``, ``/health``) and passes its own error shape
(``{"error":{"reason","details"}}``) to the shared pieces. A request ID is the pin's CID, as in Go.

Listing streams the cluster's statuses and keeps only the ``limit`` newest matches in a heap while it
counts all of them, so memory stays bounded whatever the pinset size.
"""

from __future__ import annotations

import heapq
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
from aiohttp import web

from pincluster.aio import bounded_as_completed
from pincluster.api.common.auth import Authenticator, TokenIssuer
from pincluster.api.common.errors import JSON_CT, error_response
from pincluster.api.common.http import (
    HTTPServer,
    ListenOptions,
    extra_headers_hook,
    request_chain,
)
from pincluster.api.common.settings import HTTPAPIConfigLike, HTTPAPISettings
from pincluster.api.interface import ClusterAPI
from pincluster.api.pinsvc.models import (
    INFO,
    MAX_LIMIT,
    MAX_NAME,
    RELEVANT,
    RELEVANT_INT,
    Match,
    PinList,
    PinRequest,
    PinStatus,
    Status,
    created_text,
    failure_body,
    parse_pin,
    svc_status,
)
from pincluster.errors import InvalidInput, NotFound, PinclusterError
from pincluster.types.cid import CID
from pincluster.types.codec import from_json
from pincluster.types.gotime import is_zero_time, parse_time, unix_nano
from pincluster.types.models import GlobalPinInfo, Pin, PingValue, PinOptions
from pincluster.types.multiaddr import Multiaddr
from pincluster.types.peer import PeerID
from pincluster.types.status import PinMode

__all__ = ["DEFAULT_LIMIT", "MAX_CIDS", "ListQuery", "PinSvcAPI", "parse_list_query"]

log = logging.getLogger("pincluster.pinsvcapi")
access_log = logging.getLogger("pincluster.pinsvcapilog")

DEFAULT_LIMIT = 10
#: CIDs accepted in one ``cid`` filter (the public spec says 10; we take more, up to ``limit``'s maximum).
MAX_CIDS = MAX_LIMIT
#: Delegates returned per pin (the public spec's ``maxItems``).
MAX_DELEGATES = 20
_MAX_JSON_BODY = 1 << 20
_PARALLEL_STATUS = 32
_NO_TIME = -(1 << 63)
_STATUS_NAMES = {s.value: s for s in Status}
_MATCH_NAMES = {m.value: m for m in Match}


# --- list query -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ListQuery:
    """The filters of ``GET /pins``, validated."""

    cids: tuple[CID, ...] = ()
    name: str = ""
    match: Match = Match.EXACT
    statuses: frozenset[Status] = frozenset({Status.PINNED})
    before: datetime | None = None
    after: datetime | None = None
    limit: int = DEFAULT_LIMIT
    meta: Mapping[str, str] | None = None

    def accepts(self, status: Status, name: str, created: datetime, meta: Mapping[str, str] | None) -> bool:
        """Whether a request with these values passes every filter (``before``/``after`` are strict)."""
        if status not in self.statuses:
            return False
        if self.name and not self.match.matches(self.name, name):
            return False
        if self.before is not None and not created < self.before:
            return False
        if self.after is not None and not created > self.after:
            return False
        if self.meta:
            have = meta or {}
            if any(have.get(k) != v for k, v in self.meta.items()):
                return False
        return True


def _multi(getall: Callable[[str], list[str]], key: str) -> list[str]:
    """A list parameter given as ``k=a,b`` (public spec v1) or ``k=a&k=b`` (v0.1): both are accepted."""
    return [part.strip() for value in getall(key) for part in value.split(",") if part.strip()]


def _time_param(query: Mapping[str, str], key: str) -> datetime | None:
    text = query.get(key, "")
    if not text:
        return None
    try:
        return parse_time(text)
    except InvalidInput:
        raise InvalidInput(f"error decoding '{key}' query param: {text!r} is not an RFC 3339 time "
                           "(like 2020-07-27T17:32:28Z)") from None


def parse_list_query(query: Mapping[str, str], getall: Callable[[str], list[str]] | None = None) -> ListQuery:
    """Validate ``GET /pins`` parameters; every bad value raises InvalidInput naming the parameter.

    Without ``status``, only ``pinned`` requests are listed (the public spec: "when no filter is provided,
    only successful pins are returned"). ``getall`` returns every value of a repeated parameter.
    """
    get_all = getall or (lambda k: [query[k]] if k in query else [])
    cids: list[CID] = []
    for text in _multi(get_all, "cid"):
        try:
            cid = CID.decode(text)
        except InvalidInput as exc:
            raise InvalidInput(f"error decoding 'cid' query param: {exc}") from None
        if cid not in cids:
            cids.append(cid)
    if len(cids) > MAX_CIDS:
        raise InvalidInput(f"error decoding 'cid' query param: {len(cids)} CIDs given; at most {MAX_CIDS}")
    name = query.get("name", "")
    if len(name) > MAX_NAME:
        raise InvalidInput(f"error decoding 'name' query param: longer than {MAX_NAME} characters")
    match_text = query.get("match", "") or "exact"
    match = _MATCH_NAMES.get(match_text)
    if match is None:
        raise InvalidInput(f"error decoding 'match' query param: {match_text!r}; use exact, iexact, partial "
                           "or ipartial")
    statuses: set[Status] = set()
    status_texts = _multi(get_all, "status")
    for text in status_texts:
        st = _STATUS_NAMES.get(text)
        if st is None:
            raise InvalidInput(f"error decoding 'status' query param: {text!r} is not a status; use queued, "
                               "pinning, pinned or failed (comma-separated)")
        statuses.add(st)
    if not status_texts:
        if "status" in query:
            raise InvalidInput("error decoding 'status' query param: no valid filter")
        statuses.add(Status.PINNED)
    limit = DEFAULT_LIMIT
    limit_text = query.get("limit", "")
    if limit_text:
        try:
            limit = int(limit_text, 10)
        except ValueError:
            limit = -1
        if not 1 <= limit <= MAX_LIMIT:
            raise InvalidInput(f"error parsing 'limit' query param: {limit_text!r}; give an integer from 1 "
                               f"to {MAX_LIMIT}")
    meta: dict[str, str] | None = None
    meta_text = query.get("meta", "")
    if meta_text:
        try:
            meta = msgspec.json.decode(meta_text.encode(), type=dict[str, str])
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise InvalidInput(f"error decoding 'meta' query param: {exc}; give a JSON object of strings, "
                               'like {"app_id":"x"}') from None
    return ListQuery(
        cids=tuple(cids),
        name=name,
        match=match,
        statuses=frozenset(statuses),
        before=_time_param(query, "before"),
        after=_time_param(query, "after"),
        limit=limit,
        meta=meta,
    )


def _request_id(request: web.Request) -> CID:
    text = request.match_info["requestid"]
    try:
        return CID.decode(text)
    except InvalidInput as exc:
        raise InvalidInput(f"error decoding requestID: {exc} (request IDs are the pins' CIDs)") from None


def _with_p2p(addrs: Iterable[Multiaddr], pid: PeerID | None) -> list[str]:
    """Delegates must end with ``/p2p/<id>`` (public spec, provider hints)."""
    out = []
    for a in addrs:
        if pid is not None and a.peer_id is None:
            a = a.with_p2p(pid)
        out.append(str(a))
    return out


def _dedupe(items: Iterable[str], limit: int = MAX_DELEGATES) -> list[str]:
    return list(dict.fromkeys(items))[:limit]


class PinSvcAPI(HTTPServer):
    """The Pinning Service API component: ``start()`` listens on every address; ``stop()`` closes."""

    NAME = "Pinning Service API"

    def __init__(self, cluster: ClusterAPI, settings: HTTPAPISettings | None = None) -> None:
        self.cluster = cluster
        self.settings = settings or HTTPAPISettings(listen=(Multiaddr("/ip4/127.0.0.1/tcp/9097"),))
        creds = self.settings.basic_auth_credentials
        self.issuer = TokenIssuer(creds, self.settings.token_lifetime) if creds else None
        self.auth = Authenticator(creds, self.issuer, exempt_get_paths=("/health",), error_body=failure_body)
        self.cors = self.settings.cors_policy()
        super().__init__()

    @classmethod
    def from_config(cls, cluster: ClusterAPI, cfg: HTTPAPIConfigLike, folder: str | None = None,
                    **overrides: Any) -> PinSvcAPI:
        """From the ``api.pinsvcapi`` section; relative file paths are taken from the config ``folder``."""
        return cls(cluster, HTTPAPISettings.from_config(cfg, folder, **overrides))

    # --- lifecycle ----------------------------------------------------------------------------------------
    def build_app(self) -> web.Application:
        app = web.Application(
            middlewares=[  # the REST API's chain, with the Pinning Service's error bodies
                request_chain(self.settings.effective_max_header_bytes, self.auth, self.cors, failure_body, log),
            ],
            client_max_size=_MAX_JSON_BODY,
        )
        routes: list[tuple[str, str, Callable[[web.Request], Awaitable[web.StreamResponse]]]] = [
            ("GET", "/pins", self._h_list),
            ("POST", "/pins", self._h_add),
            ("GET", "/pins/{requestid}", self._h_get),
            ("POST", "/pins/{requestid}", self._h_replace),
            ("DELETE", "/pins/{requestid}", self._h_delete),
            ("POST", "/token", self._h_token),
            ("GET", "/health", self._h_health),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, path, handler)
        app.on_response_prepare.append(self.cors.on_prepare)
        app.on_response_prepare.append(extra_headers_hook(self.settings.headers))
        return app

    def listen_options(self) -> ListenOptions:
        return self.settings.listen_options(log, access_log)

    # --- helpers --------------------------------------------------------------------------------------------
    @staticmethod
    def _json(obj: Any, status: int = 200) -> web.Response:
        return web.Response(status=status, body=msgspec.json.encode(obj) + b"\n", content_type=JSON_CT)

    @staticmethod
    async def _body(request: web.Request) -> PinRequest:
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise InvalidInput(f"error decoding request body: larger than {_MAX_JSON_BODY} bytes") from None
        return parse_pin(raw)

    @staticmethod
    def _mask(gpi: GlobalPinInfo) -> int:
        """The OR of the peers' tracker statuses (as a plain int)."""
        mask = 0
        for info in gpi.peer_map.values():
            mask |= int(info.status)
        return mask

    def _status_of(self, gpi: GlobalPinInfo) -> tuple[Status | None, PinStatus]:
        """The PinStatus of a cluster status: the mapped status, and delegates/details from the peers whose
        status decides it (the ones holding, fetching or failing the pin)."""
        mask = 0
        delegates: list[str] = []
        details = ""
        for info in gpi.peer_map.values():
            st = int(info.status)
            if not st & RELEVANT_INT:
                continue
            mask |= st
            delegates.extend(_with_p2p(info.ipfs_peer_addresses, info.ipfs_peer_id))
            if info.error and not details:
                details = info.error
        status = svc_status(mask)
        info_map = dict(INFO)
        if status is Status.FAILED and details:
            info_map["status_details"] = details
        pin = PinRequest(cid=gpi.cid, name=gpi.name, origins=tuple(gpi.origins or ()), meta=dict(gpi.metadata or {}))
        return status, PinStatus(
            requestid=str(gpi.cid),
            status=(status or Status.QUEUED).value,
            created=created_text(gpi.created),
            pin=pin.to_wire(),
            delegates=_dedupe(delegates),
            info=info_map,
        )

    async def _delegates_for(self, pin: Pin) -> list[str]:
        """The IPFS addresses of the peers allocated to a fresh pin (every peer when it is everywhere), from
        their ping metrics; a peer with no metric yet is left out."""
        try:
            metrics = await self.cluster.latest_metrics("ping")
        except PinclusterError as exc:
            log.warning("cannot read the ping metrics for delegates: %s", exc)
            return []
        wanted = None if pin.is_pin_everywhere or not pin.allocations else set(pin.allocations)
        out: list[str] = []
        for m in metrics:
            if wanted is not None and m.peer not in wanted:
                continue
            try:
                value = from_json(m.value.encode(), PingValue)
            except (PinclusterError, ValueError):
                continue
            out.extend(_with_p2p(value.ipfs_addresses, value.ipfs_id))
        return _dedupe(out)

    async def _queued(self, req: PinRequest, pin: Pin) -> web.Response:
        status = PinStatus(
            requestid=str(pin.cid),
            status=Status.QUEUED.value,
            created=created_text(pin.timestamp),
            pin=req.to_wire(),
            delegates=await self._delegates_for(pin),
            info=dict(INFO),
        )
        return self._json(status, 202)

    @staticmethod
    def _options(req: PinRequest, **extra: Any) -> PinOptions:
        return PinOptions(
            name=req.name,
            mode=PinMode.RECURSIVE,
            metadata=dict(req.meta) if req.meta else None,
            origins=req.origins or None,
            **extra,
        )

    # --- handlers -------------------------------------------------------------------------------------------
    async def _h_add(self, request: web.Request) -> web.StreamResponse:
        req = await self._body(request)
        pin = await self.cluster.pin(req.cid, self._options(req))
        return await self._queued(req, pin)

    async def _h_replace(self, request: web.Request) -> web.StreamResponse:
        """Pin the new CID where the old one is (``pin_update``, so common blocks stay), then unpin the old."""
        old = _request_id(request)
        req = await self._body(request)
        if req.cid == old:  # same content: only name/meta/origins change
            await self.cluster.pin_get(old)
            pin = await self.cluster.pin(old, self._options(req))
            return await self._queued(req, pin)
        pin = await self.cluster.pin_update(old, req.cid, self._options(req))
        if (pin.metadata or {}) != req.meta or tuple(pin.origins or ()) != req.origins or pin.name != req.name:
            # pin_update keeps the old pin's metadata and origins; the new request carries its own
            pin = await self.cluster.pin(req.cid, self._options(
                req,
                replication_factor_min=pin.replication_factor_min,
                replication_factor_max=pin.replication_factor_max,
                user_allocations=pin.allocations or None,
            ))
        try:
            await self.cluster.unpin(old)
        except NotFound:
            log.info("replace: %s was already unpinned", old)
        return await self._queued(req, pin)

    async def _h_get(self, request: web.Request) -> web.StreamResponse:
        cid = _request_id(request)
        mapped, status = self._status_of(await self.cluster.status(cid))
        if mapped is None:
            # nobody is working on it: either no such request, or it was just committed (queued)
            try:
                await self.cluster.pin_get(cid)
            except NotFound:
                raise NotFound(f"pin not found: no pin request {cid}") from None
        return self._json(status)

    async def _h_delete(self, request: web.Request) -> web.StreamResponse:
        cid = _request_id(request)
        try:
            await self.cluster.unpin(cid)
        except NotFound:
            raise NotFound(f"pin not found: no pin request {cid}") from None
        return web.Response(status=202)

    async def _h_list(self, request: web.Request) -> web.StreamResponse:
        query = parse_list_query(request.query, lambda k: list(request.query.getall(k, [])))
        return self._json(await self.list_pins(query))

    async def list_pins(self, query: ListQuery) -> PinList:
        """Count every match and keep the ``limit`` newest (by ``created``, then CID) in a min-heap; only
        those become PinStatus objects."""
        heap: list[tuple[int, bytes, int, GlobalPinInfo]] = []
        count = 0
        source = self._by_cid(query.cids) if query.cids else self.cluster.status_all(RELEVANT)
        async for gpi in source:
            mapped = svc_status(self._mask(gpi) & RELEVANT_INT)
            if mapped is None or not query.accepts(mapped, gpi.name, gpi.created, gpi.metadata):
                continue
            count += 1
            entry = (_NO_TIME if is_zero_time(gpi.created) else unix_nano(gpi.created), gpi.cid.bytes, count, gpi)
            if len(heap) < query.limit:
                heapq.heappush(heap, entry)
            elif entry[:2] > heap[0][:2]:
                heapq.heapreplace(heap, entry)
        heap.sort(key=lambda e: e[:2], reverse=True)
        return PinList(count=count, results=[self._status_of(e[3])[1] for e in heap])

    async def _by_cid(self, cids: Iterable[CID]) -> AsyncIterator[GlobalPinInfo]:
        """Statuses of the given CIDs, fetched in parallel; the first failure fails the listing."""
        async for gpi in bounded_as_completed(self.cluster.status, cids, _PARALLEL_STATUS):
            yield gpi

    async def _h_token(self, request: web.Request) -> web.StreamResponse:
        user = self.auth.identify(request) if self.issuer is not None else None
        if user is None or self.issuer is None:
            return error_response(401, "unauthorized: configure basic_auth_credentials and authenticate "
                                  "with Basic or a valid token", body=failure_body)
        return web.Response(body=json.dumps({"token": self.issuer.issue(user)}).encode() + b"\n",
                            content_type=JSON_CT)

    async def _h_health(self, request: web.Request) -> web.StreamResponse:
        return web.Response(status=204)
