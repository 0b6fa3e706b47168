"""libp2p peer IDs: the multihash of a peer's public key.

Ed25519 keys are small enough to be inlined with the identity multihash (text ``12D3KooW…``); RSA keys are
hashed with sha2-256 (text ``Qm…``). Held as the multihash bytes, printed in base58btc like go-libp2p.
"""

from __future__ import annotations

import builtins
import hashlib
from typing import TYPE_CHECKING

from pincluster.errors import InvalidInput
from pincluster.types.cid import (
    CID,
    IDENTITY,
    LIBP2P_KEY,
    SHA2_256,
    b58decode,
    b58encode,
    multihash_decode,
    multihash_encode,
)

if TYPE_CHECKING:
    from pincluster.p2p.keys import PublicKey

_MAX_INLINE_KEY = 42  # go-libp2p inlines keys whose protobuf is at most 42 bytes


class InvalidPeerID(InvalidInput):
    """A peer ID could not be parsed."""


class PeerID:
    """An immutable libp2p peer ID.

    The base58 text is computed on first use and kept (``_text``): the same few peer IDs are printed in
    every item of a status listing.
    """

    __slots__ = ("_mh", "_text")
    _mh: bytes
    _text: str

    def __init__(self, multihash: bytes) -> None:
        object.__setattr__(self, "_mh", bytes(multihash))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("PeerID is immutable")

    @classmethod
    def decode(cls, text: str) -> PeerID:
        """Parse ``Qm…``/``12D3KooW…`` (base58 multihash) or a CIDv1 with the libp2p-key codec."""
        if not isinstance(text, str) or not text:
            raise InvalidPeerID("invalid peer ID '': empty")
        try:
            if text[0] in "1Q":
                return cls.from_bytes(b58decode(text))
            cid = CID.decode(text)
        except InvalidInput as exc:
            raise InvalidPeerID(f"invalid peer ID {text!r}: {exc}") from None
        if cid.version != 1 or cid.codec != LIBP2P_KEY:
            raise InvalidPeerID(f"invalid peer ID {text!r}: a CID must use the libp2p-key codec")
        return cls.from_bytes(cid.multihash)

    @classmethod
    def from_bytes(cls, multihash: bytes) -> PeerID:
        try:
            code, digest = multihash_decode(multihash)
        except InvalidInput as exc:
            raise InvalidPeerID(f"invalid peer ID: {exc}") from None
        if code not in (IDENTITY, SHA2_256):
            raise InvalidPeerID(f"invalid peer ID: unsupported multihash 0x{code:x}")
        if code == SHA2_256 and len(digest) != 32:
            raise InvalidPeerID("invalid peer ID: bad sha2-256 digest length")
        return cls(multihash)

    @classmethod
    def from_public_key(cls, pub: PublicKey) -> PeerID:
        pb = pub.to_protobuf()
        if len(pb) <= _MAX_INLINE_KEY:
            return cls(multihash_encode(IDENTITY, pb))
        return cls(multihash_encode(SHA2_256, hashlib.sha256(pb).digest()))

    @property
    def bytes(self) -> bytes:
        return self._mh

    def extract_public_key(self) -> PublicKey | None:
        """The public key inlined in the ID (Ed25519 ids), or None when the ID is a hash."""
        code, digest = multihash_decode(self._mh)
        if code != IDENTITY:
            return None
        from pincluster.p2p.keys import PublicKey

        return PublicKey.from_protobuf(digest)

    def matches(self, pub: PublicKey) -> bool:
        """Whether ``pub`` is the key this ID was derived from."""
        return PeerID.from_public_key(pub) == self

    def to_cid(self) -> CID:
        return CID.v1(LIBP2P_KEY, self._mh)

    def __str__(self) -> str:
        try:
            return self._text
        except AttributeError:  # first use: the slot is left unset by __init__, which keeps creation cheap
            text = b58encode(self._mh)
            object.__setattr__(self, "_text", text)
            return text

    def __repr__(self) -> str:
        return f"PeerID({self!s})"

    def short(self) -> str:
        """The last 6 characters, as IPFS Cluster logs peers."""
        return str(self)[-6:]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PeerID) and other._mh == self._mh

    def __hash__(self) -> int:
        return hash(self._mh)

    def __lt__(self, other: PeerID) -> bool:
        return self._mh < other._mh

    def __reduce__(self) -> tuple[type[PeerID], tuple[builtins.bytes]]:
        return (PeerID, (self._mh,))
