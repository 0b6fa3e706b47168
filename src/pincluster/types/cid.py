"""CIDs, multihashes, varints and multibase.

CIDs are held as their binary form (``bytes``) everywhere inside pincluster and turned into text only at the
edges (JSON, CLI, logs). Parsing is on hot paths (every pin listing, every state import), so the codecs here
are written for speed: base32 uses the C-accelerated ``base64`` module and base58 converts through Python's
big integers, which decodes well over 100k CIDs/s (``bench/types_bench.py`` measures it). The
``multiformats`` package was measured at about 3k CIDs/s (FINDINGS.md), too slow for this.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import hashlib
import re
from typing import Final

import libipld

from pincluster.errors import InvalidInput

# --- multicodec codes we use -------------------------------------------------------------------------------
IDENTITY: Final = 0x00
SHA2_256: Final = 0x12
SHA2_512: Final = 0x13
BLAKE3: Final = 0x1E
BLAKE2B_256: Final = 0xB220
RAW: Final = 0x55
DAG_PB: Final = 0x70
DAG_CBOR: Final = 0x71
LIBP2P_KEY: Final = 0x72
DAG_JSON: Final = 0x0129

#: Hash functions by multihash code, and their kubo names.
HASH_NAMES: Final[dict[int, str]] = {
    IDENTITY: "identity",
    SHA2_256: "sha2-256",
    SHA2_512: "sha2-512",
    BLAKE3: "blake3",
    BLAKE2B_256: "blake2b-256",
}
HASH_CODES: Final[dict[str, int]] = {v: k for k, v in HASH_NAMES.items()}
CODEC_NAMES: Final[dict[int, str]] = {
    RAW: "raw",
    DAG_PB: "dag-pb",
    DAG_CBOR: "dag-cbor",
    LIBP2P_KEY: "libp2p-key",
    DAG_JSON: "dag-json",
}
CODEC_CODES: Final[dict[str, int]] = {v: k for k, v in CODEC_NAMES.items()}


class InvalidCID(InvalidInput):
    """A CID (or multihash/multibase string) could not be parsed."""


# --- varint --------------------------------------------------------------------------------------------------
def encode_uvarint(n: int) -> bytes:
    """Unsigned LEB128, as multiformats and protobuf use."""
    if n < 0:
        raise InvalidInput(f"varint must be non-negative, got {n}")
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def decode_uvarint(buf: bytes | bytearray | memoryview, pos: int = 0, end: int | None = None) -> tuple[int, int]:
    """Decode one unsigned varint at ``pos`` (not reading at or past ``end``); returns ``(value, position
    after it)``. The one varint decoder: CIDs, multihashes and the protobufs of dag-pb and UnixFS use it."""
    result = 0
    shift = 0
    n = len(buf) if end is None else end
    while True:
        if pos >= n:
            raise InvalidInput("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise InvalidInput("varint too long")


# --- base58btc -----------------------------------------------------------------------------------------------
# ``based58`` (Rust) decodes about 850k CIDs/s against 117k/s for the best pure-Python loop we measured;
# ``libipld`` (also Rust, already a dependency for CAR/dag-cbor) is faster still both ways, so it does both.
_ENCODE_MULTIBASE: Final = libipld.encode_multibase


def b58encode(data: bytes) -> str:
    """Bitcoin-alphabet base58, leading zero bytes as ``1``. ``libipld`` (Rust) encodes a CID about 5x
    faster than ``based58`` (every CIDv0 in a listing is printed this way)."""
    if not data:
        return ""
    text: str = _ENCODE_MULTIBASE("z", data if type(data) is bytes else bytes(data))
    return text[1:]


def b58decode(text: str) -> bytes:
    """Inverse of :func:`b58encode`; raises InvalidCID on a character outside the alphabet. (``libipld``
    decodes about 2x faster than ``based58``; status listings parse every CID the IPFS daemon lists.)"""
    try:
        raw: bytes = libipld.decode_multibase("z" + text)[1]
    except (ValueError, TypeError):
        raise InvalidCID(f"invalid base58 string {text!r}") from None
    return raw


# --- base32 / base36 / others ------------------------------------------------------------------------------
_B32_CHARS: Final = re.compile(r"[a-z2-7]*")
_B32_TO_INT: Final = str.maketrans("abcdefghijklmnopqrstuvwxyz234567", "0123456789abcdefghijklmnopqrstuv")


def _b32decode(text: str) -> bytes:
    """RFC 4648 base32 without padding, via one big-integer conversion (5x faster than ``base64.b32decode``)."""
    text = text.lower()
    if not _B32_CHARS.fullmatch(text):
        raise InvalidCID(f"invalid base32 string {text!r}")
    if not text:
        return b""
    nbytes = len(text) * 5 // 8
    value = int(text.translate(_B32_TO_INT), 32) >> (len(text) * 5 - nbytes * 8)
    return value.to_bytes(nbytes, "big")


def _b32encode(data: bytes) -> str:
    """Lower-case RFC 4648 base32 without padding. ``libipld`` (Rust) writes it about 20x faster than
    ``base64.b32encode`` (pure Python before 3.13), which matters because every CIDv1 in a listing is
    printed this way."""
    if not data:
        return ""
    text: str = libipld.encode_multibase("b", data)
    return text[1:]


_B36_ALPHABET: Final = "0123456789abcdefghijklmnopqrstuvwxyz"


def _b36encode(data: bytes) -> str:
    n = int.from_bytes(data, "big")
    chars: list[str] = []
    while n:
        n, r = divmod(n, 36)
        chars.append(_B36_ALPHABET[r])
    pad = len(data) - len(data.lstrip(b"\0"))
    return "0" * pad + "".join(reversed(chars))


def _b36decode(text: str) -> bytes:
    text = text.lower()
    try:
        n = int(text, 36) if text else 0
    except ValueError:
        raise InvalidCID(f"invalid base36 string {text!r}") from None
    pad = len(text) - len(text.lstrip("0"))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\0" * pad + body


def _b64decode(text: str, altchars: bytes | None) -> bytes:
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=altchars, validate=True)
    except binascii.Error as exc:
        raise InvalidCID(f"invalid base64 string {text!r}: {exc}") from None


_MULTIBASE_PREFIX: Final[dict[str, str]] = {
    "base58btc": "z",
    "base32": "b",
    "base32upper": "B",
    "base36": "k",
    "base16": "f",
    "base16upper": "F",
    "base64": "m",
    "base64url": "u",
}


def multibase_encode(base: str, data: bytes) -> str:
    """Encode ``data`` with the multibase named ``base`` (prefix included)."""
    if base == "base58btc":
        return "z" + b58encode(data)
    if base == "base32":
        return "b" + _b32encode(data)
    if base == "base32upper":
        return "B" + _b32encode(data).upper()
    if base == "base36":
        return "k" + _b36encode(data)
    if base == "base16":
        return "f" + data.hex()
    if base == "base16upper":
        return "F" + data.hex().upper()
    if base == "base64":
        return "m" + base64.b64encode(data).decode("ascii").rstrip("=")
    if base == "base64url":
        return "u" + base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")
    raise InvalidInput(f"unsupported multibase {base!r}; use one of {', '.join(_MULTIBASE_PREFIX)}")


def multibase_decode(text: str) -> bytes:
    """Decode a multibase string (the first character names the base)."""
    if not text:
        raise InvalidCID("empty multibase string")
    prefix, body = text[0], text[1:]
    if prefix == "z":
        return b58decode(body)
    if prefix in "bB":
        return _b32decode(body)
    if prefix in "kK":
        return _b36decode(body)
    if prefix in "fF":
        try:
            return bytes.fromhex(body)
        except ValueError:
            raise InvalidCID(f"invalid base16 string {body!r}") from None
    if prefix == "m":
        return _b64decode(body, None)
    if prefix == "u":
        return _b64decode(body, b"-_")
    raise InvalidCID(f"unknown multibase prefix {prefix!r} in {text!r}")


# --- multihash -----------------------------------------------------------------------------------------------
def multihash_encode(code: int, digest: bytes) -> bytes:
    """``<varint code><varint length><digest>``."""
    if code == SHA2_256 and len(digest) == 32:
        return b"\x12\x20" + digest
    return encode_uvarint(code) + encode_uvarint(len(digest)) + digest


def multihash_decode(mh: bytes) -> tuple[int, bytes]:
    """Split a multihash into ``(code, digest)``; the length must match exactly."""
    try:
        code, pos = decode_uvarint(mh)
        length, pos = decode_uvarint(mh, pos)
    except InvalidInput as exc:
        raise InvalidCID(f"invalid multihash: {exc}") from None
    if len(mh) - pos != length:
        raise InvalidCID(f"invalid multihash: digest length {len(mh) - pos} does not match declared {length}")
    return code, mh[pos:]


def _multihash_length(buf: bytes, pos: int) -> int:
    """Length in bytes of the multihash starting at ``pos``."""
    _code, p = decode_uvarint(buf, pos)
    length, p = decode_uvarint(buf, p)
    return p - pos + length


def sha256_multihash(data: bytes) -> bytes:
    """The sha2-256 multihash of ``data``."""
    return b"\x12\x20" + hashlib.sha256(data).digest()


def hash_digest(code: int, data: bytes) -> bytes:
    """Digest of ``data`` with the multihash function ``code`` (sha2-256, sha2-512, blake2b-256, blake3)."""
    if code == SHA2_256:
        return hashlib.sha256(data).digest()
    if code == SHA2_512:
        return hashlib.sha512(data).digest()
    if code == BLAKE2B_256:
        return hashlib.blake2b(data, digest_size=32).digest()
    if code == IDENTITY:
        return bytes(data)
    if code == BLAKE3:
        try:
            import blake3  # type: ignore[import-not-found]
        except ImportError:
            raise InvalidInput("blake3 hashing needs the 'blake3' package (pip install blake3)") from None
        return bytes(blake3.blake3(data).digest())
    raise InvalidInput(f"unsupported hash function 0x{code:x}")


# --- CID -----------------------------------------------------------------------------------------------------
class CID:
    """An immutable content identifier, held as its binary form.

    CIDv0 binary is the bare sha2-256 multihash (34 bytes); CIDv1 is ``0x01 <codec> <multihash>``.
    Equality, hashing and ordering are by the binary form, so a set of CIDs or a sort by CID costs no text.
    """

    __slots__ = ("_b",)
    _b: bytes

    def __init__(self, raw: bytes) -> None:
        object.__setattr__(self, "_b", bytes(raw))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("CID is immutable")

    # -- constructors --
    @classmethod
    def decode(cls, text: str) -> CID:
        """Parse a CID in text form (CIDv0 ``Qm…`` or multibase CIDv1); raises InvalidCID naming the input."""
        if not isinstance(text, str) or not text:
            raise InvalidCID(f"invalid CID {text!r}: empty")
        if len(text) == 46 and text[0] == "Q" and text[1] == "m":
            try:
                raw = b58decode(text)
            except InvalidInput:
                raise InvalidCID(f"invalid CID {text!r}: not base58btc") from None
            if len(raw) != 34 or raw[0] != 0x12 or raw[1] != 0x20:
                raise InvalidCID(f"invalid CID {text!r}: not a sha2-256 CIDv0")
            return cls(raw)
        try:
            raw = multibase_decode(text)
            return cls.from_bytes(raw)
        except InvalidInput as exc:
            raise InvalidCID(f"invalid CID {text!r}: {exc}") from None

    @classmethod
    def from_bytes(cls, raw: bytes) -> CID:
        """Validate a binary CID (v0 or v1) and wrap it."""
        raw = bytes(raw)
        if len(raw) == 34 and raw[0] == 0x12 and raw[1] == 0x20:
            return cls(raw)
        if len(raw) == 36 and raw[0] == 1 and raw[1] < 0x80 and raw[2] == 0x12 and raw[3] == 0x20:
            return cls(raw)  # the common CIDv1: one-byte codec, sha2-256
        if not raw:
            raise InvalidCID("invalid CID: empty bytes")
        version, pos = decode_uvarint(raw)
        if version != 1:
            raise InvalidCID(f"invalid CID: unsupported version {version}")
        _codec, pos = decode_uvarint(raw, pos)
        multihash_decode(raw[pos:])
        return cls(raw)

    @classmethod
    def v0(cls, sha256_digest: bytes) -> CID:
        """A CIDv0 (dag-pb, sha2-256) from a 32-byte digest."""
        if len(sha256_digest) != 32:
            raise InvalidCID("CIDv0 needs a 32-byte sha2-256 digest")
        return cls(b"\x12\x20" + sha256_digest)

    @classmethod
    def v1(cls, codec: int, multihash: bytes) -> CID:
        """A CIDv1 with ``codec`` over ``multihash``."""
        return cls(b"\x01" + encode_uvarint(codec) + multihash)

    # -- accessors --
    @property
    def bytes(self) -> bytes:
        """The binary CID."""
        return self._b

    @property
    def version(self) -> int:
        return 0 if self._b[0] == 0x12 else 1

    @property
    def codec(self) -> int:
        if self._b[0] == 0x12:
            return DAG_PB
        return decode_uvarint(self._b, 1)[0]

    @property
    def multihash(self) -> builtins.bytes:
        if self._b[0] == 0x12:
            return self._b
        _codec, pos = decode_uvarint(self._b, 1)
        return self._b[pos:]

    @property
    def hash_code(self) -> int:
        return multihash_decode(self.multihash)[0]

    @property
    def digest(self) -> builtins.bytes:
        return multihash_decode(self.multihash)[1]

    def encode(self, base: str | None = None) -> str:
        """Text form: CIDv0 in base58btc, CIDv1 in ``base`` (default base32)."""
        if self._b[0] == 0x12 and base in (None, "base58btc"):
            return b58encode(self._b)
        if self._b[0] == 0x12:
            raise InvalidInput("a CIDv0 can only be written in base58btc; convert it with to_v1()")
        return multibase_encode(base or "base32", self._b)

    def to_v1(self) -> CID:
        if self._b[0] != 0x12:
            return self
        return CID.v1(DAG_PB, self._b)

    def to_v0(self) -> CID:
        """The CIDv0 of a dag-pb/sha2-256 CID; raises InvalidInput for any other."""
        if self._b[0] == 0x12:
            return self
        if self.codec != DAG_PB or not self.multihash.startswith(b"\x12\x20"):
            raise InvalidInput(f"{self} cannot be expressed as CIDv0 (needs dag-pb and sha2-256)")
        return CID(self.multihash)

    # -- dunder --
    def __str__(self) -> str:
        return self.encode()

    def __repr__(self) -> str:
        return f"CID({self.encode()!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CID) and other._b == self._b

    def __hash__(self) -> int:
        return hash(self._b)

    def __lt__(self, other: CID) -> bool:
        return self._b < other._b

    def __le__(self, other: CID) -> bool:
        return self._b <= other._b

    def __gt__(self, other: CID) -> bool:
        return self._b > other._b

    def __ge__(self, other: CID) -> bool:
        return self._b >= other._b

    def __reduce__(self) -> tuple[type[CID], tuple[builtins.bytes]]:
        return (CID, (self._b,))


def split_cid_prefix(buf: bytes, pos: int = 0) -> tuple[CID, int]:
    """Read one binary CID embedded at ``pos`` in ``buf`` (as in dag-pb links); returns ``(cid, end)``."""
    if buf[pos] == 0x12 and buf[pos + 1] == 0x20:
        end = pos + 34
        return CID(buf[pos:end]), end
    version, p = decode_uvarint(buf, pos)
    if version != 1:
        raise InvalidCID(f"invalid CID: unsupported version {version}")
    _codec, p = decode_uvarint(buf, p)
    end = p + _multihash_length(buf, p)
    return CID(buf[pos:end]), end
