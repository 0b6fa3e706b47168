"""The Python client (SDK) of the IPFS Cluster REST API: :class:`Client` (asyncio) and :class:`SyncClient`.

Every route of spec §1.8 has a method. Listings are async iterators that decode NDJSON as it arrives; an
error reported in the ``X-Stream-Error`` trailer is raised after the items, as :class:`APIError` with code
500 (as Go's client does). API errors are :class:`APIError` ``(code, message)``; connection problems are
:class:`~pincluster.client.transport.TransportError` (code 0).
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import ssl
import threading
import urllib.parse
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Collection,
    Coroutine,
    Iterable,
    Iterator,
    Sequence,
)
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, overload

import msgspec

from pincluster.api.interface import AddParams
from pincluster.errors import InvalidInput, PinclusterError, Timeout
from pincluster.types.cid import CID
from pincluster.types.codec import DecodeError, aiter_json_values, from_json
from pincluster.types.models import (
    ID,
    AddedOutput,
    Alert,
    Bandwidth,
    ConnectGraph,
    GlobalPinInfo,
    GlobalRepoGC,
    Metric,
    Pin,
    PinOptions,
    RepoGC,
    Version,
)
from pincluster.types.multiaddr import Multiaddr
from pincluster.types.peer import PeerID
from pincluster.types.status import PinType, TrackerStatus

from .transport import Endpoint, HTTPResponse, Transport, TransportError

if TYPE_CHECKING:  # the importer (a third of a ctl command's start-up) is loaded when something is added
    from pincluster.ipfs.unixfs.importer import ImportEntry

__all__ = [
    "DEFAULT_HOST",
    "APIError",
    "Client",
    "SyncClient",
    "TransportError",
    "WaitTimeout",
    "add_query",
    "parse_host",
]

T = TypeVar("T")
DEFAULT_HOST = "/ip4/127.0.0.1/tcp/9094"
_FILE_CHUNK = 256 * 1024
_MAX_REDIRECTS = 5


class APIError(PinclusterError):
    """An error answered by the API: ``code`` is the HTTP status (500 for stream trailer errors)."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{message} ({code})")


class WaitTimeout(Timeout):
    """:meth:`Client.wait_for` ran out of time (ctl exits 62)."""


class _ErrorBody(msgspec.Struct):
    code: int = 0
    message: str = ""


class _Token(msgspec.Struct):
    token: str = ""


class _GraphIn(msgspec.Struct):
    cluster_id: str
    id_to_peername: dict[str, str] | None = None
    ipfs_links: dict[str, list[str]] | None = None
    cluster_links: dict[str, list[str]] | None = None
    cluster_trust_links: dict[str, bool] | None = None
    cluster_to_ipfs: dict[str, str] | None = None


def parse_host(host: str, *, https: bool | None = None) -> Endpoint:
    """``--host`` as a multiaddr (``/ip4/…/tcp/9094``, ``/dns4/…/tcp/…[/https]``, ``/unix/<path>``) or a URL
    (``http://h:p``, ``https://h:p``, ``http+unix:///path``). ``https`` forces the scheme when not None."""
    host = host.strip()
    if host.startswith("/"):
        ma = Multiaddr(host)
        scheme = "https" if (ma.has("https") or ma.has("tls")) else "http"
        if https is not None:
            scheme = "https" if https else "http"
        if ma.is_unix():
            return Endpoint(scheme=scheme, unix_path=ma.unix_path())
        h, p = ma.tcp_host_port()
        return Endpoint(scheme=scheme, host=h, port=p)
    if "://" not in host:
        host = "http://" + host
    u = urllib.parse.urlsplit(host)
    base = u.scheme.removesuffix("+unix")
    if base not in ("http", "https"):
        raise InvalidInput(f"--host {host!r}: use a multiaddr or an http(s):// URL")
    scheme = ("https" if https else "http") if https is not None else base
    if u.scheme.endswith("+unix"):
        return Endpoint(scheme=scheme, unix_path=urllib.parse.unquote(u.netloc + u.path))
    if not u.hostname:
        raise InvalidInput(f"--host {host!r} has no host name")
    try:
        port = u.port or (443 if base == "https" else 9094)
    except ValueError:
        raise InvalidInput(f"--host {host!r}: bad port") from None
    return Endpoint(scheme=scheme, host=u.hostname, port=port)


def _bool(v: bool) -> str:
    return "true" if v else "false"


def add_query(params: AddParams) -> list[tuple[str, str]]:
    """The ``/add`` query the Go client sends for these parameters (keys sorted)."""
    io = params.import_options
    q: dict[str, str] = {
        "shard": _bool(params.shard),
        "local": _bool(params.local),
        "recursive": params.extra.get("recursive", "false"),
        "layout": "trickle" if io.trickle else "balanced",
        "chunker": io.chunker,
        "hidden": _bool(io.hidden),
        "wrap-with-directory": _bool(io.wrap_with_directory),
        "progress": _bool(io.progress),
        "cid-version": str(io.cid_version),
        "hash": io.hash,
        "stream-channels": _bool(params.stream_channels),
        "nocopy": params.extra.get("nocopy", "false"),
        "format": params.format,
        "no-pin": _bool(params.no_pin),
    }
    if io.raw_leaves is not None:
        q["raw-leaves"] = _bool(io.raw_leaves)
    for k, v in urllib.parse.parse_qsl(params.pin_options.to_query(), keep_blank_values=True):
        q[k] = v
    q["shard-size"] = str(params.shard_size)
    q.pop("pin-update", None)
    return sorted(q.items())


async def _aiter(items: Iterable[T] | AsyncIterable[T]) -> AsyncIterator[T]:
    if isinstance(items, AsyncIterable):
        async for x in items:
            yield x
    else:
        for x in items:
            yield x


async def _multipart(entries: AsyncIterable[ImportEntry], boundary: str) -> AsyncIterator[bytes]:
    """go-ipfs-files multipart: one part per entry, filenames query-escaped, directories announced."""
    async for e in entries:
        ctype = "application/x-directory" if e.kind == "dir" else "application/octet-stream"
        name = urllib.parse.quote_plus(e.path, safe="")
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
               f"Content-Type: {ctype}\r\n\r\n").encode()
        if e.kind == "file" and e.chunks is not None:
            async for chunk in e.chunks:
                yield chunk
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode()


async def _file_chunks(path: str) -> AsyncIterator[bytes]:
    with open(path, "rb") as f:
        while True:
            chunk = await asyncio.to_thread(f.read, _FILE_CHUNK)
            if not chunk:
                return
            yield chunk


def _default_add_params() -> AddParams:
    from pincluster.ipfs.unixfs.importer import AddOptions

    return AddParams(import_options=AddOptions(), pin_options=PinOptions())


async def path_entries(paths: Iterable[str], *, recursive: bool = False, hidden: bool = False
                       ) -> AsyncIterator[ImportEntry]:
    """Local files and folders as upload entries: depth first, names sorted, folders before their content
    (the order Go's ctl sends). Folders need ``recursive``; hidden names are skipped unless ``hidden``."""
    from pincluster.ipfs.unixfs.importer import ImportEntry

    for top in paths:
        top = os.path.normpath(top)
        base = os.path.basename(top) or top
        if os.path.isdir(top):
            if not recursive:
                raise InvalidInput(f"{top} is a directory: add it with recursive=True (-r)")
            yield ImportEntry(path=base, kind="dir")
            for rel, kind, full in _walk(top, base, hidden):
                yield ImportEntry(path=rel, kind=kind, chunks=_file_chunks(full) if kind == "file" else None)
        elif os.path.exists(top):
            yield ImportEntry(path=base, kind="file", chunks=_file_chunks(top))
        else:
            raise InvalidInput(f"{top}: no such file or directory")


def _walk(folder: str, rel: str, hidden: bool) -> Iterator[tuple[str, Any, str]]:
    for name in sorted(os.listdir(folder)):
        if not hidden and name.startswith("."):
            continue
        full = os.path.join(folder, name)
        sub = f"{rel}/{name}"
        if os.path.isdir(full):
            yield sub, "dir", full
            yield from _walk(full, sub, hidden)
        else:
            yield sub, "file", full


class Client:
    """Async client of one cluster peer's REST API.

    ``host`` is a multiaddr or URL (default ``/ip4/127.0.0.1/tcp/9094``), or several (a list or a comma
    list): on a transport error the next one is tried, as ``ipfs-cluster-ctl --host a,b`` does.
    ``username``/``password`` send Basic auth, ``token`` a Bearer JWT. ``https`` forces TLS on or off;
    ``verify=False`` skips certificate checks (self-signed certificates); ``ca_file`` adds a trusted CA.
    ``timeout`` is the longest wait for any single connect/read/write, in seconds (None or 0 = forever).
    """

    def __init__(
        self,
        host: str | Sequence[str] = DEFAULT_HOST,
        *,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        https: bool | None = None,
        verify: bool = True,
        ca_file: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float | None = 60.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        hosts = [h for h in (host.split(",") if isinstance(host, str) else host) if h.strip()]
        if not hosts:
            raise InvalidInput("no API host given: use a multiaddr such as /ip4/127.0.0.1/tcp/9094")
        self.endpoints = [parse_host(h, https=https) for h in hosts]
        self.endpoint = self.endpoints[0]
        ctx: ssl.SSLContext | None = None
        if any(e.scheme == "https" for e in self.endpoints):
            ctx = ssl_context or ssl.create_default_context(cafile=ca_file)
            if not verify:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
        self._transports = [Transport(e, ctx if e.scheme == "https" else None, timeout) for e in self.endpoints]
        self._transport = self._transports[0]
        auth: str | None = None
        if token:
            auth = f"Bearer {token}"
        elif username is not None or password is not None:
            raw = f"{username or ''}:{password or ''}".encode()
            auth = "Basic " + base64.b64encode(raw).decode()
        self._headers: list[tuple[str, str]] = [("User-Agent", "pincluster-client"), ("Accept", "application/json")]
        if auth:
            self._headers.append(("Authorization", auth))
        self._headers.extend((headers or {}).items())

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        for t in self._transports:
            await t.close()

    # --- plumbing -------------------------------------------------------------------------------------------
    async def _send(self, method: str, path: str, query: Iterable[tuple[str, str]] = (),
                    body: bytes | AsyncIterable[bytes] | None = None,
                    headers: Iterable[tuple[str, str]] = ()) -> HTTPResponse:
        qs = urllib.parse.urlencode(list(query))
        target = urllib.parse.quote(path, safe="/:@!$&'()*+,;=-._~") + ("?" + qs if qs else "")
        for _ in range(_MAX_REDIRECTS + 1):
            resp = await self._request(method, target, [*self._headers, *headers], body)
            if resp.status in (307, 308) and (body is None or isinstance(body, bytes)):
                location = resp.header("location") or ""
                resp.close()
                parts = urllib.parse.urlsplit(location)
                target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
                continue
            return resp
        raise APIError(0, f"too many redirects for {method} {path}")

    async def _request(self, method: str, target: str, headers: list[tuple[str, str]],
                       body: bytes | AsyncIterable[bytes] | None) -> HTTPResponse:
        """Try the current host; on a transport error move on to the next one (``--host a,b`` failover).
        Streamed uploads cannot be replayed, so they only get one try."""
        replayable = body is None or isinstance(body, bytes)
        for i in range(len(self._transports)):
            try:
                return await self._transport.request(method, target, headers, body)
            except TransportError:
                if not replayable or i == len(self._transports) - 1:
                    raise
                nxt = (self._transports.index(self._transport) + 1) % len(self._transports)
                self._transport = self._transports[nxt]
                self.endpoint = self.endpoints[nxt]
        raise AssertionError("unreachable")

    @staticmethod
    async def _raise_for(resp: HTTPResponse) -> None:
        body = await resp.read()
        try:
            err = msgspec.json.decode(body, type=_ErrorBody)
            message = err.message
        except msgspec.DecodeError:
            message = body.decode("utf-8", "replace").strip()
        raise APIError(resp.status, message or f"HTTP {resp.status}")

    async def _call(self, method: str, path: str, typ: type[T] | Any, query: Iterable[tuple[str, str]] = (),
                    body: bytes | None = None, headers: Iterable[tuple[str, str]] = ()) -> Any:
        resp = await self._send(method, path, query, body, headers)
        if resp.status >= 400:
            await self._raise_for(resp)
        data = await resp.read()
        if resp.status in (202, 204) or typ is None:
            return None
        try:
            return from_json(data, typ)
        except DecodeError as exc:
            raise APIError(resp.status, f"cannot decode the response of {method} {path}: {exc}") from None

    async def _stream(self, method: str, path: str, typ: Any, query: Iterable[tuple[str, str]] = (),
                      body: AsyncIterable[bytes] | None = None, headers: Iterable[tuple[str, str]] = (),
                      array_ok: bool = False) -> AsyncIterator[Any]:
        resp = await self._send(method, path, query, body, headers)
        try:
            if resp.status >= 400:
                await self._raise_for(resp)
            if resp.status == 204:
                await resp.read()
                return
            if resp.status != 200:
                await resp.read()
                raise APIError(resp.status, f"expected streaming response with code 200/204, got {resp.status}")
            if array_ok and not any(k == "x-chunked-output" for k, _ in resp.headers):
                for item in from_json(await resp.read(), list[typ]):
                    yield item
            else:
                async for item in aiter_json_values(resp.iter_body(), typ):
                    yield item
            errors = [e for e in resp.trailer_values("x-stream-error") if e]
            if errors:
                raise APIError(500, ", ".join(errors))
        except DecodeError as exc:
            raise APIError(resp.status, f"cannot decode the response of {method} {path}: {exc}") from None
        finally:
            resp.close()

    # --- routes ---------------------------------------------------------------------------------------------
    async def id(self) -> ID:
        return await self._call("GET", "/id", ID)  # type: ignore[no-any-return]

    async def version(self) -> Version:
        return await self._call("GET", "/version", Version)  # type: ignore[no-any-return]

    def peers(self) -> AsyncIterator[ID]:
        return self._stream("GET", "/peers", ID)

    async def peer_add(self, peer: PeerID | str) -> ID:
        body = msgspec.json.encode({"peer_id": str(peer)})
        return await self._call("POST", "/peers", ID, body=body,  # type: ignore[no-any-return]
                                headers=[("Content-Type", "application/json")])

    async def peer_rm(self, peer: PeerID | str) -> None:
        await self._call("DELETE", f"/peers/{peer}", None)

    def add(self, entries: Iterable[ImportEntry] | AsyncIterable[ImportEntry],
            params: AddParams | None = None) -> AsyncIterator[AddedOutput]:
        """Upload entries (files' ``chunks`` are streamed) and import them; yields ``AddedOutput`` events."""
        params = params or _default_add_params()
        boundary = secrets.token_hex(16)
        return self._stream(
            "POST", "/add", AddedOutput, add_query(params), _multipart(_aiter(entries), boundary),
            headers=[("Content-Type", f"multipart/form-data; boundary={boundary}")],
            array_ok=not params.stream_channels,
        )

    def add_paths(self, paths: Iterable[str], params: AddParams | None = None, *, recursive: bool = False
                  ) -> AsyncIterator[AddedOutput]:
        """Add local files/folders (folders with ``recursive``), as ``ipfs-cluster-ctl add`` does."""
        params = params or _default_add_params()
        return self.add(path_entries(paths, recursive=recursive, hidden=params.import_options.hidden), params)

    def add_bytes(self, data: bytes, name: str = "", params: AddParams | None = None
                  ) -> AsyncIterator[AddedOutput]:
        from pincluster.ipfs.unixfs.importer import ImportEntry

        async def one() -> AsyncIterator[bytes]:
            yield data

        return self.add([ImportEntry(path=name, kind="file", chunks=one())], params)

    @overload
    def allocations(self, filter: Collection[PinType] | str = ...) -> AsyncIterator[Pin]: ...
    @overload
    def allocations(self, filter: Collection[PinType] | str = ..., *, view: type[T]) -> AsyncIterator[T]: ...
    def allocations(self, filter: Collection[PinType] | str = (), *, view: Any = Pin) -> AsyncIterator[Any]:
        """The pinset; ``filter`` is pin types (or their comma list; empty = all). ``view``: decode each item as
        this msgspec Struct instead of a Pin (as in :meth:`status_all`)."""
        text = filter if isinstance(filter, str) else ",".join(t.value for t in filter)
        return self._stream("GET", "/allocations", view, [("filter", text)])

    async def allocation(self, cid: CID | str) -> Pin:
        return await self._call("GET", f"/allocations/{cid}", Pin)  # type: ignore[no-any-return]

    @overload
    def status_all(self, filter: TrackerStatus | str = ..., *, local: bool = ...) -> AsyncIterator[GlobalPinInfo]: ...
    @overload
    def status_all(self, filter: TrackerStatus | str = ..., *, local: bool = ...,
                   view: type[T]) -> AsyncIterator[T]: ...
    def status_all(self, filter: TrackerStatus | str = TrackerStatus.UNDEFINED, *, local: bool = False,
                   view: Any = GlobalPinInfo) -> AsyncIterator[Any]:
        """Every pin's status. ``view``: decode each item as this msgspec Struct instead of a GlobalPinInfo
        (only its fields are read: a display of a few fields of a large listing costs a fraction)."""
        text = filter if isinstance(filter, str) else ("" if filter == 0 else filter.json_name)
        return self._stream("GET", "/pins", view, [("local", _bool(local)), ("filter", text), ("cids", "")])

    @overload
    def status_cids(self, cids: Iterable[CID | str], *, local: bool = ...) -> AsyncIterator[GlobalPinInfo]: ...
    @overload
    def status_cids(self, cids: Iterable[CID | str], *, local: bool = ..., view: type[T]) -> AsyncIterator[T]: ...
    def status_cids(self, cids: Iterable[CID | str], *, local: bool = False,
                    view: Any = GlobalPinInfo) -> AsyncIterator[Any]:
        """The statuses of ``cids`` (``view`` as in :meth:`status_all`)."""
        return self._stream("GET", "/pins", view,
                            [("local", _bool(local)), ("filter", ""), ("cids", ",".join(str(c) for c in cids))])

    async def status(self, cid: CID | str, *, local: bool = False) -> GlobalPinInfo:
        return await self._call(  # type: ignore[no-any-return]
            "GET", f"/pins/{cid}", GlobalPinInfo, [("local", _bool(local))])

    async def recover(self, cid: CID | str, *, local: bool = False) -> GlobalPinInfo:
        return await self._call(  # type: ignore[no-any-return]
            "POST", f"/pins/{cid}/recover", GlobalPinInfo, [("local", _bool(local))])

    def recover_all(self, *, local: bool = False) -> AsyncIterator[GlobalPinInfo]:
        return self._stream("POST", "/pins/recover", GlobalPinInfo, [("local", _bool(local))])

    async def pin(self, cid: CID | str, options: PinOptions | None = None) -> Pin:
        q = urllib.parse.parse_qsl((options or PinOptions()).to_query(), keep_blank_values=True)
        return await self._call("POST", f"/pins/{cid}", Pin, q)  # type: ignore[no-any-return]

    async def pin_path(self, path: str, options: PinOptions | None = None) -> Pin:
        """Pin ``/ipfs/<cid>/…``, ``/ipns/<name>/…`` or ``/ipld/…`` (resolved by the cluster's IPFS)."""
        q = urllib.parse.parse_qsl((options or PinOptions()).to_query(), keep_blank_values=True)
        return await self._call("POST", "/pins/" + path.strip("/"), Pin, q)  # type: ignore[no-any-return]

    async def unpin(self, cid: CID | str) -> Pin:
        return await self._call("DELETE", f"/pins/{cid}", Pin)  # type: ignore[no-any-return]

    async def unpin_path(self, path: str) -> Pin:
        return await self._call("DELETE", "/pins/" + path.strip("/"), Pin)  # type: ignore[no-any-return]

    async def repo_gc(self, *, local: bool = False) -> GlobalRepoGC:
        raw = await self._call("POST", "/ipfs/gc", dict[str, Any], [("local", _bool(local))])
        peer_map = (raw or {}).get("peer_map")
        if peer_map is None:
            return GlobalRepoGC(peer_map=None)
        return GlobalRepoGC(peer_map={
            PeerID.decode(k): from_json(msgspec.json.encode(v), RepoGC) for k, v in peer_map.items()})

    async def health_graph(self) -> ConnectGraph:
        g: _GraphIn = await self._call("GET", "/health/graph", _GraphIn)

        def peers(xs: list[str]) -> tuple[PeerID, ...]:
            return tuple(PeerID.decode(x) for x in xs)

        try:
            return ConnectGraph(
                cluster_id=PeerID.decode(g.cluster_id),
                id_to_peername=None if g.id_to_peername is None else {
                    PeerID.decode(k): v for k, v in g.id_to_peername.items()},
                ipfs_links=None if g.ipfs_links is None else {
                    PeerID.decode(k): peers(v) for k, v in g.ipfs_links.items()},
                cluster_links=None if g.cluster_links is None else {
                    PeerID.decode(k): peers(v) for k, v in g.cluster_links.items()},
                cluster_trust_links=None if g.cluster_trust_links is None else {
                    PeerID.decode(k): v for k, v in g.cluster_trust_links.items()},
                cluster_to_ipfs=None if g.cluster_to_ipfs is None else {
                    PeerID.decode(k): PeerID.decode(v) for k, v in g.cluster_to_ipfs.items()},
            )
        except InvalidInput as exc:
            raise APIError(200, f"cannot decode the connection graph: {exc}") from None

    async def alerts(self) -> list[Alert]:
        return await self._call("GET", "/health/alerts", list[Alert]) or []

    async def bandwidth(self) -> dict[str, Bandwidth] | None:
        """The peer's traffic per protocol; None from a peer that does not count it."""
        return await self._call("GET", "/health/bandwidth", dict[str, Bandwidth] | None)  # type: ignore[no-any-return]

    async def metrics(self, name: str) -> list[Metric]:
        return await self._call("GET", f"/monitor/metrics/{name}", list[Metric]) or []

    async def metric_names(self) -> list[str]:
        return await self._call("GET", "/monitor/metrics", list[str]) or []

    async def token(self) -> str:
        """A JWT for the configured user (use it later as ``Client(token=…)``)."""
        t: _Token = await self._call("POST", "/token", _Token)
        return t.token

    async def health(self) -> None:
        """Raises unless the API answers ``GET /health`` with 204."""
        await self._call("GET", "/health", None)

    async def wait_for(self, cid: CID | str, target: TrackerStatus, *, limit: int = 0,
                       interval: float = 1.0, timeout: float | None = None) -> GlobalPinInfo:
        """Poll ``GET /pins/{cid}`` until the CID reaches ``target`` (Go client's ``WaitFor``, spec §5.2).

        With ``limit`` > 0 (capped at the number of peers), done when that many peers have exactly
        ``target``; else when every peer has it (``remote`` peers are ignored for ``pinned``). A peer in
        ``undefined``, ``cluster_error``, ``pin_error`` or ``unpin_error`` aborts with :class:`APIError`.
        Raises :class:`WaitTimeout` when ``timeout`` seconds pass.
        """
        failing = (TrackerStatus.UNDEFINED, TrackerStatus.CLUSTER_ERROR, TrackerStatus.PIN_ERROR,
                   TrackerStatus.UNPIN_ERROR)

        async def poll() -> GlobalPinInfo:
            while True:
                gpi = await self.status(cid)
                statuses = [s.status for s in gpi.peer_map.values()]
                if any(st in failing for st in statuses):
                    raise APIError(0, f"error has occurred while attempting to reach status: {target.json_name}")
                lim = min(limit, len(statuses))
                if lim > 0:
                    if sum(1 for st in statuses if st == target) >= lim:
                        return gpi
                else:
                    relevant = [st for st in statuses
                                if not (target == TrackerStatus.PINNED and st == TrackerStatus.REMOTE)]
                    if all(st == target for st in relevant):
                        return gpi
                await asyncio.sleep(interval)

        if timeout is None or timeout <= 0:
            return await poll()
        try:
            return await asyncio.wait_for(poll(), timeout)
        except TimeoutError:
            raise WaitTimeout("error waiting for pin status: context deadline exceeded") from None

    async def openapi(self) -> dict[str, Any]:
        return await self._call("GET", "/openapi.json", dict[str, Any])  # type: ignore[no-any-return]


class SyncClient:
    """Blocking wrapper of :class:`Client`: same methods; listings are plain iterators.

    It runs its own event loop in a daemon thread, so it also works from code that is not async (scripts,
    the ctl). Call :meth:`close` (or use ``with``) when done.
    """

    def __init__(self, host: str = DEFAULT_HOST, **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="pincluster-client", daemon=True)
        self._thread.start()
        self._client: Client = self._run(self._make(host, kwargs))

    @staticmethod
    async def _make(host: str, kwargs: dict[str, Any]) -> Client:
        return Client(host, **kwargs)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _iter(self, agen: AsyncIterator[T]) -> Iterator[T]:
        async def nxt() -> tuple[bool, T | None]:
            try:
                return True, await agen.__anext__()
            except StopAsyncIteration:
                return False, None

        try:
            while True:
                ok, item = self._run(nxt())
                if not ok:
                    return
                yield item  # type: ignore[misc]
        finally:
            closer = getattr(agen, "aclose", None)
            if closer is not None:
                self._run(closer())

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._run(self._client.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __getattr__(self, name: str) -> Callable[..., Any]:
        """Every :class:`Client` route: coroutines are awaited, async iterators become iterators."""
        attr = getattr(self._client, name)
        if not callable(attr) or name.startswith("_"):
            raise AttributeError(name)

        def call(*args: Any, **kwargs: Any) -> Any:
            result = attr(*args, **kwargs)
            if asyncio.iscoroutine(result):
                return self._run(result)
            if isinstance(result, AsyncIterator):
                return self._iter(result)
            return result

        return call
