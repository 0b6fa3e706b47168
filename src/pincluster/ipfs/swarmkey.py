"""The private-network key (``swarm.key``) in go-libp2p's standard format.

A swarm key is 32 random bytes shared by every node of one private network. The file format is the one
go-libp2p-pnet reads, so a key made by ``ipfs-swarm-key-gen`` works here and back::

    /key/swarm/psk/1.0.0/
    /base16/
    <64 hex digits>

``/base64/`` and ``/bin/`` encodings are accepted on read as go-libp2p does; we always write ``/base16/``.
The 32 bytes are used as the pre-shared key of the peer layer's Noise handshake, so a node without the same
key cannot finish a connection.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from pathlib import Path

from pincluster.errors import ConfigError

HEADER = "/key/swarm/psk/1.0.0/"
KEY_LEN = 32
FORCE_PNET_ENV = "LIBP2P_FORCE_PNET"


class SwarmKeyError(ConfigError):
    """The swarm key file is missing where required, or malformed."""

    def __init__(self, reason: str) -> None:
        super().__init__("swarm.key", reason)


def parse_swarm_key(data: bytes | str) -> bytes:
    """Decode a swarm key file; return its 32 key bytes or raise SwarmKeyError saying what is wrong."""
    raw = data.encode() if isinstance(data, str) else bytes(data)
    # go-libp2p reads the first two lines as text; the rest is the encoded key (binary for /bin/).
    parts = raw.split(b"\n", 2)
    if len(parts) < 3:
        raise SwarmKeyError(
            f"expected 3 lines ({HEADER!r}, an encoding such as '/base16/', and the key); "
            "generate one with `pincluster-ipfs init --swarm-key-gen`"
        )
    header = parts[0].strip().decode("utf-8", "replace")
    if header != HEADER:
        raise SwarmKeyError(f"first line is {header!r}, expected {HEADER!r}")
    encoding = parts[1].strip().decode("utf-8", "replace")
    body = parts[2]
    try:
        if encoding == "/base16/":
            key = binascii.unhexlify(body.strip())
        elif encoding == "/base64/":
            key = base64.b64decode(body.strip(), validate=True)
        elif encoding == "/bin/":
            key = body
        else:
            raise SwarmKeyError(f"unknown encoding {encoding!r}: use /base16/, /base64/ or /bin/")
    except (binascii.Error, ValueError) as exc:
        raise SwarmKeyError(f"the key is not valid {encoding.strip('/')}: {exc}") from None
    if len(key) != KEY_LEN:
        raise SwarmKeyError(f"the key is {len(key)} bytes long, expected {KEY_LEN} (64 hex digits)")
    return key


def format_swarm_key(key: bytes) -> str:
    """The standard text form of a key (base16), as ``ipfs-swarm-key-gen`` writes it."""
    if len(key) != KEY_LEN:
        raise SwarmKeyError(f"the key is {len(key)} bytes long, expected {KEY_LEN}")
    return f"{HEADER}\n/base16/\n{key.hex()}\n"


def generate_swarm_key() -> bytes:
    """32 fresh random bytes from the OS's CSPRNG."""
    return secrets.token_bytes(KEY_LEN)


def derive_swarm_key(cluster_secret: bytes) -> bytes:
    """A swarm key derived from the cluster secret (HKDF-SHA256), so that the embedded nodes of one cluster
    form one private network with nothing more to copy around; a different secret gives an unrelated key, and
    the key does not reveal the secret."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"pincluster swarm.key v1").derive(
        cluster_secret
    )


def fingerprint(key: bytes) -> str:
    """A short, non-secret tag of a key for logs and errors (a hash prefix, never the key)."""
    return hashlib.sha256(b"pincluster-swarm-key-fingerprint" + key).hexdigest()[:12]


def load_swarm_key(path: Path) -> bytes | None:
    """Read a swarm key file; None when it does not exist (a public network)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SwarmKeyError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return parse_swarm_key(data)
    except SwarmKeyError as exc:
        raise SwarmKeyError(f"{path}: {exc.reason}") from None


def write_swarm_key(path: Path, key: bytes) -> None:
    """Write a key file readable only by its owner (it is a shared secret)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(format_swarm_key(key))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def force_pnet() -> bool:
    """Whether ``LIBP2P_FORCE_PNET`` asks to refuse running without a private-network key (go-libp2p rule)."""
    return os.environ.get(FORCE_PNET_ENV, "").strip() in ("1", "true", "True", "TRUE")


def require_key_if_forced(key: bytes | None, path: Path) -> None:
    """Raise when the environment forces a private network and no key was found."""
    if key is None and force_pnet():
        raise SwarmKeyError(
            f"{FORCE_PNET_ENV}=1 is set but there is no swarm key at {path}: refusing to start on a public "
            "network. Copy the network's swarm.key there, or unset LIBP2P_FORCE_PNET."
        )
