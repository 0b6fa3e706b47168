"""Errors of the peer layer.

Each refusal has its own class so callers (and tests) can tell a wrong secret from a misdial or a version
mismatch without parsing messages; the messages still say what to do, because operators read them in logs.
"""

from __future__ import annotations

from pincluster.errors import InvalidInput, PeerError, Unavailable


class SecretMismatch(PeerError):
    """The Noise handshake failed on the pre-shared key: the peers hold different secrets."""

    def __init__(self, psk_name: str, remote: str) -> None:
        self.psk_name = psk_name
        self.remote = remote
        super().__init__(
            f"secure channel with {remote} refused: the peers do not share the same {psk_name}; "
            f"copy the same {psk_name} to every peer"
        )


class VersionMismatch(PeerError):
    """The two ends speak incompatible protocols (other family or other major version)."""

    def __init__(self, local: str, remote: str, where: str) -> None:
        self.local = local
        self.remote = remote
        super().__init__(
            f"incompatible protocol with {where}: local peer speaks {local}, remote peer speaks {remote}; "
            "run the same major version on every peer"
        )


class PeerIDMismatch(PeerError):
    """The dialled address named one peer ID but another peer answered (a misdial)."""

    def __init__(self, expected: str, actual: str, addr: str) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"peer ID mismatch dialling {addr}: expected {expected} but the remote peer is {actual}; "
            "fix the multiaddr's /p2p/ part"
        )


class HandshakeError(PeerError):
    """The remote broke the handshake protocol (garbage, bad signature, early close)."""


class ConnectFailed(Unavailable):
    """A TCP connection could not be opened (refused, unreachable, timed out)."""


class ConnectionClosed(Unavailable):
    """The connection to the remote peer went away; in-flight streams fail with this."""


class StreamReset(Unavailable):
    """The stream was aborted by either side before a clean end."""


class MessageTooLarge(InvalidInput):
    """A message exceeds ``max_message_size``; the stream is reset, the connection stays usable."""

    def __init__(self, size: int, limit: int, direction: str) -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            f"{direction} message of {size} bytes exceeds the limit of {limit} bytes; "
            "send it in smaller messages (stream it) or raise max_message_size on both peers"
        )


class NoHandler(PeerError):
    """The remote has no handler for the requested stream name."""
