"""Chunkers: turn a stream of arbitrary-sized byte pieces into the chunks that become leaves.

kubo's three chunkers are implemented and cross-checked against kubo: ``size-N`` (default ``size-262144``),
``buzhash`` (``buzhash.py``) and ``rabin`` (``rabin.py``). A content-defined chunker must cut exactly where
kubo cuts, or the CIDs silently differ (see docs/ipfs-storage.md).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

from pincluster.errors import InvalidInput

DEFAULT_CHUNK_SIZE = 262144
#: kubo 0.42 (boxo ``ChunkSizeLimit``): 2 MiB minus 256 bytes of block overhead. kubo 0.22 allowed 1 MiB.
MAX_CHUNK_SIZE = 2 * 1024 * 1024 - 256


def _int(text: str, what: str) -> int:
    try:
        return int(text, 10)
    except ValueError:
        raise InvalidInput(f"chunker: {what} {text!r} is not an integer") from None


@dataclass(frozen=True, slots=True)
class ChunkerSpec:
    """A parsed ``--chunker`` value: ``size`` (``size``), ``buzhash``, or ``rabin`` (``min``/``avg``/``max``)."""

    kind: str
    size: int = 0
    min: int = 0
    avg: int = 0
    max: int = 0

    @classmethod
    def parse(cls, text: str) -> ChunkerSpec:
        """Parse kubo's chunker syntax (``size-N``, ``buzhash``, ``rabin``, ``rabin-AVG``,
        ``rabin-MIN-AVG-MAX``), with kubo's limits and error texts."""
        text = (text or "").strip()
        if text in ("", "default"):
            return cls("size", DEFAULT_CHUNK_SIZE)
        name = text.split("-", 1)[0]
        parts = text.split("-")
        if name == "size":
            if len(parts) != 2:
                raise InvalidInput("incorrect chunker string format (expected size-{size})")
            size = _int(parts[1], "size")
            if size <= 0:
                raise InvalidInput("chunker size must be greater than 0")
            if size > MAX_CHUNK_SIZE:
                raise InvalidInput(f"chunker parameters may not exceed the maximum chunk size of {MAX_CHUNK_SIZE}")
            return cls("size", size)
        if name == "buzhash":
            return cls("buzhash")
        if name == "rabin":
            if len(parts) == 1:
                avg = DEFAULT_CHUNK_SIZE
                return cls("rabin", min=avg // 3, avg=avg, max=avg + avg // 2)
            if len(parts) == 2:
                avg = _int(parts[1], "rabin size")
                if int(avg * 1.5) > MAX_CHUNK_SIZE:
                    raise InvalidInput(
                        f"chunker parameters may not exceed the maximum chunk size of {MAX_CHUNK_SIZE}")
                if avg // 3 < 16:
                    raise InvalidInput("rabin min must be greater than 16")
                return cls("rabin", min=avg // 3, avg=avg, max=avg + avg // 2)
            if len(parts) == 4:
                vals = []
                for label, part in zip(("min", "avg", "max"), parts[1:], strict=True):
                    sub = part.split(":")
                    if len(sub) > 1 and sub[0] != label:
                        raise InvalidInput(f"chunker {text!r}: label must be {label}")
                    vals.append(_int(sub[-1], f"rabin {label}"))
                mn, avg, mx = vals
                if mn < 16:
                    raise InvalidInput("rabin min must be greater than 16")
                if mn >= avg:
                    raise InvalidInput("incorrect format: rabin-min must be smaller than rabin-avg")
                if avg >= mx:
                    raise InvalidInput("incorrect format: rabin-avg must be smaller than rabin-max")
                if mx > MAX_CHUNK_SIZE:
                    raise InvalidInput(
                        f"chunker parameters may not exceed the maximum chunk size of {MAX_CHUNK_SIZE}")
                return cls("rabin", min=mn, avg=avg, max=mx)
            raise InvalidInput("incorrect format (expected 'rabin' 'rabin-[avg]' or 'rabin-[min]-[avg]-[max]'")
        raise InvalidInput(f"unrecognized chunker option: {text}")


async def size_chunks(source: AsyncIterable[bytes], size: int) -> AsyncIterator[bytes]:
    """Fixed-size chunks of ``size`` bytes (the last may be shorter); an empty input yields nothing.

    Memory holds at most one chunk plus one input piece. Pieces of exactly ``size`` bytes (a reader that
    reads chunk-sized, as kubo's splitter does) pass through without a copy; larger pieces are cut with one
    copy per chunk and only their remainder is buffered.
    """
    buf = bytearray()
    async for piece in source:
        if not piece:
            continue
        if buf:
            need = size - len(buf)
            if len(piece) < need:
                buf += piece
                continue
            buf += piece[:need]
            yield bytes(buf)
            buf.clear()
            piece = piece[need:]
        n = len(piece)
        if n == size:
            yield bytes(piece)
            continue
        pos = 0
        if n >= size:
            mv = memoryview(piece)
            while n - pos >= size:
                yield bytes(mv[pos : pos + size])
                pos += size
            mv.release()
        if pos < n:
            buf += piece[pos:]
    if buf:
        yield bytes(buf)


def chunk_stream(source: AsyncIterable[bytes], spec: ChunkerSpec) -> AsyncIterator[bytes]:
    """The chunk iterator for ``spec``."""
    if spec.kind == "buzhash":
        from pincluster.ipfs.unixfs.buzhash import buzhash_chunks

        return buzhash_chunks(source)
    if spec.kind == "rabin":
        from pincluster.ipfs.unixfs.rabin import rabin_chunks

        return rabin_chunks(source, spec.min, spec.avg, spec.max)
    return size_chunks(source, spec.size)
