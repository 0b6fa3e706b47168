"""kubo RPC client: the cluster's ``ipfshttp`` IPFS connector (spec §8, §7.3.6).

Every call is an HTTP POST to ``/api/v0/<path>`` on ``node_multiaddress`` (TCP or ``/unix/``), with the
deadline the spec gives it. Long listings (``pin/ls``, ``repo/gc``) are async iterators that read the NDJSON
stream chunk by chunk, so a pinset of millions never sits in memory. A pin follows ``pin/add?progress=true``
and is aborted only when kubo's progress counter stops increasing for ``pin_timeout``; a slow but moving
pin of a large DAG is never killed.

kubo reports an error that happens *after* a stream started only in the HTTP ``X-Stream-Error`` trailer,
which aiohttp drops. So streamed calls verify their outcome instead of trusting end-of-stream: a pin must be
confirmed by kubo's final ``{"Pins": …}`` object (else the pin status is re-checked), and a block stream
must get one acknowledgement per block sent.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import logging
import os
import secrets
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar
from urllib.parse import quote

import aiohttp
import msgspec
import yarl

from pincluster.errors import InvalidInput, NotFound, PinclusterError, Timeout, Unavailable
from pincluster.ipfsconn.interface import (
    IPFSID,
    InformerTrigger,
    IPFSBadRequest,
    IPFSConnector,
    IPFSError,
    IPFSVersion,
    PinPage,
    ProgressCallback,
    pages_of,
    pin_mode_args,
)
from pincluster.observe import tracing
from pincluster.observe.hooks import endpoint_of
from pincluster.types.cid import CID, InvalidCID, b58decode, multihash_decode
from pincluster.types.models import IPFSRepoGC, IPFSRepoStat
from pincluster.types.multiaddr import Multiaddr
from pincluster.types.peer import PeerID
from pincluster.types.status import IPFSPinStatus

if TYPE_CHECKING:
    from pincluster.config.sections import IPFSHTTPConfig
    from pincluster.observe.hooks import IPFSObserver, Outcome

__all__ = [
    "CODEC_NAMES",
    "MULTIHASH_NAMES",
    "IPFSHTTPConnector",
    "UnpinDisabled",
]

logger = logging.getLogger("pincluster.ipfshttp")


def _same_listener(listening: Multiaddr, dialed: Multiaddr) -> bool:
    """Whether dialing ``dialed`` reaches the API listening on ``listening`` (same port; same host, or a
    wildcard listener dialed on loopback)."""
    if listening.is_unix() or dialed.is_unix():
        return str(listening) == str(dialed)
    try:
        lhost, lport = listening.tcp_host_port()
        dhost, dport = dialed.tcp_host_port()
    except (InvalidInput, ValueError):
        return False
    if lport != dport:
        return False
    return lhost == dhost or (lhost in ("0.0.0.0", "::") and dhost in ("127.0.0.1", "::1", "localhost"))


class LocalPinStore(Protocol):
    """The pin store of an IPFS node running in this process (``pincluster.ipfs.pins.PinStore``)."""

    generation: int

    def key_pages(self, type: str) -> AsyncIterator[list[bytes]]: ...


# Defaults of the ``ipfs_connector.ipfshttp`` section (spec §7.3.6), in seconds.
DEFAULT_NODE_MULTIADDRESS: Final = "/ip4/127.0.0.1/tcp/5001"
DEFAULT_CONNECT_SWARMS_DELAY: Final = 30.0
DEFAULT_IPFS_REQUEST_TIMEOUT: Final = 300.0
DEFAULT_PIN_TIMEOUT: Final = 120.0
DEFAULT_UNPIN_TIMEOUT: Final = 3 * 3600.0
DEFAULT_REPOGC_TIMEOUT: Final = 24 * 3600.0

#: Multicodec names kubo accepts in ``block/put?cid-codec=``.
CODEC_NAMES: Final[Mapping[int, str]] = {
    0x55: "raw",
    0x70: "dag-pb",
    0x71: "dag-cbor",
    0x72: "libp2p-key",
    0x0129: "dag-json",
    0x0200: "json",
    0x51: "cbor",
}
#: Multihash names kubo accepts in ``block/put?mhtype=``.
MULTIHASH_NAMES: Final[Mapping[int, str]] = {
    0x00: "identity",
    0x11: "sha1",
    0x12: "sha2-256",
    0x13: "sha2-512",
    0x16: "sha3-256",
    0x14: "sha3-512",
    0x1B: "keccak-256",
    0x1E: "blake3",
    0xB220: "blake2b-256",
    0xB240: "blake2b-512",
}
_NAME_TO_CODEC: Final = {v: k for k, v in CODEC_NAMES.items()}
_NAME_TO_MH: Final = {v: k for k, v in MULTIHASH_NAMES.items()}

_PIN_LS_TYPES: Final = frozenset({"recursive", "direct", "indirect", "all"})
_MAX_ORIGINS: Final = 10
_RATE_LIMIT_AFTER: Final = 10  # consecutive transport failures before limiting to 1 request/s
_READY_WARN_EVERY: Final = 10
_MAX_LINE: Final = 16 * 1024 * 1024
_UNPIN_DISABLED_MSG: Final = "ipfs unpinning is disallowed by configuration on this peer"


class UnpinDisabled(PinclusterError):
    """``unpin_disable`` is set: this peer refuses to unpin from IPFS (Go's exact message)."""

    def __init__(self) -> None:
        super().__init__(_UNPIN_DISABLED_MSG)


class _PinLsEntry(msgspec.Struct):
    Cid: str = ""
    Type: str = ""
    Message: str | None = None


class _PinProgress(msgspec.Struct):
    Progress: int | None = None
    Pins: list[str] | None = None
    Type: str | None = None
    Message: str | None = None
    Code: int = 0


class _BlockPutEntry(msgspec.Struct):
    Key: str = ""
    Size: int = 0
    Type: str | None = None
    Message: str | None = None
    Code: int = 0


class _GCKey(msgspec.Struct):
    Key: dict[str, str] | None = None
    Error: str = ""
    Type: str | None = None
    Message: str | None = None


class _KuboError(msgspec.Struct):
    Message: str
    Code: int = 0
    Type: str = ""


_pin_ls_dec: Final = msgspec.json.Decoder(_PinLsEntry)
_progress_dec: Final = msgspec.json.Decoder(_PinProgress)
_block_put_dec: Final = msgspec.json.Decoder(_BlockPutEntry)
_gc_dec: Final = msgspec.json.Decoder(_GCKey)
_error_dec: Final = msgspec.json.Decoder(_KuboError)


def _q(value: str) -> str:
    """Escape a query value like Go's ``url.QueryEscape`` (the spec shows ``arg=<url-escaped maddr>``)."""
    return quote(value, safe="")


def _fmt_seconds(s: float) -> str:
    return f"{s:g}s"


def _deadline(seconds: float) -> float | None:
    """Loop time ``seconds`` from now, or None (no limit) for 0."""
    return asyncio.get_running_loop().time() + seconds if seconds > 0 else None


class IPFSHTTPConnector:
    """The cluster's client for a kubo-compatible RPC API (kubo, or pincluster's embedded node).

    Timeouts are in seconds (``from_config`` converts the config's durations); 0 means no limit (Go would
    fail every call at once). ``informer_trigger`` is awaited in the
    background after every ``informer_trigger_interval``-th pin/unpin/block stream, like Go's
    ``SendInformersMetrics``. Use as ``async with IPFSHTTPConnector(...) as ipfs:`` or call ``close()``.
    """

    def __init__(
        self,
        node_multiaddress: Multiaddr | str = DEFAULT_NODE_MULTIADDRESS,
        *,
        connect_swarms_delay: float = DEFAULT_CONNECT_SWARMS_DELAY,
        ipfs_request_timeout: float = DEFAULT_IPFS_REQUEST_TIMEOUT,
        pin_timeout: float = DEFAULT_PIN_TIMEOUT,
        unpin_timeout: float = DEFAULT_UNPIN_TIMEOUT,
        repogc_timeout: float = DEFAULT_REPOGC_TIMEOUT,
        informer_trigger_interval: int = 0,
        unpin_disable: bool = False,
        informer_trigger: InformerTrigger | None = None,
        ready_interval: float = 1.0,
    ) -> None:
        addr = node_multiaddress if isinstance(node_multiaddress, Multiaddr) else Multiaddr(node_multiaddress)
        for name, value in (
            ("connect_swarms_delay", connect_swarms_delay),
            ("ipfs_request_timeout", ipfs_request_timeout),
            ("pin_timeout", pin_timeout),
            ("unpin_timeout", unpin_timeout),
            ("repogc_timeout", repogc_timeout),
        ):
            if value < 0:
                raise InvalidInput(f"ipfshttp.{name} must not be negative (got {value})")
        if informer_trigger_interval < 0:
            raise InvalidInput("ipfshttp.informer_trigger_interval must not be negative")
        self.node_multiaddress = addr
        self.connect_swarms_delay = connect_swarms_delay
        self.ipfs_request_timeout = ipfs_request_timeout
        self.pin_timeout = pin_timeout
        self.unpin_timeout = unpin_timeout
        self.repogc_timeout = repogc_timeout
        self.informer_trigger_interval = informer_trigger_interval
        self.unpin_disable = unpin_disable
        self.ready_interval = ready_interval
        self._informer_trigger = informer_trigger
        self._unix_path: str | None = None
        if addr.is_unix():
            self._unix_path = addr.unix_path()
            self._base = "http://unix"
        else:
            host, port = addr.tcp_host_port()
            if ":" in host:
                host = f"[{host}]"
            self._base = f"http://{host}:{port}"
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self._failures = 0
        self._rate_lock = asyncio.Lock()
        self._last_limited = 0.0
        self._op_count = 0
        # unparsable IPFS addresses already warned about: ``id`` runs on every GET /id, and a public kubo
        # announces /webtransport/certhash and /webrtc-direct addresses each time (bounded: cleared at 256)
        self._skipped_addrs: set[str] = set()
        self._background: set[asyncio.Task[Any]] = set()
        self.ready = asyncio.Event()
        self.pin_count = 0
        self.observer: IPFSObserver | None = None  # metrics hook (pincluster.observe), set by the daemon
        self._local_pins: LocalPinStore | None = None
        #: ``Authorization`` header of every request: set by the daemon when its embedded node has
        #: ``API.Authorizations`` (Go's connector has no such setting, so an external kubo must not require it)
        self.authorization: str | None = None

    @classmethod
    def from_config(cls, cfg: IPFSHTTPConfig, *, informer_trigger: InformerTrigger | None = None) -> IPFSHTTPConnector:
        """Build from the ``ipfs_connector.ipfshttp`` section (durations become seconds)."""
        return cls(
            cfg.node_multiaddress,
            connect_swarms_delay=cfg.connect_swarms_delay.total_seconds(),
            ipfs_request_timeout=cfg.ipfs_request_timeout.total_seconds(),
            pin_timeout=cfg.pin_timeout.total_seconds(),
            unpin_timeout=cfg.unpin_timeout.total_seconds(),
            repogc_timeout=cfg.repogc_timeout.total_seconds(),
            informer_trigger_interval=cfg.informer_trigger_interval,
            unpin_disable=cfg.unpin_disable,
            informer_trigger=informer_trigger,
        )

    def read_pins_from(self, pins: LocalPinStore | None, api: Multiaddr | None) -> bool:
        """Let ``pin_pages`` read the pin store of the IPFS node that runs in this process (the embedded
        node, whose API is ``api``) instead of asking its API. A status listing checks every pin of the pinset
        against the node's pins; over HTTP the node prints each CID as text and this side parses it back,
        about a quarter of a listing's cost. Only when ``api`` is this connector's ``node_multiaddress``
        (else the connector talks to another node); returns whether the store is used."""
        same = pins is not None and api is not None and _same_listener(api, self.node_multiaddress)
        self._local_pins = pins if same else None
        return same

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> IPFSHTTPConnector:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Cancel background work (origin connects, informer triggers) and close the HTTP session."""
        self._closed = True
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise Unavailable("ipfshttp: the IPFS connector is shut down")
        if self._session is None or self._session.closed:
            connector: aiohttp.BaseConnector
            if self._unix_path is not None:
                connector = aiohttp.UnixConnector(path=self._unix_path)
            else:
                connector = aiohttp.TCPConnector(limit=100, ttl_dns_cache=60)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None),
                auto_decompress=True,
                headers={"Authorization": self.authorization} if self.authorization else None,
            )
        return self._session

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ------------------------------------------------------------------ transport

    def _url(self, path: str) -> str:
        """``path`` is relative to ``/api/v0/`` (``pin/ls?…``) unless it starts with ``/``."""
        return f"{self._base}{path}" if path.startswith("/") else f"{self._base}/api/v0/{path}"

    def _unreachable(self, action: str, path: str, exc: BaseException) -> Unavailable:
        reason = _describe_transport_error(exc)
        return Unavailable(
            f"ipfshttp: error {action}: POST {self._url(path)}: {reason} "
            f"(node_multiaddress {self.node_multiaddress}; is the IPFS daemon running?)"
        )

    def _timed_out(self, action: str, path: str, seconds: float, key: str) -> Timeout:
        return Timeout(
            f"ipfshttp: error {action}: POST {self._url(path)}: no answer within "
            f"{_fmt_seconds(seconds)} ({key}); the IPFS daemon at {self.node_multiaddress} is slow or stuck"
        )

    async def _rate_limit(self) -> None:
        """After more than 10 consecutive transport failures, allow 1 request per second (Go behaviour)."""
        if self._failures <= _RATE_LIMIT_AFTER:
            return
        async with self._rate_lock:
            loop = asyncio.get_running_loop()
            wait = self._last_limited + 1.0 - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self._last_limited = loop.time()

    @contextlib.asynccontextmanager
    async def _open(self, path: str, **kwargs: Any) -> AsyncIterator[aiohttp.ClientResponse]:
        """``_post``, in a span while tracing runs (``ipfsconn/ipfshttp/pin/add``), timed from the request to
        the end of the answer per endpoint when ``observer`` is set."""
        with tracing.span(lambda: "ipfsconn/ipfshttp/" + endpoint_of(path)):
            obs = self.observer
            if obs is None:
                async with self._post(path, **kwargs) as resp:
                    yield resp
                return
            started = time.perf_counter()
            outcome: Outcome = "error"
            try:
                async with self._post(path, **kwargs) as resp:
                    yield resp
                outcome = "ok"
            except IPFSError as exc:  # "not pinned" is kubo's normal negative answer, not a failure
                outcome = "ok" if "not pinned" in exc.message else "error"
                raise
            except (asyncio.CancelledError, GeneratorExit):
                outcome = "cancelled"
                raise
            finally:
                obs.ipfs_call(path, time.perf_counter() - started, outcome)

    @contextlib.asynccontextmanager
    async def _post(
        self,
        path: str,
        *,
        action: str,
        deadline: float | None,
        seconds: float,
        key: str,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """POST and yield a 200 response; transport problems, deadlines and kubo errors become typed errors.

        ``deadline`` bounds connecting and reading the headers (and the error body); callers bound the
        reads of the body themselves, so a deadline never spans a ``yield`` of an async generator.
        """
        await self._rate_limit()
        session = self._get_session()
        url = self._url(path)
        try:
            async with asyncio.timeout_at(deadline):
                resp = await session.post(yarl.URL(url, encoded=True), data=data, headers=headers)
        except TimeoutError:
            raise self._timed_out(action, path, seconds, key) from None
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, OSError) as exc:
            self._failures += 1
            raise self._unreachable(action, path, exc) from exc
        self._failures = 0
        clean = False
        try:
            if resp.status != 200:
                try:
                    async with asyncio.timeout_at(deadline):
                        body = await resp.read()
                except TimeoutError:
                    raise self._timed_out(action, path, seconds, key) from None
                except (aiohttp.ClientError, OSError) as exc:
                    raise self._unreachable(action, path, exc) from exc
                clean = True
                raise _kubo_error(path, resp.status, body)
            yield resp
            clean = resp.content.at_eof()
        finally:
            if clean:
                resp.release()
            else:
                # Abandoning a stream (timeout, consumer stopped): close so kubo cancels the request.
                resp.close()

    async def _read_all(
        self, resp: aiohttp.ClientResponse, deadline: float | None, action: str, path: str, seconds: float, key: str
    ) -> bytes:
        try:
            async with asyncio.timeout_at(deadline):
                return await resp.read()
        except TimeoutError:
            raise self._timed_out(action, path, seconds, key) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise self._unreachable(action, path, exc) from exc

    @contextlib.asynccontextmanager
    async def _ndjson(
        self,
        path: str,
        *,
        action: str,
        seconds: float,
        key: str,
        deadline: Callable[[], float | None],
        upload: bool = False,
        **post: Any,
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        """POST ``path`` and give its NDJSON lines, with one action name and timeout key for every error.

        ``deadline()`` bounds the request and each read (see :meth:`_lines`); with ``upload`` the request itself
        has no deadline, as a streamed upload lasts as long as its producer."""
        start = None if upload else deadline()
        async with self._open(path, action=action, deadline=start, seconds=seconds, key=key, **post) as resp:
            yield self._lines(resp, action=action, path=path, key=key, seconds=seconds, deadline=deadline)

    async def _lines(
        self,
        resp: aiohttp.ClientResponse,
        *,
        action: str,
        path: str,
        key: str,
        seconds: float,
        deadline: Callable[[], float | None],
    ) -> AsyncIterator[bytes]:
        """Yield the non-empty lines of an NDJSON body, reading chunk by chunk.

        ``deadline()`` is asked before every read, so callers can move it (pin progress) or make it an idle
        timeout. The timeout never spans a ``yield``: it only guards our own reads.
        """
        buf = bytearray()
        while True:
            try:
                async with asyncio.timeout_at(deadline()):
                    chunk = await resp.content.readany()
            except TimeoutError:
                raise self._timed_out(action, path, seconds, key) from None
            except (aiohttp.ClientError, OSError) as exc:
                raise self._unreachable(action, path, exc) from exc
            if not chunk:
                break
            buf += chunk
            start = 0
            while True:
                nl = buf.find(b"\n", start)
                if nl < 0:
                    break
                line = bytes(buf[start:nl]).strip()
                start = nl + 1
                if line:
                    yield line
            del buf[:start]
            if len(buf) > _MAX_LINE:
                raise IPFSError(path, resp.status, f"a response line is longer than {_MAX_LINE} bytes")
        rest = bytes(buf).strip()
        if rest:
            yield rest

    async def _post_json(self, path: str, *, action: str, seconds: float, key: str) -> Any:
        deadline = _deadline(seconds)
        async with self._open(path, action=action, deadline=deadline, seconds=seconds, key=key) as resp:
            body = await self._read_all(resp, deadline, action, path, seconds, key)
        try:
            return msgspec.json.decode(body) if body.strip() else None
        except msgspec.DecodeError:
            raise IPFSError(path, resp.status, f"unparsable JSON answer: {body[:200]!r}") from None

    def _informer_tick(self) -> None:
        """Every ``informer_trigger_interval`` operations, broadcast informer metrics (in the background)."""
        if self.informer_trigger_interval <= 0 or self._informer_trigger is None:
            return
        self._op_count += 1
        if self._op_count % self.informer_trigger_interval == 0:
            trigger = self._informer_trigger

            async def fire() -> None:
                try:
                    await trigger()
                except Exception as exc:  # a metrics broadcast must never fail an IPFS operation
                    logger.warning("ipfshttp: informer metrics trigger failed: %s", exc)

            self._spawn(fire())

    # ------------------------------------------------------------------ identity

    async def id(self) -> IPFSID:
        """``id``: the daemon's peer ID and addresses (unparsable addresses are skipped with a warning)."""
        data = await self._post_json(
            "id", action="getting IPFS ID", seconds=self.ipfs_request_timeout, key="ipfs_request_timeout"
        )
        if not isinstance(data, dict):
            raise IPFSError("id", 200, f"unexpected answer: {data!r}")
        try:
            pid = PeerID.decode(str(data.get("ID", "")))
        except InvalidInput as exc:
            raise IPFSError("id", 200, f"invalid peer ID in answer: {exc}") from None
        addrs: list[Multiaddr] = []
        for text in data.get("Addresses") or ():
            try:
                addrs.append(Multiaddr(str(text)))
            except InvalidInput as exc:
                self._skip_address(str(text), exc)
        return IPFSID(id=pid, addresses=tuple(addrs), error="")

    def _skip_address(self, text: str, exc: InvalidInput) -> None:
        """Warn once per address (then debug): the same addresses come back on every ``id``."""
        if text in self._skipped_addrs:
            logger.debug("ipfshttp: skipping unparsable IPFS address %r: %s", text, exc)
            return
        if len(self._skipped_addrs) >= 256:
            self._skipped_addrs.clear()
        self._skipped_addrs.add(text)
        logger.warning("ipfshttp: skipping unparsable IPFS address %r: %s", text, exc)

    async def id_or_error(self) -> IPFSID:
        """``id()``, or an ``IPFSID`` carrying the error text (what ``GET /id`` shows when IPFS is down)."""
        try:
            return await self.id()
        except PinclusterError as exc:
            return IPFSID(id=None, addresses=None, error=str(exc))

    async def version(self) -> IPFSVersion:
        data = await self._post_json(
            "version",
            action="getting IPFS version",
            seconds=self.ipfs_request_timeout,
            key="ipfs_request_timeout",
        )
        if not isinstance(data, dict) or "Version" not in data:
            raise IPFSError("version", 200, f"unexpected answer: {data!r}")
        return IPFSVersion(
            version=str(data.get("Version", "")),
            commit=str(data.get("Commit", "")),
            repo=str(data.get("Repo", "")),
            system=str(data.get("System", "")),
            golang=str(data.get("Golang", "")),
        )

    async def wait_ready(self, interval: float | None = None) -> IPFSID:
        """Call ``id`` every ``interval`` s until it answers (Go's readiness loop), then set ``ready``."""
        step = self.ready_interval if interval is None else interval
        tries = 0
        while True:
            try:
                ident = await self.id()
            except (Unavailable, IPFSError) as exc:
                tries += 1
                if tries % _READY_WARN_EVERY == 0:
                    logger.warning("ipfs does not seem to be available after %d retries: %s", tries, exc)
                await asyncio.sleep(step)
                continue
            self.ready.set()
            return ident

    async def extract_headers(self, path: str = "/api/v0/version", names: Iterable[str] = ()) -> dict[str, str]:
        """POST ``path`` and return the named response headers (the proxy's ``extract_headers_*``).

        ``Access-Control-Expose-Headers`` is always included when kubo sends it.
        """
        wanted = {n.lower() for n in names} | {"access-control-expose-headers"}
        if not path.startswith("/"):
            raise InvalidInput(f"extract_headers path must start with '/': {path!r}")
        seconds = self.ipfs_request_timeout
        deadline = _deadline(seconds)
        async with self._open(
            path,
            action="extracting IPFS headers",
            deadline=deadline,
            seconds=seconds,
            key="ipfs_request_timeout",
        ) as resp:
            await self._read_all(resp, deadline, "extracting IPFS headers", path, seconds, "ipfs_request_timeout")
            return {k: v for k, v in resp.headers.items() if k.lower() in wanted}

    # ------------------------------------------------------------------ pins

    async def pin_ls_cid(self, cid: CID, max_depth: int = -1) -> IPFSPinStatus:
        """Pin status of one CID, asking for the type its max_depth needs (-1→recursive, 0→direct)."""
        ptype = "direct" if max_depth == 0 else "recursive"
        path = f"pin/ls?stream=true&arg={cid}&type={ptype}"
        seconds = self.ipfs_request_timeout
        deadline = _deadline(seconds)
        action = f"getting pin status of {cid}"
        try:
            async with self._ndjson(
                path, action=action, seconds=seconds, key="ipfs_request_timeout", deadline=lambda: deadline
            ) as lines:
                async for line in lines:
                    entry = _decode(_pin_ls_dec, line, path)
                    _raise_inline(entry.Message, entry.Type, path)
                    try:
                        got = CID.decode(entry.Cid)
                    except InvalidCID:
                        raise IPFSError(path, 200, f"invalid CID in answer: {entry.Cid!r}") from None
                    if got.multihash != cid.multihash:
                        raise IPFSError(path, 200, f"expected {cid} in the answer, got {entry.Cid}")
                    return IPFSPinStatus.from_string(entry.Type)
        except IPFSError as exc:
            if exc.message.rstrip().endswith("not pinned"):
                return IPFSPinStatus.UNPINNED
            raise
        raise IPFSError(path, 200, f"expected the status of {cid}, got an empty answer")

    async def pin(
        self,
        cid: CID,
        max_depth: int = -1,
        *,
        pin_update: CID | None = None,
        origins: Sequence[Multiaddr] = (),
        progress_cb: ProgressCallback | None = None,
    ) -> None:
        """Pin ``cid`` (spec §8): skip if already pinned as required; follow progress; time out when stuck.

        With ``origins``, the node is asked (in the background) to connect to up to 10 of them first. With
        ``pin_update`` pinned recursively, ``pin/update`` replaces it (the old pin is kept).
        """
        status = await self.pin_ls_cid(cid, max_depth)
        if status.is_pinned(max_depth):
            logger.debug("IPFS object is already pinned: %s", cid)
            return
        try:
            for addr in list(origins)[:_MAX_ORIGINS]:
                self._spawn(self._connect_quietly(addr))
            if pin_update is not None:
                from_status = await self.pin_ls_cid(pin_update, -1)
                if from_status.is_pinned(-1):
                    await self._pin_update(pin_update, cid)
                    self.pin_count += 1
                    return
            await self._pin_add(cid, max_depth, progress_cb)
            self.pin_count += 1
            logger.info("IPFS Pin request succeeded: %s", cid)
        finally:
            self._informer_tick()

    async def _pin_update(self, from_cid: CID, to_cid: CID) -> None:
        # pin/update reports no progress; bound it like the other long DAG walk (unpin_timeout).
        path = f"pin/update?arg={from_cid}&arg={to_cid}&unpin=false"
        await self._post_json(
            path, action=f"updating pin {from_cid} to {to_cid}", seconds=self.unpin_timeout, key="unpin_timeout"
        )

    async def _pin_add(self, cid: CID, max_depth: int, progress_cb: ProgressCallback | None) -> None:
        args = "&".join(f"{k}={v}" for k, v in pin_mode_args(max_depth).items())
        path = f"pin/add?arg={cid}&{args}&progress=true"
        seconds = self.pin_timeout
        deadline = _deadline(seconds)
        action = f"pinning {cid}"
        last = 0
        confirmed = False

        def current_deadline() -> float | None:
            return deadline

        try:
            async with self._ndjson(
                path, action=action, seconds=seconds, key="pin_timeout", deadline=current_deadline
            ) as lines:
                async for line in lines:
                    msg = _decode(_progress_dec, line, path)
                    _raise_inline(msg.Message, msg.Type, path, msg.Code)
                    if msg.Progress is not None and msg.Progress > last:
                        last = msg.Progress
                        deadline = _deadline(seconds)
                        if progress_cb is not None:
                            progress_cb(last)
                    if msg.Pins is not None:
                        confirmed = True
        except Timeout:
            logger.error("pin timeout. No progress for %s: %s", _fmt_seconds(seconds), cid)
            raise Timeout(
                f"ipfshttp: error pinning {cid}: no progress for {_fmt_seconds(seconds)} (pin_timeout) after "
                f"{last} blocks; the content may be unreachable from {self.node_multiaddress}"
            ) from None
        if not confirmed:
            # kubo puts late errors only in the X-Stream-Error trailer: check what actually happened.
            status = await self.pin_ls_cid(cid, max_depth)
            if not status.is_pinned(max_depth):
                raise IPFSError(
                    path,
                    200,
                    "kubo ended the pin/add stream without confirming the pin (its error is in the "
                    "X-Stream-Error trailer; see the IPFS daemon's log)",
                )

    async def _connect_quietly(self, addr: Multiaddr) -> None:
        try:
            await self._swarm_connect(addr, _deadline(self.ipfs_request_timeout))
        except PinclusterError as exc:
            logger.debug("ipfshttp: swarm/connect to origin %s failed: %s", addr, exc)

    async def unpin(self, cid: CID) -> None:
        """``pin/rm``; "not pinned or pinned indirectly" counts as success (spec §8)."""
        if self.unpin_disable:
            raise UnpinDisabled()
        path = f"pin/rm?arg={cid}"
        try:
            await self._post_json(path, action=f"unpinning {cid}", seconds=self.unpin_timeout, key="unpin_timeout")
        except IPFSError as exc:
            if "not pinned or pinned indirectly" not in exc.message:
                raise
            logger.debug("IPFS object is already unpinned: %s", cid)
        else:
            self.pin_count = max(self.pin_count - 1, 0)
            logger.info("IPFS Unpin request succeeded: %s", cid)
        finally:
            self._informer_tick()

    async def pin_ls(self, types: Sequence[str] = ("recursive", "direct")) -> AsyncIterator[tuple[CID, IPFSPinStatus]]:
        """Stream the node's pins, one ``pin/ls?stream=true&type=…`` per type.

        Both ``recursive`` and ``direct`` are listed by default: Go stops after the first type (QUIRK §8),
        which makes direct pins look unexpectedly unpinned. ``ipfs_request_timeout`` bounds each wait for
        the node (an idle timeout), not the whole listing, so a slow consumer of a huge pinset is not cut off.
        """
        if isinstance(types, str):
            types = (types,)
        for t in types:
            if t not in _PIN_LS_TYPES:
                raise InvalidInput(f"invalid pin type filter {t!r}: use recursive, direct, indirect or all")
        seconds = self.ipfs_request_timeout
        for t in types:
            path = f"pin/ls?stream=true&type={t}"
            action = "listing IPFS pins"
            async with self._ndjson(
                path, action=action, seconds=seconds, key="ipfs_request_timeout", deadline=lambda: _deadline(seconds)
            ) as lines:
                statuses: dict[str | None, IPFSPinStatus] = {}  # a listing repeats one or two type names
                async for line in lines:
                    entry = _decode(_pin_ls_dec, line, path)
                    _raise_inline(entry.Message, entry.Type, path)
                    try:
                        cid = _listed_cid(entry.Cid)
                    except InvalidCID as exc:
                        raise IPFSError(path, 200, f"error decoding ipfs pin: {exc}") from None
                    st = statuses.get(entry.Type)
                    if st is None:
                        st = statuses[entry.Type] = IPFSPinStatus.from_string(entry.Type)
                    yield cid, st

    def pins_generation(self) -> int | None:
        """The attached pin store's change counter (None over HTTP: kubo has none)."""
        return None if self._local_pins is None else self._local_pins.generation

    async def pin_pages(self, types: Sequence[str] = ("recursive", "direct")) -> AsyncIterator[PinPage]:
        """``pin_ls`` as pages of binary CIDs; from the in-process node's pin store when one is attached
        (``read_pins_from``), which holds what its ``pin/ls`` answers from."""
        local = self._local_pins
        if local is None or any(t not in ("recursive", "direct") for t in types):
            async for page in pages_of(self.pin_ls(types)):
                yield page
            return
        for t in types:
            status = IPFSPinStatus.from_string(t)
            try:
                async for keys in local.key_pages(t):
                    yield status, keys
            except PinclusterError:
                raise
            except Exception as exc:  # the store's own failure, as the API would have answered it
                raise IPFSError(f"pin/ls?type={t}", 500, str(exc)) from exc

    # ------------------------------------------------------------------ swarm

    async def swarm_peers(self) -> list[PeerID]:
        data = await self._post_json(
            "swarm/peers",
            action="getting swarm peers",
            seconds=self.ipfs_request_timeout,
            key="ipfs_request_timeout",
        )
        out: list[PeerID] = []
        peers = data.get("Peers") if isinstance(data, dict) else None
        for item in peers or ():
            text = item.get("Peer", "") if isinstance(item, dict) else ""
            try:
                out.append(PeerID.decode(str(text)))
            except InvalidInput as exc:
                logger.warning("ipfshttp: skipping swarm peer with invalid ID %r: %s", text, exc)
        return out

    async def _swarm_connect(self, addr: Multiaddr, deadline: float | None) -> None:
        seconds = self.ipfs_request_timeout
        path = f"swarm/connect?arg={_q(str(addr))}"
        action = f"connecting IPFS swarm to {addr}"
        async with self._open(
            path, action=action, deadline=deadline, seconds=seconds, key="ipfs_request_timeout"
        ) as resp:
            await self._read_all(resp, deadline, action, path, seconds, "ipfs_request_timeout")

    async def connect_swarms(self, addrs: Iterable[Multiaddr]) -> int:
        """Best effort ``swarm/connect`` to each address; returns how many succeeded.

        All connects share one ``ipfs_request_timeout`` deadline, as in Go.
        """
        deadline = _deadline(self.ipfs_request_timeout)
        ok = 0
        for addr in addrs:
            try:
                await self._swarm_connect(addr, deadline)
            except Timeout as exc:
                logger.debug("%s", exc)
                break
            except PinclusterError as exc:
                logger.debug("ipfshttp: %s", exc)
                continue
            logger.debug("ipfs successfully connected to %s", addr)
            ok += 1
        return ok

    async def connect_swarms_when_ready(self, addrs: Callable[[], Awaitable[Iterable[Multiaddr]]]) -> int:
        """Wait for IPFS, then ``connect_swarms_delay``, then connect to the addresses ``addrs()`` gives.

        The cluster runs this once as a background task (spec §13.8); a delay of 0 disables it.
        """
        await self.wait_ready()
        if self.connect_swarms_delay <= 0:
            return 0
        await asyncio.sleep(self.connect_swarms_delay)
        return await self.connect_swarms(await addrs())

    # ------------------------------------------------------------------ config and repo

    async def config_key(self, keypath: str) -> Any:
        """A value of the node's config by slash path, e.g. ``Datastore/StorageMax``."""
        parts = keypath.split("/")
        if not keypath or any(not p for p in parts):
            raise InvalidInput(f"invalid IPFS config key path {keypath!r}: use e.g. 'Datastore/StorageMax'")
        cfg = await self._post_json(
            "config/show",
            action="reading IPFS config",
            seconds=self.ipfs_request_timeout,
            key="ipfs_request_timeout",
        )
        value: Any = cfg
        for i, part in enumerate(parts):
            if not isinstance(value, dict):
                raise InvalidInput(f"invalid IPFS config key path {keypath!r}: {'/'.join(parts[:i])} is not a map")
            if part not in value:
                raise NotFound(f"key {keypath!r} not found in the IPFS configuration")
            value = value[part]
        return value

    async def repo_stat(self) -> IPFSRepoStat:
        data = await self._post_json(
            "repo/stat?size-only=true",
            action="getting IPFS repo stats",
            seconds=self.ipfs_request_timeout,
            key="ipfs_request_timeout",
        )
        try:
            return IPFSRepoStat(repo_size=int(data["RepoSize"]), storage_max=int(data["StorageMax"]))
        except (TypeError, KeyError, ValueError):
            raise IPFSError("repo/stat?size-only=true", 200, f"unexpected answer: {data!r}") from None

    async def free_space(self) -> int:
        """StorageMax − RepoSize (the ``freespace`` informer's value)."""
        stat = await self.repo_stat()
        return max(stat.storage_max - stat.repo_size, 0)

    async def repo_size(self) -> int:
        """RepoSize (the ``reposize`` informer's value)."""
        return (await self.repo_stat()).repo_size

    async def repo_gc(self) -> AsyncIterator[IPFSRepoGC]:
        """Stream ``repo/gc?stream-errors=true``: each removed block, or an error line. Bounded by repogc_timeout."""
        path = "repo/gc?stream-errors=true"
        action = "running IPFS repo GC"
        seconds = self.repogc_timeout
        deadline = _deadline(seconds)
        async with self._ndjson(
            path, action=action, seconds=seconds, key="repogc_timeout", deadline=lambda: deadline
        ) as lines:
            async for line in lines:
                entry = _decode(_gc_dec, line, path)
                _raise_inline(entry.Message, entry.Type, path)
                key: CID | None = None
                error = entry.Error
                text = (entry.Key or {}).get("/")
                if text:
                    try:
                        key = CID.decode(text)
                    except InvalidCID as exc:
                        error = error or f"invalid CID in repo/gc answer: {exc}"
                yield IPFSRepoGC(key=key, error=error)

    async def resolve(self, path: str) -> CID:
        """The root CID an IPFS path resolves to; ``/ipfs/<cid>`` and bare CIDs are answered locally."""
        text = path.strip()
        if not text.startswith("/"):
            text = "/ipfs/" + text
        segments = [s for s in text.split("/") if s]
        if len(segments) < 2 or segments[0] not in ("ipfs", "ipns", "ipld"):
            raise InvalidInput(f"invalid IPFS path {path!r}: expected /ipfs/<cid>[/…], /ipns/<name>[/…] or a CID")
        if segments[0] in ("ipfs", "ipld"):
            root = CID.decode(segments[1])  # raises InvalidCID (InvalidInput) naming the input
            if len(segments) == 2:
                return root
        req = f"resolve?arg={_q('/' + '/'.join(segments))}"
        data = await self._post_json(
            req, action=f"resolving {path}", seconds=self.ipfs_request_timeout, key="ipfs_request_timeout"
        )
        resolved = data.get("Path", "") if isinstance(data, dict) else ""
        parts = [s for s in str(resolved).split("/") if s]
        if len(parts) < 2 or parts[0] not in ("ipfs", "ipld"):
            raise IPFSError(req, 200, f"unexpected resolve answer: {data!r}")
        return CID.decode(parts[1])

    # ------------------------------------------------------------------ blocks

    async def block_get(self, cid: CID) -> bytes:
        path = f"block/get?arg={cid}"
        seconds = self.ipfs_request_timeout
        action = f"getting block {cid}"
        deadline = _deadline(seconds)
        async with self._open(path, action=action, deadline=deadline, seconds=seconds, key="ipfs_request_timeout") as r:
            return await self._read_all(r, deadline, action, path, seconds, "ipfs_request_timeout")

    async def block_put(self, data: bytes, *, codec: str = "raw", mhtype: str = "sha2-256") -> CID:
        """Store one block; kubo hashes it and returns its CID (always CIDv1)."""
        if codec not in _NAME_TO_CODEC:
            raise InvalidInput(f"unknown block codec {codec!r}: use one of {', '.join(sorted(_NAME_TO_CODEC))}")
        if mhtype not in _NAME_TO_MH:
            raise InvalidInput(f"unknown multihash type {mhtype!r}: use one of {', '.join(sorted(_NAME_TO_MH))}")
        path = f"block/put?cid-codec={codec}&mhtype={mhtype}&pin=false&allow-big-block=true"
        boundary = secrets.token_hex(16)

        async def body() -> AsyncIterator[bytes]:
            yield _part_header(boundary, "block", first=True)
            yield data
            yield f"\r\n--{boundary}--\r\n".encode()

        seconds = self.ipfs_request_timeout
        deadline = _deadline(seconds)
        action = "putting a block"
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        async with self._ndjson(
            path,
            action=action,
            seconds=seconds,
            key="ipfs_request_timeout",
            deadline=lambda: deadline,
            data=body(),
            headers=headers,
        ) as lines:
            async for line in lines:
                entry = _decode(_block_put_dec, line, path)
                _raise_inline(entry.Message, entry.Type, path, entry.Code)
                try:
                    return CID.decode(entry.Key)
                except InvalidCID:
                    raise IPFSError(path, 200, f"invalid CID in answer: {entry.Key!r}") from None
        raise IPFSError(path, 200, "block/put answered without a CID")

    async def block_stream(self, blocks: AsyncIterable[tuple[CID, bytes]]) -> int:
        """Send many blocks in one streamed multipart ``block/put`` (the adder's path); returns the count.

        Codec and hash come from the first block (spec §8). Each block must be acknowledged by kubo with
        the same multihash, in order; a missing acknowledgement (a late error kubo only reports in a
        trailer) or a mismatch raises ``IPFSError``. Only unacknowledged blocks' hashes are held.
        """
        it = aiter(blocks)
        try:
            first_cid, first_data = await anext(it)
        except StopAsyncIteration:
            return 0
        codec = CODEC_NAMES.get(first_cid.codec)
        mh_code, digest = multihash_decode(first_cid.multihash)
        mhtype = MULTIHASH_NAMES.get(mh_code)
        if codec is None or mhtype is None:
            raise InvalidInput(
                f"block {first_cid}: codec 0x{first_cid.codec:x} / multihash 0x{mh_code:x} is not supported by "
                "block/put"
            )
        path = f"block/put?cid-codec={codec}&mhtype={mhtype}&mhlen={len(digest)}&pin=false&allow-big-block=true"
        boundary = secrets.token_hex(16)
        pending: collections.deque[CID] = collections.deque()
        sent = 0
        send_error: list[BaseException] = []

        async def body() -> AsyncIterator[bytes]:
            nonlocal sent
            cid, data = first_cid, first_data
            try:
                while True:
                    pending.append(cid)
                    sent += 1
                    yield _part_header(boundary, str(cid), first=sent == 1)
                    yield data
                    try:
                        cid, data = await anext(it)
                    except StopAsyncIteration:
                        break
                yield f"\r\n--{boundary}--\r\n".encode()
            except Exception as exc:  # the adder failed: remember why, and cut the request
                send_error.append(exc)
                raise

        seconds = self.ipfs_request_timeout
        action = "streaming blocks to IPFS"
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        acked = 0
        try:
            async with self._ndjson(
                path,
                action=action,
                seconds=seconds,
                key="ipfs_request_timeout",
                deadline=lambda: _deadline(seconds),
                upload=True,
                data=body(),
                headers=headers,
            ) as lines:
                async for line in lines:
                    entry = _decode(_block_put_dec, line, path)
                    _raise_inline(entry.Message, entry.Type, path, entry.Code)
                    try:
                        got = CID.decode(entry.Key)
                    except InvalidCID:
                        raise IPFSError(path, 200, f"invalid CID in answer: {entry.Key!r}") from None
                    expected = pending.popleft() if pending else None
                    if expected is None or expected.multihash != got.multihash:
                        logger.warning(
                            "blockPut response CID (%s) does not match the multihash of any blocks sent", got
                        )
                        raise IPFSError(path, 200, f"kubo stored {got}, expected {expected}")
                    acked += 1
        except (Unavailable, IPFSError):
            if send_error:
                raise send_error[0] from None
            raise
        if send_error:
            raise send_error[0]
        if acked != sent:
            raise IPFSError(
                path,
                200,
                f"kubo acknowledged {acked} of {sent} blocks (its error is in the X-Stream-Error trailer; "
                "see the IPFS daemon's log)",
            )
        self._informer_tick()
        return sent


# ---------------------------------------------------------------------- helpers


def _part_header(boundary: str, name: str, *, first: bool) -> bytes:
    """One multipart part header, as Go's ``files.MultiFileReader`` writes it (filename = the CID)."""
    lead = "" if first else "\r\n"
    return (
        f"{lead}--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{_q(name)}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()


_T = TypeVar("_T")


def _listed_cid(text: str) -> CID:
    """``CID.decode`` for a pin listing: a CIDv0 (``Qm…``, 46 characters) only needs its base58 decoded and
    the sha2-256 multihash header checked, which is most of a big listing; anything else goes the full way."""
    if len(text) == 46 and text.startswith("Qm"):
        raw = b58decode(text)
        if len(raw) == 34 and raw[0] == 0x12 and raw[1] == 0x20:
            return CID(raw)
    return CID.decode(text)


def _decode(dec: msgspec.json.Decoder[_T], line: bytes, path: str) -> _T:
    try:
        return dec.decode(line)
    except msgspec.DecodeError as exc:
        raise IPFSError(path, 200, f"unparsable answer line {line[:200]!r}: {exc}") from None


def _raise_inline(message: str | None, type_: str | None, path: str, code: int = 0) -> None:
    """An error object inside a stream (``{"Message","Code","Type":"error"}``) ends the call."""
    if type_ == "error" and message is not None:
        raise IPFSError(path, 200, message, code)


def _kubo_error(path: str, status: int, body: bytes) -> IPFSError:
    cls = IPFSBadRequest if status == 400 else IPFSError
    try:
        err = _error_dec.decode(body)
    except msgspec.DecodeError:
        text = body.decode("utf-8", "replace").strip()
        return cls(path, status, text, parsed=False)
    return cls(path, status, err.Message, err.Code)


def _describe_transport_error(exc: BaseException) -> str:
    """A short cause like Go's (``connection refused``, ``no such host``…) for an aiohttp/OS error."""
    os_err: OSError | None = None
    if isinstance(exc, aiohttp.ClientConnectorError):
        os_err = exc.os_error
    elif isinstance(exc, OSError):
        os_err = exc
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"cannot resolve host: {exc.os_error}"
    if os_err is not None and os_err.errno:
        if os_err.errno == errno.ECONNREFUSED:
            return "connection refused"
        if os_err.errno == errno.ENOENT:
            return "no such socket file"
        return os.strerror(os_err.errno).lower()
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the IPFS daemon closed the connection"
    text = str(exc)
    return text or type(exc).__name__


if TYPE_CHECKING:  # mypy proves the client satisfies the protocol the cluster depends on
    _protocol_check: IPFSConnector = IPFSHTTPConnector()
