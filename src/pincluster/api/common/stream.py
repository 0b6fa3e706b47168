"""NDJSON streaming responses with the ``X-Stream-Error`` trailer (spec §1.4, §1.9).

aiohttp cannot send HTTP trailers, so once the headers are out this module writes the chunked framing itself
(``writer.chunked = False`` after ``prepare``; the ``Transfer-Encoding: chunked`` header aiohttp chose stays)
and ends the body with ``0\\r\\nX-Stream-Error: …\\r\\n\\r\\n``.

Items come from an async iterator run in a producer task feeding a bounded queue: the writer sends whatever is
ready in one chunk (up to ``batch_bytes``), so fast producers get batched writes and slow ones are flushed
line by line, as soon as each item exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, Final

from aiohttp import web
from aiohttp.http_writer import StreamWriter

from pincluster.api.common.errors import JSON_CT, error_response, status_for
from pincluster.types.codec import to_json

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


async def _produce(source: AsyncIterator[Any], queue: asyncio.Queue[Any]) -> None:
    try:
        async for item in source:
            await queue.put(item)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # reported to the client, in the body or the trailer
        await queue.put(_Failure(exc))
        return
    await queue.put(_DONE)


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
) -> web.StreamResponse:
    """Stream ``source`` as NDJSON.

    Default (REST listings): an error before the first item → its error response (500 for cluster errors);
    no items → 204 (or 500 if ``sink`` got errors); else 200, lines, then the trailer, empty when all went
    well. ``immediate`` (``/add``): 200 goes out at once, errors only ever reach the trailer, and with
    ``always_trailer=False`` the trailer is only written when there is an error.
    """
    sink = sink or ErrorSink()
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=queue_size)
    producer = asyncio.create_task(_produce(source, queue))
    resp: web.StreamResponse | None = None
    try:
        first: Any = _DONE if immediate else await queue.get()
        if not immediate:
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
            await _pump(request, resp, queue, sink, encode, framed, always_trailer, batch_bytes,
                        await queue.get() if immediate else first)
        except ConnectionError as exc:  # the client went away: stop producing, nothing left to tell it
            log.debug("client of %s %s disconnected: %s", request.method, request.path, exc)
        return resp
    finally:
        if not producer.done():
            producer.cancel()
            with contextlib.suppress(BaseException):
                await producer


async def _pump(request: web.Request, resp: web.StreamResponse, queue: asyncio.Queue[Any], sink: ErrorSink,
                encode: Callable[[Any], bytes], framed: bool, always_trailer: bool, batch_bytes: int,
                item: Any) -> None:
    """Write items as they come (batching what is already queued), then the trailer."""
    errors: list[str] = []
    while True:
        if item is _DONE:
            break
        if isinstance(item, _Failure):
            errors.append(str(item.exc) or type(item.exc).__name__)
            log.warning("stream %s %s ended with an error: %s", request.method, request.path, item.exc)
            break
        parts = [encode(item) + b"\n"]
        size = len(parts[0])
        end: Any = None
        while size < batch_bytes and not queue.empty():
            nxt = queue.get_nowait()
            if nxt is _DONE or isinstance(nxt, _Failure):
                end = nxt
                break
            line = encode(nxt) + b"\n"
            parts.append(line)
            size += len(line)
        data = b"".join(parts)
        if framed:
            await resp.write(b"%x\r\n%b\r\n" % (len(data), data))
        else:
            await resp.write(data)
        item = end if end is not None else await queue.get()
    errors = sink.errors + errors
    if framed and (always_trailer or errors):
        await resp.write(trailer_bytes(errors, always=True))
    elif framed:
        await resp.write(b"0\r\n\r\n")
    await resp.write_eof()
