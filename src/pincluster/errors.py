"""The exception tree of pincluster.

One small hierarchy, so callers catch by meaning (``InvalidInput`` → HTTP 400, ``NotFound`` → 404)
instead of by module. Every message names what was wrong and, where it helps, what to do.

    PinclusterError
    ├── InvalidInput          bad user/peer input: CIDs, multiaddrs, durations, filters (HTTP 400)
    │   └── ConfigError       a bad key in service.json / identity.json / the secret
    ├── NotFound              a pin, peer or block that does not exist (HTTP 404)
    ├── Unavailable           a component or remote peer cannot be reached right now
    │   └── Timeout           a deadline passed
    ├── PeerError             the peer layer refused a connection (secret, version, identity)
    ├── StateError            the shared state cannot be read or is of another format version
    └── LockError             another process holds the config folder's lock
"""

from __future__ import annotations


class PinclusterError(Exception):
    """Base of every error pincluster raises on purpose."""


class InvalidInput(PinclusterError, ValueError):
    """Input that cannot be parsed or is out of range; the message names the input and why."""


class ConfigError(InvalidInput):
    """A configuration value is wrong. ``key`` is the dotted key, e.g. ``cluster.secret``."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"{key}: {reason}")


class NotFound(PinclusterError, LookupError):
    """The thing asked for does not exist."""


#: Go's error text for a CID that is not in the pinset (which its REST API turns into a 404 by the text alone).
NOT_IN_PINSET = "pin is not part of the pinset"


class Unavailable(PinclusterError):
    """A component or a remote peer cannot be reached right now; retrying may help."""


class Timeout(Unavailable, TimeoutError):
    """A deadline passed before the operation finished."""


class PeerError(PinclusterError):
    """A peer connection was refused: wrong secret, wrong identity, incompatible version."""


class StateError(PinclusterError):
    """The shared state cannot be used as it is (unknown format version, corruption)."""


class LockError(PinclusterError):
    """Another process holds the config folder's execution lock."""
