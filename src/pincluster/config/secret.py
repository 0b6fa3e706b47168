"""The cluster secret: 32 bytes shared by every peer, written as 64 hex characters.

Peers talk only to peers holding the same secret (it keys the secure channel). Go pads or hashes shorter
secrets; pincluster refuses anything that is not exactly 32 bytes of hex, so a typo cannot silently create a
second, incompatible cluster.
"""

from __future__ import annotations

import secrets as _secrets
import string

from pincluster.errors import ConfigError

SECRET_BYTES = 32
_HEX = frozenset(string.hexdigits)


def generate_secret() -> bytes:
    """A new random secret (what ``init`` writes)."""
    return _secrets.token_bytes(SECRET_BYTES)


def decode_secret(text: str, key: str = "cluster.secret") -> bytes:
    """Parse a hex secret; ``""`` means "no private network" and gives ``b""``.

    Raises ``ConfigError`` naming ``key`` and saying whether the text is not hex or of the wrong length.
    """
    if not isinstance(text, str):
        raise ConfigError(key, f"must be a string of {2 * SECRET_BYTES} hex characters, got {text!r}")
    text = text.strip()
    if not text:
        return b""
    bad = sorted({c for c in text if c not in _HEX})
    if bad:
        raise ConfigError(
            key,
            f"is not hexadecimal (invalid characters {''.join(bad)!r}); "
            f"use {2 * SECRET_BYTES} hex characters, e.g. from `od -vN 32 -An -tx1 /dev/urandom | tr -d ' \\n'`",
        )
    if len(text) != 2 * SECRET_BYTES:
        size = f"{len(text) // 2} bytes" if len(text) % 2 == 0 else f"{len(text)} hex characters (odd)"
        which = "too short" if len(text) < 2 * SECRET_BYTES else "too long"
        raise ConfigError(
            key,
            f"is {which}: input secret is {size}, cluster secret must be {SECRET_BYTES} bytes "
            f"({2 * SECRET_BYTES} hex characters)",
        )
    return bytes.fromhex(text)


def encode_secret(secret: bytes) -> str:
    """Lower-case hex, as Go writes it (``""`` for no secret)."""
    return secret.hex()
