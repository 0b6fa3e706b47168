"""kubo's ``rabin`` chunker (boxo ``chunker/rabin.go`` over ``whyrusleeping/chunker``), bit-exact.

The rule, for each chunk:
- skip the first ``min − 16`` bytes;
- then cut after the first byte, at offset ``add ≥ min``, where the Rabin fingerprint (polynomial
  ``0x3DF305DFB2A805``) of the last 16 bytes has its low ``floor(log2(avg))`` bits zero;
- cut at ``max`` if no such byte comes first.

The fingerprint of a window is linear over GF(2): ``XOR_k (b[e−1−k] · x^(8k) mod P)``. So, as for
:mod:`buzhash`, every window of a segment is computed at once, with one ``bytes.translate`` per (offset,
output byte) and big-integer XORs. The first zero is found with ``bytes.find``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator
from functools import lru_cache

#: boxo's IpfsRabinPoly.
RABIN_POLY = 17437180132763653
WINDOW = 16


def _pol_mod(x: int, p: int) -> int:
    dp = p.bit_length() - 1
    while x and x.bit_length() - 1 >= dp:
        x ^= p << (x.bit_length() - 1 - dp)
    return x


@lru_cache(maxsize=8)
def _tables(nbits: int) -> tuple[tuple[tuple[bytes, ...], ...], int]:
    """translate tables [k][q]: byte q of ``(v << 8k) mod P`` masked to ``nbits``; and the last plane's mask."""
    planes = (nbits + 7) // 8
    mask = (1 << nbits) - 1
    out = []
    for k in range(WINDOW):
        vals = [_pol_mod(v << (8 * k), RABIN_POLY) & mask for v in range(256)]
        out.append(tuple(bytes((v >> (8 * q)) & 0xFF for v in vals) for q in range(planes)))
    return tuple(out), 0xFF if nbits % 8 == 0 else (1 << (nbits % 8)) - 1


def _first_zero(buf: bytes | bytearray, lo: int, hi: int, nbits: int) -> int:
    """Smallest cut offset e in [lo, hi] whose 16-byte window ``buf[e-16:e]`` fingerprints to zero in the low
    ``nbits`` bits, or -1."""
    tables, last_mask = _tables(nbits)
    seg = bytes(buf[lo - WINDOW : hi])
    planes = len(tables[0])
    acc = [0] * planes
    for k in range(WINDOW):
        shift = 8 * (WINDOW - 1 - k)
        for q in range(planes):
            acc[q] ^= int.from_bytes(seg.translate(tables[k][q]), "little") >> shift
    if last_mask != 0xFF:
        acc[-1] &= int.from_bytes(bytes((last_mask,)) * len(seg), "little")
    zero = 0
    for v in acc:
        zero |= v
    flags = zero.to_bytes(len(seg) + 8, "little")
    j = flags.find(b"\x00", 0, hi - lo + 1)
    return -1 if j < 0 else lo + j


_SEGMENT = 64 << 10


def rabin_cut(buf: bytes | bytearray, min_size: int, avg: int, max_size: int, eof: bool) -> int:
    """Length of the next chunk at the start of ``buf`` (which holds ``max_size`` bytes unless ``eof``)."""
    n = len(buf)
    if n <= min_size:
        return n if eof else -1
    last = min(n, max_size)  # largest cut offset to consider
    nbits = avg.bit_length() - 1  # Go: uint(math.Log2(float64(avg)))
    lo = min_size
    while lo <= last:
        hi = min(lo + _SEGMENT - 1, last)
        found = _first_zero(buf, lo, hi, nbits)
        if found >= 0:
            return found
        lo = hi + 1
    if last >= max_size:
        return max_size
    return n  # end of data without a boundary: the rest is the last chunk


async def rabin_chunks(
    source: AsyncIterable[bytes], min_size: int, avg: int, max_size: int
) -> AsyncIterator[bytes]:
    """kubo's rabin chunks of the stream (boundary search on a worker thread)."""
    loop = asyncio.get_running_loop()
    it = source.__aiter__()
    buf = bytearray()
    eof = False
    while True:
        while not eof and len(buf) < max_size:
            try:
                buf += await anext(it)
            except StopAsyncIteration:
                eof = True
        if not buf:
            return
        window = bytes(buf[:max_size])
        cut = await loop.run_in_executor(None, rabin_cut, window, min_size, avg, max_size, eof)
        yield window[:cut]
        del buf[:cut]
