"""RPC errors, and how errors travel between peers.

A remote failure is re-raised on the caller as the same branch of the pincluster tree (NotFound stays
NotFound), so callers handle local and remote calls alike; the message is prefixed with the peer.
"""

from __future__ import annotations

from pincluster.errors import (
    InvalidInput,
    LockError,
    NotFound,
    PeerError,
    PinclusterError,
    StateError,
    Timeout,
    Unavailable,
)


class RPCUnauthorized(PeerError):
    """The method's policy does not let this peer call it (broadcasts skip these)."""


class UnknownMethod(NotFound):
    """The remote has no such RPC method (other version, or the component is not running)."""


class MissingPolicy(PinclusterError):
    """A method was registered without an open/trusted/closed policy: a programming error."""


class RemoteError(PinclusterError):
    """The remote handler failed with an error that is not part of the pincluster tree."""


# Order matters: the most specific class first.
_CODES: list[tuple[str, type[PinclusterError]]] = [
    ("unauthorized", RPCUnauthorized),
    ("unknown_method", UnknownMethod),
    ("timeout", Timeout),
    ("unavailable", Unavailable),
    ("invalid_input", InvalidInput),
    ("not_found", NotFound),
    ("peer", PeerError),
    ("state", StateError),
    ("lock", LockError),
    ("internal", RemoteError),
]
_BY_CODE = dict(_CODES)


def error_code(exc: BaseException) -> str:
    """The wire code for ``exc``; anything outside the tree is ``internal``."""
    for code, cls in _CODES:
        if isinstance(exc, cls):
            return code
    if isinstance(exc, TimeoutError):
        return "timeout"
    return "internal"


def error_from_code(code: str, message: str) -> PinclusterError:
    """Rebuild a typed error from the wire; unknown codes become RemoteError."""
    cls = _BY_CODE.get(code, RemoteError)
    return cls(message)
