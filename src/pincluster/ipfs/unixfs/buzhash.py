"""kubo's ``buzhash`` chunker (boxo ``chunker/buzhash.go``), bit-exact so CIDs match kubo's.

The rule: keep a buffer of up to 512 KiB. Cut at ``i + 32`` for the first ``i ≥ 128 KiB − 32`` where the
rolling hash of the 32-byte window starting at ``i`` has its low 17 bits all zero. If there is no such
``i``, cut at the end of the buffer. The rolling hash is ``XOR_k rotl32(T[byte], k)`` over the window.

A byte-at-a-time loop in Python runs at a few MB/s. Instead, the hash of every window of a segment is computed
at once. The segment's bytes are mapped through 4 tables (``bytes.translate``), one per byte of ``T[b]``, and each
result is read as one big integer with one byte per position. Windows then double 1 → 2 → … → 32
(``W₂ₘ(i) = rotl(Wₘ(i), m) ⊕ Wₘ(i+m)``) using whole-integer shifts, masks and XORs. The first zero is found
with ``bytes.find``. The table below is data from boxo, needed to cut where kubo cuts.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator

BUZ_MIN = 128 << 10
BUZ_MAX = 512 << 10
BUZ_MASK = (1 << 17) - 1
_SEGMENT = 64 << 10

_TABLE = (
    0x6236E7D5, 0x10279B0B, 0x72818182, 0xDC526514, 0x2FD41E3D, 0x777EF8C8, 0x83EE5285, 0x2C8F3637,
    0x2F049C1A, 0x57DF9791, 0x9207151F, 0x9B544818, 0x74EEF658, 0x2028CA60, 0x0271D91A, 0x27AE587E,
    0xECF9FA5F, 0x236E71CD, 0xF43A8A2E, 0x0BB13380, 0x9E57912C, 0x89A26CDB, 0x9FCF3D71, 0xA86DA6F1,
    0x9C49F376, 0x346AECC7, 0xF094A9EE, 0xEA99E9CB, 0xB01713C6, 0x088ACFFB, 0x2960A0FB, 0x344A626C,
    0x7FF22A46, 0x6D7A1AA5, 0x6A714916, 0x41D454CA, 0x8325B830, 0x0B65F563, 0x447FECCA, 0xF9D0EA5E,
    0xC1D9D3D4, 0xCB5EC574, 0x55AAE902, 0x86EDC0E7, 0x0D3A9E33, 0xE70DC1E1, 0xE3C5F639, 0x9B43140A,
    0xC6490AC5, 0x5E4030FB, 0x8E976DD5, 0xA87468EA, 0xF830EF6F, 0xCC1ED5A5, 0x611F4E78, 0xDDD11905,
    0xF2613904, 0x566C67B9, 0x905A5CCC, 0x7B37B3A4, 0x4B53898A, 0x6B8FD29D, 0xAAD81575, 0x511BE414,
    0x3CFAC1E7, 0x8029A179, 0xD40EFEDA, 0x07380E02, 0xDC9BEFFD, 0x2D049082, 0x99BC7831, 0xFF5002A8,
    0x21CE7646, 0x01CD049B, 0x0F43994F, 0xC3C6C5A5, 0xBBDA5F50, 0x0EC15EC7, 0x9ADB19B6, 0x0C1E80B9,
    0xB9B52968, 0xAE162419, 0x2542B405, 0x91A42E9D, 0x6BE0F668, 0x6ED7A6B9, 0xBC2777B4, 0xE162CE56,
    0x4266AAD5, 0x60FDB704, 0x66F832A5, 0x9595F6CA, 0xFEE83CED, 0x55228D99, 0x12BF0E28, 0x66896459,
    0x0789AFDA, 0x0282BAA8, 0x2367A343, 0x591491B0, 0x2FF1A4B1, 0x410739B6, 0x9B7055A0, 0x2E0EB229,
    0x24FC8252, 0x3327D3DF, 0xB0782669, 0x1C62E069, 0x7F503101, 0xF50593AE, 0xD9EB275D, 0xE00EB678,
    0x5917CCDE, 0x97B9660A, 0xDD06202D, 0xED229E22, 0xA9C735BF, 0xD6316FE6, 0x6FC72E4C, 0x0206DFA2,
    0xD6B15C5A, 0x69D87B49, 0x09C97745, 0x13445D61, 0x35A975AA, 0x859AA9B9, 0x65380013, 0xD1FB6391,
    0xC29255FD, 0x784A3B91, 0xB9E74C26, 0x63CE4D40, 0xC07CBE9E, 0xE6E4529E, 0x0FB3632F, 0x9438D9C9,
    0x682F94A8, 0xF8FD4611, 0x257EC1ED, 0x475CE3D6, 0x60EE2DB1, 0x2AFAB002, 0x2B9E4878, 0x86B340DE,
    0x1482FDCA, 0xFE41B3BF, 0xD4A412B0, 0xE09DB98C, 0xC1AF5D53, 0x7E55E25F, 0xD3346B38, 0xB7A12CBD,
    0x9C6827BA, 0x71F78BEE, 0x8C3A0F52, 0x150491B0, 0xF26DE912, 0x233E3A4E, 0xD309EBBA, 0xA0A9E0FF,
    0xCA2B5921, 0xEEB9893C, 0x33829E88, 0x9870CC2A, 0x23C4B9D0, 0xEBA32EA3, 0xBDAC4D22, 0x3BC8C44C,
    0x1E8D0397, 0xF9327735, 0x783B009F, 0x0EB83742, 0x2621DC71, 0xED017D03, 0x5C760AA1, 0x5A69814B,
    0x96E3047F, 0xA93C9CDE, 0x615C86F5, 0xB4322AA5, 0x4225534D, 0x0D2E2DE3, 0xCCFCCC4B, 0x0BAC2A57,
    0xF0A06D04, 0xBC78D737, 0xF2D1F766, 0xF5A7953C, 0xBCDFDA85, 0x5213B7D5, 0xBCE8A328, 0xD38F5F18,
    0xDB094244, 0xFE571253, 0x317FA7EE, 0x4A324F43, 0x3FFC39D9, 0x51B3FA8E, 0x7A4BEE9F, 0x78BBC682,
    0x9F5C0350, 0x02FE286C, 0x245AB686, 0xED6BF7D7, 0x0AC4988A, 0x3FE010FA, 0xC65FE369, 0xA45749CB,
    0x2B84E537, 0xDE9FF363, 0x20540F9A, 0xAA8C9B34, 0x5BC476B3, 0x1D574BD7, 0x929100AD, 0x4721DE4D,
    0x27DF1B05, 0x58B18546, 0xB7E76764, 0xDF904E58, 0x97AF57A1, 0xBD4DC433, 0xA6256DFD, 0xF63998F3,
    0xF1E05833, 0xE20ACF26, 0xF57FD9D6, 0x90300B4D, 0x89DF4290, 0x68D01CBC, 0xCF893EE3, 0xCC42A046,
    0x778E181B, 0x67265C76, 0xE981A4C4, 0x82991DA1, 0x708F7294, 0xE6E2AE62, 0xFC441870, 0x95E1B0B6,
    0x0445F825, 0x5A93B47F, 0x5E9CF4BE, 0x84DA71E7, 0x9D9582B0, 0x9BF835EF, 0x591F61E2, 0x43325985,
    0x5D2DE32E, 0x8D8FBF0F, 0x95B30F38, 0x07AD5B6E, 0x4E934EDF, 0x3CD4990E, 0x9053E259, 0x5C41857D,
)
assert len(_TABLE) == 256

#: bytes.translate tables: byte q (little-endian) of T[b], for q = 0..3.
_PLANES = tuple(bytes((v >> (8 * q)) & 0xFF for v in _TABLE) for q in range(4))


def _rotl_planes(p: list[int], r: int, hi: int, lo: int) -> list[int]:
    """Rotate every 32-bit lane left by r (1..7) bits; lanes are byte-sliced over 4 plane integers."""
    s = 8 - r
    return [((p[q] << r) & hi) | ((p[q - 1] >> s) & lo) for q in range(4)]


def _first_cut(buf: bytes | bytearray, start: int, stop: int) -> int:
    """Smallest i in [start, stop] whose window hash has its low 17 bits zero, or -1 (needs stop+31 < len)."""
    seg = bytes(buf[start : stop + 32])
    n = len(seg)
    planes = [int.from_bytes(seg.translate(_PLANES[q]), "little") for q in range(4)]
    masks: dict[int, tuple[int, int]] = {}
    for r in (1, 2, 4):
        hi = int.from_bytes(bytes(((0xFF << r) & 0xFF,)) * n, "little")
        lo = int.from_bytes(bytes(((1 << r) - 1,)) * n, "little")
        masks[r] = (hi, lo)
    m = 1
    while m < 32:
        if m < 8:
            hi, lo = masks[m]
            rot = _rotl_planes(planes, m, hi, lo)
        else:
            k = m // 8  # rotation by whole bytes: a permutation of the planes
            rot = [planes[(q - k) % 4] for q in range(4)]
        shift = 8 * m
        planes = [rot[q] ^ (planes[q] >> shift) for q in range(4)]
        m *= 2
    ones = int.from_bytes(b"\x01" * n, "little")
    low17 = planes[0] | planes[1] | (planes[2] & ones)
    flags = low17.to_bytes(n + 8, "little")
    idx = flags.find(b"\x00", 0, stop - start + 1)
    return -1 if idx < 0 else start + idx


def buzhash_cut(buf: bytes | bytearray) -> int:
    """Where kubo's buzhash cuts ``buf`` (len ≥ BUZ_MIN, at most BUZ_MAX)."""
    n = len(buf)
    last = n - 33  # boxo: ``max := b.n + n - 32 - 1``
    i = BUZ_MIN - 32
    while i <= last:
        stop = min(i + _SEGMENT - 1, last)
        found = _first_cut(buf, i, stop)
        if found >= 0:
            return found + 32
        i = stop + 1
    return n  # no boundary: boxo's loop ends at i = max + 1, and i + 32 == n


async def buzhash_chunks(source: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """kubo's buzhash chunks of the stream (boundary search on a worker thread)."""
    loop = asyncio.get_running_loop()
    it = source.__aiter__()
    buf = bytearray()
    eof = False
    while True:
        while not eof and len(buf) < BUZ_MAX:
            try:
                buf += await anext(it)
            except StopAsyncIteration:
                eof = True
        window = bytes(buf[:BUZ_MAX])
        if len(window) < BUZ_MIN:
            # the short remainder ends the stream; kubo adds no empty leaf (checked against kubo 0.42)
            if window:
                yield window
            return
        cut = await loop.run_in_executor(None, buzhash_cut, window)
        yield window[:cut]
        del buf[:cut]
