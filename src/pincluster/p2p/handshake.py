"""Connection setup: protocol hello, Noise XXpsk3 handshake, identity proof.

Wire (see docs/p2p.md):

1. Both ends send a plaintext hello line ``<protocol>\\n`` (e.g. ``/pincluster/rpc/1.0``) at once, like
   multistream-select, so a version mismatch is told apart from a secret mismatch before any crypto.
2. Noise ``Noise_XXpsk3_25519_ChaChaPoly_SHA256`` with the PSK, prologue = both hello lines (so a
   man in the middle cannot rewrite the versions). Frames are ``u16 length || bytes``.
   With another PSK the responder fails to read message 3 and answers the fixed plaintext
   ``REJECT_PSK`` frame, so both ends report "do not share the same <psk_name>".
3. Identity: each side sends, encrypted, its libp2p public key protobuf and a signature over
   ``"pincluster-noise-handshake:" || role || handshake_hash``; the peer ID is derived from the key, so it
   is verified and bound to this session. The initiator answers with ``ok`` or a ``reject`` naming the
   misdial, so the responder can log it too.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import msgspec
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from noise.connection import Keypair, NoiseConnection

from pincluster.errors import PinclusterError
from pincluster.p2p.errors import (
    ConnectionClosed,
    HandshakeError,
    PeerIDMismatch,
    SecretMismatch,
    VersionMismatch,
)
from pincluster.p2p.keys import PrivateKey, PublicKey
from pincluster.types.peer import PeerID

if TYPE_CHECKING:
    from pincluster.observe.bandwidth import Meter

log = logging.getLogger("pincluster.p2p")

NOISE_NAME = b"Noise_XXpsk3_25519_ChaChaPoly_SHA256"
MAX_FRAME = 65535
NOISE_TAG = 16
MAX_PLAINTEXT = MAX_FRAME - NOISE_TAG
REJECT_PSK = b"\x00pincluster:reject:psk"
MAX_HELLO = 256
_SIG_PREFIX = b"pincluster-noise-handshake:"
_LEN = struct.Struct(">H")


class _HSMsg(msgspec.Struct, omit_defaults=True):
    """One handshake control message (inside the encrypted channel)."""

    t: str  # "id" | "ok" | "reject"
    key: bytes = b""
    sig: bytes = b""
    addrs: list[str] = field(default_factory=list)
    code: str = ""
    detail: str = ""


_hs_enc = msgspec.msgpack.Encoder()
_hs_dec = msgspec.msgpack.Decoder(_HSMsg)


def parse_protocol(name: str) -> tuple[str, int, int]:
    """Split ``/family/…/<major>.<minor>`` into (family, major, minor); raise InvalidInput-like HandshakeError."""
    family, _, version = name.rpartition("/")
    major_s, dot, minor_s = version.partition(".")
    if not family.startswith("/") or not dot or not major_s.isdigit() or not minor_s.isdigit():
        raise HandshakeError(f"malformed protocol name {name!r}: expected /<name>/<major>.<minor>")
    return family, int(major_s), int(minor_s)


def check_compatible(local: str, remote: str, where: str) -> None:
    """Same family and same major version are compatible; minor versions may differ."""
    lf, lmaj, _ = parse_protocol(local)
    try:
        rf, rmaj, _ = parse_protocol(remote)
    except HandshakeError:
        raise VersionMismatch(local, remote, where) from None
    if lf != rf or lmaj != rmaj:
        raise VersionMismatch(local, remote, where)


@dataclass
class HandshakeResult:
    """What a finished handshake yields: the verified remote and the channel to talk over."""

    remote_peer: PeerID
    remote_addrs: list[str]
    remote_protocol: str
    channel: SecureChannel


class SecureChannel:
    """Noise transport over an asyncio stream: one Noise message per ``u16``-length-prefixed frame."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, noise: NoiseConnection):
        self.reader = reader
        self.writer = writer
        self._enc = noise.noise_protocol.cipher_state_encrypt
        self._dec = noise.noise_protocol.cipher_state_decrypt
        #: Where the bytes this channel moves are counted (its protocol's and its peer's meters), if anywhere.
        self.meters: tuple[Meter, ...] = ()

    def send(self, plaintext: bytes) -> None:
        """Encrypt and queue one message; synchronous so concurrent writers never interleave frames."""
        if len(plaintext) > MAX_PLAINTEXT:
            raise ValueError(f"secure channel frame of {len(plaintext)} bytes > {MAX_PLAINTEXT}")
        ct = self._enc.encrypt_with_ad(None, plaintext)
        self.writer.write(_LEN.pack(len(ct)) + ct)
        for m in self.meters:
            m.bytes_out += len(ct) + 2

    async def drain(self) -> None:
        await self.writer.drain()

    async def recv(self) -> bytes:
        """Read and decrypt one message; raise ConnectionClosed at EOF, HandshakeError on tampering."""
        try:
            hdr = await self.reader.readexactly(2)
            (n,) = _LEN.unpack(hdr)
            ct = await self.reader.readexactly(n)
        except (asyncio.IncompleteReadError, ConnectionError) as e:
            raise ConnectionClosed("connection closed by the remote peer") from e
        try:
            out: bytes = self._dec.decrypt_with_ad(None, ct)
        except Exception as e:
            raise HandshakeError("secure channel: a frame failed authentication (corrupt or tampered)") from e
        for m in self.meters:
            m.bytes_in += n + 2
        return out

    def close(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    try:
        hdr = await reader.readexactly(2)
        (n,) = _LEN.unpack(hdr)
        return await reader.readexactly(n)
    except (asyncio.IncompleteReadError, ConnectionError) as e:
        raise ConnectionClosed("connection closed during the handshake") from e


def _write_frame(writer: asyncio.StreamWriter, data: bytes | bytearray) -> None:
    writer.write(_LEN.pack(len(data)) + bytes(data))


async def _exchange_hello(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, protocol: str, where: str
) -> str:
    writer.write(protocol.encode() + b"\n")
    await writer.drain()
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.LimitOverrunError as e:
        raise HandshakeError(f"{where} is not a pincluster peer (hello line too long)") from e
    except (asyncio.IncompleteReadError, ConnectionError) as e:
        partial = getattr(e, "partial", b"")
        raise ConnectionClosed(
            f"{where} closed the connection before the protocol hello"
            + (f" (got {partial[:40]!r})" if partial else "")
        ) from e
    text = line[:-1].decode("ascii", "replace")
    if len(line) > MAX_HELLO or not text.startswith("/"):
        raise HandshakeError(f"{where} is not a pincluster peer (got {line[:40]!r})")
    check_compatible(protocol, text, where)
    return text


def _signed_data(role: bytes, hh: bytes) -> bytes:
    return _SIG_PREFIX + role + hh


def _make_noise(initiator: bool, static: bytes, psk: bytes, prologue: bytes) -> NoiseConnection:
    noise = NoiseConnection.from_name(NOISE_NAME)
    if initiator:
        noise.set_as_initiator()
    else:
        noise.set_as_responder()
    noise.set_keypair_from_private_bytes(Keypair.STATIC, static)
    noise.set_psks(psk)
    noise.set_prologue(prologue)
    noise.start_handshake()
    return noise


def _identity_msg(key: PrivateKey, noise: NoiseConnection, role: bytes, addrs: list[str]) -> bytes:
    hh = noise.get_handshake_hash()
    return _hs_enc.encode(
        _HSMsg(t="id", key=key.public_key().to_protobuf(), sig=key.sign(_signed_data(role, hh)), addrs=addrs)
    )


def _verify_identity(msg: _HSMsg, noise: NoiseConnection, role: bytes, where: str) -> PeerID:
    if msg.t == "reject":
        raise HandshakeError(f"{where} refused the connection: {msg.detail}")
    if msg.t != "id":
        raise HandshakeError(f"{where} sent {msg.t!r} where its identity was expected")
    try:
        pub = PublicKey.from_protobuf(msg.key)
    except PinclusterError as e:
        raise HandshakeError(f"{where} sent an unreadable public key: {e}") from e
    if not pub.verify(msg.sig, _signed_data(role, noise.get_handshake_hash())):
        raise HandshakeError(f"{where} failed to prove its identity (bad signature over the handshake)")
    pid: PeerID = pub.peer_id()
    return pid


def _decode_hs(data: bytes, where: str) -> _HSMsg:
    try:
        return _hs_dec.decode(data)
    except msgspec.DecodeError as e:
        raise HandshakeError(f"{where} sent a malformed handshake message: {e}") from e


class Handshaker:
    """Holds what both handshake directions need: identity key, PSK, protocol and a Noise static key."""

    def __init__(self, key: PrivateKey, psk: bytes, protocol: str, psk_name: str) -> None:
        if len(psk) != 32:
            raise ValueError(f"{psk_name} must be 32 bytes, got {len(psk)}")
        parse_protocol(protocol)
        self.key = key
        self.psk = psk
        self.protocol = protocol
        self.psk_name = psk_name
        self.peer_id: PeerID = key.public_key().peer_id()
        # The Noise static key is per-process; the identity key signs the session, as in libp2p-noise.
        self._static = X25519PrivateKey.generate().private_bytes_raw()

    async def initiate(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        where: str,
        expected: PeerID | None,
        local_addrs: list[str],
    ) -> HandshakeResult:
        remote_proto = await _exchange_hello(reader, writer, self.protocol, where)
        prologue = b"pincluster-noise\n" + self.protocol.encode() + b"\n" + remote_proto.encode() + b"\n"
        noise = _make_noise(True, self._static, self.psk, prologue)
        _write_frame(writer, noise.write_message())
        await writer.drain()
        m2 = await _read_frame(reader)
        if m2 == REJECT_PSK:
            raise SecretMismatch(self.psk_name, where)
        try:
            noise.read_message(m2)
        except Exception as e:
            raise HandshakeError(f"{where} sent an invalid Noise handshake message: {e}") from e
        _write_frame(writer, noise.write_message())
        chan = SecureChannel(reader, writer, noise)
        chan.send(_identity_msg(self.key, noise, b"i", local_addrs))
        await chan.drain()
        try:
            frame = await _read_frame(reader)
        except ConnectionClosed:
            raise SecretMismatch(self.psk_name, where) from None
        if frame == REJECT_PSK:
            raise SecretMismatch(self.psk_name, where)
        try:
            plain = chan._dec.decrypt_with_ad(None, frame)
        except Exception as e:
            raise HandshakeError(f"{where}: the handshake reply failed authentication") from e
        msg = _decode_hs(plain, where)
        remote = _verify_identity(msg, noise, b"r", where)
        if expected is not None and remote != expected:
            chan.send(_hs_enc.encode(_HSMsg(t="reject", code="misdial", detail=f"{expected}")))
            await chan.drain()
            raise PeerIDMismatch(str(expected), str(remote), where)
        chan.send(_hs_enc.encode(_HSMsg(t="ok")))
        await chan.drain()
        return HandshakeResult(remote, msg.addrs, remote_proto, chan)

    async def respond(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, where: str, local_addrs: list[str]
    ) -> HandshakeResult:
        remote_proto = await _exchange_hello(reader, writer, self.protocol, where)
        prologue = b"pincluster-noise\n" + remote_proto.encode() + b"\n" + self.protocol.encode() + b"\n"
        noise = _make_noise(False, self._static, self.psk, prologue)
        try:
            noise.read_message(await _read_frame(reader))
            _write_frame(writer, noise.write_message())
            await writer.drain()
        except PinclusterError:
            raise
        except Exception as e:
            raise HandshakeError(f"{where} sent an invalid Noise handshake message: {e}") from e
        m3 = await _read_frame(reader)
        try:
            noise.read_message(m3)
        except Exception:
            # Only the PSK can make a well-formed message 3 fail: say so, in the clear, then hang up.
            _write_frame(writer, REJECT_PSK)
            try:
                await writer.drain()
            except ConnectionError:
                pass
            raise SecretMismatch(self.psk_name, where) from None
        chan = SecureChannel(reader, writer, noise)
        msg = _decode_hs(await chan.recv(), where)
        try:
            remote = _verify_identity(msg, noise, b"i", where)
        except HandshakeError as e:
            chan.send(_hs_enc.encode(_HSMsg(t="reject", code="identity", detail=str(e))))
            await chan.drain()
            raise
        chan.send(_identity_msg(self.key, noise, b"r", local_addrs))
        await chan.drain()
        confirm = _decode_hs(await chan.recv(), where)
        if confirm.t == "reject" and confirm.code == "misdial":
            raise PeerIDMismatch(confirm.detail, str(self.peer_id), f"{where} (peer {remote} dialled us)")
        if confirm.t != "ok":
            raise HandshakeError(f"{where} refused the connection: {confirm.detail or confirm.t}")
        return HandshakeResult(remote, msg.addrs, remote_proto, chan)
