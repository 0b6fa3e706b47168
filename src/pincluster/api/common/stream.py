"""NDJSON streaming responses with the ``X-Stream-Error`` trailer (spec §1.4, §1.9).

aiohttp cannot send HTTP trailers, so once the headers are out this module writes the chunked framing itself
(``writer.chunked = False`` after ``prepare``; the ``Transfer-Encoding: chunked`` header aiohttp chose stays)
and ends the body with ``0\\r\\nX-Stream-Error: …\\r\\n\\r\\n``.

Items come from an async iterator run in a producer task that appends them to a bounded buffer; the writer
takes everything ready at once and sends it in chunks of about ``batch_bytes``, so fast producers get batched
writes and slow ones are flushed line by line, as soon as each item exists. The buffer is a list swapped out
whole (an ``asyncio.Queue`` costs a put and a get per item), and the default encoder writes a whole batch
through ``to_json_lines`` (one bytes object per chunk).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from typing import Any, Final

from aiohttp import web
from aiohttp.http_writer import StreamWriter

from pincluster.api.common.errors import JSON_CT, error_response, status_for
from pincluster.types.codec import to_json, to_json_lines
from pincluster.types.models import Pin
from pincluster.types.status import PinMode, PinType

__all__ = ["TRAILER", "ErrorSink", "stream_ndjson", "trailer_bytes"]

log = logging.getLogger("pincluster.restapi")

TRAILER: Final = "X-Stream-Error"
_DONE: Final = object()


class ErrorSink:
    """Errors a producer reports without stopping (e.g. one CID of ``/pins?cids=`` failed)."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def add(self, err: BaseException | str) -> None:
        self.errors.append(str(err) or type(err).__name__)


def _clean(text: str) -> str:
    """A header value cannot hold line breaks."""
    return " ".join(text.replace("\r", " ").split("\n"))


def trailer_bytes(errors: list[str], always: bool = True) -> bytes:
    """The last chunk plus the ``X-Stream-Error`` trailer (one line per error; one empty line when none)."""
    lines = [f"{TRAILER}: {_clean(e)}\r\n" for e in errors]
    if not lines and always:
        lines = [f"{TRAILER}: \r\n"]
    return b"0\r\n" + "".join(lines).encode("utf-8") + b"\r\n"


class _Buffer:
    """Items from the producer task to the writer, at most ``limit`` pending, and for byte chunks at most
    ``limit_bytes`` (then the producer waits). A merged listing's chunk is a page of ~1 MB, produced faster
    than most clients read: bounded by count alone, the chunks waiting would hold tens of MB."""

    __slots__ = ("items", "limit", "limit_bytes", "ready", "size", "space")

    def __init__(self, limit: int, limit_bytes: int = 1 << 62) -> None:
        self.items: list[Any] = []
        self.limit = max(1, limit)
        self.limit_bytes = limit_bytes
        self.size = 0  # bytes of the pending byte chunks
        self.ready = asyncio.Event()
        self.space = asyncio.Event()
        self.space.set()

    async def take(self) -> list[Any]:
        """Everything pending (at least one item; a ``_DONE``/``_Failure`` marker can only be last)."""
        while not self.items:
            self.ready.clear()
            await self.ready.wait()
        items, self.items, self.size = self.items, [], 0
        self.space.set()
        return items


async def _produce(source: AsyncIterator[Any], buf: _Buffer) -> None:
    ready, space, limit, limit_bytes = buf.ready, buf.space, buf.limit, buf.limit_bytes
    try:
        async for item in source:
            buf.items.append(item)
            if type(item) is bytes:
                buf.size += len(item)
            ready.set()
            if len(buf.items) >= limit or buf.size >= limit_bytes:
                space.clear()
                await space.wait()
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # reported to the client, in the body or the trailer
        buf.items.append(_Failure(exc))
        ready.set()
        return
    buf.items.append(_DONE)
    ready.set()


class _Failure:
    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


async def stream_ndjson(
    request: web.Request,
    source: AsyncIterator[Any],
    *,
    sink: ErrorSink | None = None,
    encode: Callable[[Any], bytes] = to_json,
    immediate: bool = False,
    always_trailer: bool = True,
    extra_headers: dict[str, str] | None = None,
    force_close: bool = False,
    batch_bytes: int = 64 * 1024,
    queue_size: int = 256,
    preencoded: bool = False,
    queue_bytes: int = 2 << 20,
) -> web.StreamResponse:
    """Stream ``source`` as NDJSON.

    Default (REST listings): an error before the first item → its error response (500 for cluster errors);
    no items → 204 (or 500 if ``sink`` got errors); else 200, lines, then the trailer, empty when all went
    well. ``immediate`` (``/add``): 200 goes out at once, errors only ever reach the trailer, and with
    ``always_trailer=False`` the trailer is only written when there is an error. ``preencoded``: the items
    are already NDJSON chunks (bytes of whole lines, never empty), written as they are; ``queue_size`` then
    counts chunks, and ``queue_bytes`` bounds their bytes waiting for the client.
    """
    sink = sink or ErrorSink()
    buf = _Buffer(queue_size, queue_bytes)
    producer = asyncio.create_task(_produce(source, buf))
    resp: web.StreamResponse | None = None
    try:
        pending: list[Any] = [] if immediate else await buf.take()
        if not immediate:
            first = pending[0]
            if isinstance(first, _Failure):
                return error_response(status_for(first.exc), str(first.exc))
            if first is _DONE:
                if sink.errors:
                    return error_response(500, ", ".join(sink.errors))
                return web.Response(status=204)
        resp = web.StreamResponse(status=200)
        resp.content_type = JSON_CT
        resp.headers["Trailer"] = TRAILER
        for k, v in (extra_headers or {}).items():
            resp.headers[k] = v
        if force_close:
            resp.force_close()
        writer = await resp.prepare(request)
        framed = isinstance(writer, StreamWriter) and writer.chunked
        if framed:
            assert isinstance(writer, StreamWriter)
            writer.chunked = False  # we write the chunk framing, so that we can end with a trailer
        if immediate and isinstance(writer, StreamWriter):
            writer.send_headers()  # /add: the client sees 200 at once, while it is still uploading
        try:
            await _pump(request, resp, buf, sink, _joined if preencoded else _lines_of(encode), framed,
                        always_trailer, batch_bytes, pending)
        except ConnectionError as exc:  # the client went away: stop producing, nothing left to tell it
            log.debug("client of %s %s disconnected: %s", request.method, request.path, exc)
        return resp
    finally:
        if not producer.done():
            producer.cancel()
            with contextlib.suppress(BaseException):
                await producer


def _lines_of(encode: Callable[[Any], bytes]) -> Callable[[Sequence[Any]], bytes]:
    if encode is to_json:
        return to_json_lines

    def lines(items: Sequence[Any]) -> bytes:
        return b"".join([encode(item) + b"\n" for item in items])

    return lines


def _joined(chunks: Sequence[Any]) -> bytes:
    """Pre-encoded NDJSON chunks, as one."""
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


#: Chunks up to this size get their chunked-encoding framing in the same buffer (one write); larger ones are
#: written in three parts rather than copied (a merged listing's page is ~1 MB).
_COPY_MAX: Final = 1 << 16
_ENCODE_SLICE: Final = 64  # items encoded at a time, so that a chunk stops near batch_bytes


async def _pump(request: web.Request, resp: web.StreamResponse, buf: _Buffer, sink: ErrorSink,
                lines: Callable[[Sequence[Any]], bytes], framed: bool, always_trailer: bool, batch_bytes: int,
                pending: list[Any]) -> None:
    """Write items as they come (batching what is already pending), then the trailer."""
    errors: list[str] = []
    slice_items = 1 if lines is _joined else _ENCODE_SLICE
    while True:
        end: Any = None
        if pending and (pending[-1] is _DONE or isinstance(pending[-1], _Failure)):
            end = pending.pop()
        start, n = 0, len(pending)
        while start < n:
            parts: list[bytes] = []
            size = 0
            while start < n and size < batch_bytes:
                part = lines(pending[start : start + slice_items])
                start += slice_items
                parts.append(part)
                size += len(part)
            data = parts[0] if len(parts) == 1 else b"".join(parts)
            if framed and len(data) > _COPY_MAX:  # a large chunk is not copied to add its framing
                await resp.write(b"%x\r\n" % len(data))
                await resp.write(data)
                await resp.write(b"\r\n")
            elif framed:  # a small one goes in one write (one system call)
                await resp.write(b"%x\r\n%b\r\n" % (len(data), data))
            else:
                await resp.write(data)
        if end is _DONE:
            break
        if isinstance(end, _Failure):
            errors.append(str(end.exc) or type(end.exc).__name__)
            log.warning("stream %s %s ended with an error: %s", request.method, request.path, end.exc)
            break
        pending = await buf.take()
    errors = sink.errors + errors
    if framed and (always_trailer or errors):
        await resp.write(trailer_bytes(errors, always=True))
    elif framed:
        await resp.write(b"0\r\n\r\n")
    await resp.write_eof()


async def ndjson_chunks(items: AsyncIterable[Any], per_chunk: int = 256) -> AsyncIterator[bytes]:
    """Objects as NDJSON chunks (``to_json`` lines), for a ``ClusterAPI`` that has no cheaper writer of its
    listings. A failure mid-way first gives out the lines made before it, as a per-item stream would."""
    batch: list[Any] = []
    try:
        async for obj in items:
            batch.append(obj)
            if len(batch) >= per_chunk:
                yield to_json_lines(batch)
                batch = []
    except Exception:
        if batch:
            yield to_json_lines(batch)
        raise
    if batch:
        yield to_json_lines(batch)


async def pin_mode_pages(pins: AsyncIterable[Pin], per_page: int = 1000) -> AsyncIterator[list[tuple[str, PinMode]]]:
    """``ClusterAPI.pin_modes`` from a pinset's Pins, for a ``ClusterAPI`` without a cheaper reader."""
    page: list[tuple[str, PinMode]] = []
    async for pin in pins:
        if pin.type is PinType.META:
            continue
        page.append((str(pin.cid), pin.mode))
        if len(page) >= per_page:
            yield page
            page = []
    if page:
        yield page
