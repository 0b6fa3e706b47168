"""Chunkers: turn a stream of arbitrary-sized byte pieces into the chunks that become leaves.

kubo's ``size-N`` chunker (default ``size-262144``) and ``buzhash`` (in ``buzhash.py``, cross-checked against
kubo) are implemented. ``rabin`` is rejected with a clear error: a content-defined chunker that does not cut
exactly where kubo cuts would silently produce CIDs that differ from kubo's (see docs/ipfs-storage.md).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

from pincluster.errors import InvalidInput

DEFAULT_CHUNK_SIZE = 262144
#: kubo refuses chunk sizes above 1 MiB (blocks must stay under bitswap's 2 MiB message limit).
MAX_CHUNK_SIZE = 1048576


@dataclass(frozen=True, slots=True)
class ChunkerSpec:
    """A parsed ``--chunker`` value."""

    kind: str
    size: int

    @classmethod
    def parse(cls, text: str) -> ChunkerSpec:
        """Parse kubo's chunker syntax: ``size-N`` (1 ≤ N ≤ 1 MiB) or ``buzhash``."""
        text = (text or "").strip()
        if text in ("", "default"):
            return cls("size", DEFAULT_CHUNK_SIZE)
        if text.startswith("size-"):
            raw = text[5:]
            try:
                size = int(raw, 10)
            except ValueError:
                raise InvalidInput(f"chunker {text!r}: size must be an integer, e.g. size-262144") from None
            if size <= 0:
                raise InvalidInput(f"chunker {text!r}: chunk size must be greater than 0")
            if size > MAX_CHUNK_SIZE:
                raise InvalidInput(
                    f"chunker {text!r}: chunker parameters may not exceed the maximum chunk size of "
                    f"{MAX_CHUNK_SIZE}"
                )
            return cls("size", size)
        if text == "size":
            return cls("size", DEFAULT_CHUNK_SIZE)
        if text == "buzhash":
            return cls("buzhash", 0)
        if text.startswith(("rabin", "buzhash")):
            raise InvalidInput(
                f"chunker {text!r} is not supported by this node; "
                "its CIDs would not match kubo's; use size-N or buzhash"
            )
        raise InvalidInput(f"unrecognized chunker option {text!r}; use size-N, e.g. size-262144")


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
    return size_chunks(source, spec.size)
