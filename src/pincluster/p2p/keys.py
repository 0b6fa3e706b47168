"""libp2p keys: Ed25519 (new identities) and RSA (identities made by older IPFS Cluster versions).

Keys travel in libp2p's protobuf envelope (``message PublicKey { KeyType Type = 1; bytes Data = 2; }``), which is
also what ``identity.json`` stores base64-encoded. The crypto itself is the ``cryptography`` package's.
"""

from __future__ import annotations

from enum import IntEnum
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from pincluster.errors import InvalidInput
from pincluster.types.cid import decode_uvarint, encode_uvarint

if TYPE_CHECKING:
    from pincluster.types.peer import PeerID


class KeyType(IntEnum):
    RSA = 0
    ED25519 = 1
    SECP256K1 = 2
    ECDSA = 3


class InvalidKey(InvalidInput):
    """A key could not be decoded or is of an unsupported type."""


def _pb_encode(key_type: int, data: bytes) -> bytes:
    return b"\x08" + encode_uvarint(key_type) + b"\x12" + encode_uvarint(len(data)) + data


def _pb_decode(raw: bytes) -> tuple[KeyType, bytes]:
    """Decode the libp2p key protobuf; tolerant of field order, strict about content."""
    key_type: int | None = None
    data: bytes | None = None
    pos = 0
    try:
        while pos < len(raw):
            tag, pos = decode_uvarint(raw, pos)
            field, wire = tag >> 3, tag & 7
            if wire == 0:
                value, pos = decode_uvarint(raw, pos)
                if field == 1:
                    key_type = value
            elif wire == 2:
                length, pos = decode_uvarint(raw, pos)
                chunk = raw[pos : pos + length]
                if len(chunk) != length:
                    raise InvalidKey("truncated key protobuf")
                pos += length
                if field == 2:
                    data = chunk
            else:
                raise InvalidKey(f"unexpected protobuf wire type {wire} in key")
    except InvalidInput as exc:
        raise InvalidKey(f"invalid key protobuf: {exc}") from None
    if key_type is None or data is None:
        raise InvalidKey("invalid key protobuf: Type or Data missing")
    try:
        return KeyType(key_type), data
    except ValueError:
        raise InvalidKey(f"unknown key type {key_type}") from None


class PublicKey:
    """A peer's public key; verifies signatures and derives the peer ID."""

    __slots__ = ("_key", "key_type")

    def __init__(self, key: ed25519.Ed25519PublicKey | rsa.RSAPublicKey) -> None:
        self._key = key
        self.key_type = KeyType.ED25519 if isinstance(key, ed25519.Ed25519PublicKey) else KeyType.RSA

    @classmethod
    def from_protobuf(cls, raw: bytes) -> PublicKey:
        key_type, data = _pb_decode(raw)
        if key_type is KeyType.ED25519:
            if len(data) != 32:
                raise InvalidKey(f"Ed25519 public key must be 32 bytes, got {len(data)}")
            return cls(ed25519.Ed25519PublicKey.from_public_bytes(data))
        if key_type is KeyType.RSA:
            try:
                key = serialization.load_der_public_key(data)
            except ValueError as exc:
                raise InvalidKey(f"invalid RSA public key: {exc}") from None
            if not isinstance(key, rsa.RSAPublicKey):
                raise InvalidKey("RSA key type with a non-RSA key")
            return cls(key)
        raise InvalidKey(f"unsupported key type {key_type.name}; pincluster supports Ed25519 and RSA")

    def raw(self) -> bytes:
        """Type-specific bytes: 32 raw bytes for Ed25519, PKIX DER for RSA (libp2p's Data field)."""
        if isinstance(self._key, ed25519.Ed25519PublicKey):
            return self._key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return self._key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)

    def to_protobuf(self) -> bytes:
        return _pb_encode(self.key_type, self.raw())

    def verify(self, signature: bytes, data: bytes) -> bool:
        try:
            if isinstance(self._key, ed25519.Ed25519PublicKey):
                self._key.verify(signature, data)
            else:
                self._key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return False
        return True

    def peer_id(self) -> PeerID:
        from pincluster.types.peer import PeerID

        return PeerID.from_public_key(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublicKey) and other.to_protobuf() == self.to_protobuf()

    def __hash__(self) -> int:
        return hash(self.to_protobuf())


class PrivateKey:
    """A peer's private key (identity.json ``private_key``)."""

    __slots__ = ("_key", "key_type")

    def __init__(self, key: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey) -> None:
        self._key = key
        self.key_type = KeyType.ED25519 if isinstance(key, ed25519.Ed25519PrivateKey) else KeyType.RSA

    @classmethod
    def generate_ed25519(cls) -> PrivateKey:
        return cls(ed25519.Ed25519PrivateKey.generate())

    @classmethod
    def generate_rsa(cls, bits: int = 2048) -> PrivateKey:
        return cls(rsa.generate_private_key(public_exponent=65537, key_size=bits))

    @classmethod
    def from_protobuf(cls, raw: bytes) -> PrivateKey:
        key_type, data = _pb_decode(raw)
        if key_type is KeyType.ED25519:
            # libp2p stores seed||public (64 bytes); very old keys append the public key twice (96 bytes).
            if len(data) not in (64, 96):
                raise InvalidKey(f"Ed25519 private key must be 64 bytes, got {len(data)}")
            priv = ed25519.Ed25519PrivateKey.from_private_bytes(data[:32])
            pub = priv.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            if pub != data[32:64]:
                raise InvalidKey("Ed25519 private key does not match its embedded public key")
            return cls(priv)
        if key_type is KeyType.RSA:
            try:
                key = serialization.load_der_private_key(data, password=None)
            except (ValueError, TypeError) as exc:
                raise InvalidKey(f"invalid RSA private key: {exc}") from None
            if not isinstance(key, rsa.RSAPrivateKey):
                raise InvalidKey("RSA key type with a non-RSA key")
            return cls(key)
        raise InvalidKey(f"unsupported key type {key_type.name}; pincluster supports Ed25519 and RSA")

    def to_protobuf(self) -> bytes:
        if isinstance(self._key, ed25519.Ed25519PrivateKey):
            seed = self.raw_ed25519_seed()
            return _pb_encode(KeyType.ED25519, seed + self.public_key().raw())
        der = self._key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.TraditionalOpenSSL,  # PKCS#1, as go-libp2p writes RSA keys
            serialization.NoEncryption(),
        )
        return _pb_encode(KeyType.RSA, der)

    def raw_ed25519_seed(self) -> bytes:
        if not isinstance(self._key, ed25519.Ed25519PrivateKey):
            raise InvalidKey("not an Ed25519 key")
        return self._key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )

    def public_key(self) -> PublicKey:
        return PublicKey(self._key.public_key())

    def sign(self, data: bytes) -> bytes:
        if isinstance(self._key, ed25519.Ed25519PrivateKey):
            return self._key.sign(data)
        return self._key.sign(data, padding.PKCS1v15(), hashes.SHA256())
