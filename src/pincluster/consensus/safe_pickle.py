"""An allow-list unpickler for PySyncObj, which pickles every message, journal entry and metadata file.

PySyncObj calls ``pickle.loads`` on whatever arrives on its TCP port. Encryption keyed from the cluster secret
keeps strangers out, but anyone holding the secret could still make every peer run code. ``install()``
replaces PySyncObj's ``loads``/``load`` with an unpickler whose ``find_class`` only knows the few globals that
PySyncObj's own messages need:

- ``_codecs.encode`` (protocol 2 pickles ``bytes`` as ``_codecs.encode(text, "latin1")``), wrapped so that only
  the latin-1 codec can be used, and ``bytes`` (``b""`` is pickled as ``bytes()``), wrapped to take no argument;
- ``builtins.set`` / ``builtins.frozenset``;
- the node classes (``pysyncobj.node.Node`` / ``TCPNode`` and our ``PeerNode``) carried by membership changes.

Everything else (``os.system``, ``builtins.eval``, ``subprocess.Popen`` …) raises ``UnpicklingError`` before
anything runs. Our own log entries carry only bytes and ints, so the list stays this short.

``install()`` also makes PySyncObj pickle with protocol 5 instead of 2: protocol 2 writes every ``bytes`` as
latin-1 text rebuilt through ``_codecs.encode`` (a Python call per object when unpickling), which made each
replicated command cost ~17 µs to pickle and unpickle instead of ~4. Older protocol-2 journals still load.
"""

from __future__ import annotations

import codecs
import importlib
import io
import logging
import pickle
import threading
from typing import IO, Any

log = logging.getLogger("pincluster.raft")

_LATIN1 = frozenset({"latin1", "latin-1", "iso-8859-1", "iso8859-1", "l1"})

_ALLOWED: frozenset[tuple[str, str]] = frozenset(
    {
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("__builtin__", "set"),
        ("__builtin__", "frozenset"),
        ("pysyncobj.node", "Node"),
        ("pysyncobj.node", "TCPNode"),
        ("pincluster.consensus.transport", "PeerNode"),
    }
)

_lock = threading.Lock()
_installed = False
_refused = 0


class RefusedPickle(pickle.UnpicklingError):
    """A pickle asked for a global outside the allow-list."""


def _latin1_encode(obj: object, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """The only form of ``_codecs.encode`` that protocol-2 ``bytes`` need."""
    if not isinstance(obj, str) or encoding.lower() not in _LATIN1 or errors != "strict":
        raise RefusedPickle(f"refused _codecs.encode with encoding {encoding!r}: only latin-1 text is allowed")
    return codecs.encode(obj, "latin1")


def _empty_bytes(*args: object) -> bytes:
    """Protocol 2 pickles ``b""`` as ``bytes()``; any other use of ``bytes`` (e.g. ``bytes(10**12)``) is refused."""
    if args:
        raise RefusedPickle("refused bytes(...) with arguments: only bytes() is allowed")
    return b""


class SafeUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` is an allow-list."""

    def find_class(self, module: str, name: str) -> Any:
        global _refused
        if module == "_codecs" and name == "encode":
            return _latin1_encode
        if module in ("builtins", "__builtin__") and name == "bytes":
            return _empty_bytes
        if (module, name) in _ALLOWED:
            return getattr(importlib.import_module("builtins" if module == "__builtin__" else module), name)
        _refused += 1
        log.warning("refused to unpickle the global %s.%s in a Raft message or file (possible attack)", module, name)
        raise RefusedPickle(f"global {module}.{name} is not allowed in Raft data")


def safe_loads(data: bytes | bytearray | memoryview | str) -> Any:
    """Drop-in for ``pysyncobj.pickle.loads`` that refuses everything outside the allow-list."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return SafeUnpickler(io.BytesIO(raw), encoding="latin1").load()


def safe_load(file: IO[bytes]) -> Any:
    """Drop-in for ``pysyncobj.pickle.load``."""
    return SafeUnpickler(file, encoding="latin1").load()


_PROTOCOL = 5


def fast_dumps(obj: object, protocol: int | None = None) -> bytes:
    """Drop-in for ``pysyncobj.pickle.dumps`` (which always uses protocol 2)."""
    return pickle.dumps(obj, _PROTOCOL)


def fast_dump(obj: object, file: IO[bytes], protocol: int | None = None) -> None:
    """Drop-in for ``pysyncobj.pickle.dump``."""
    pickle.dump(obj, file, _PROTOCOL)


def refused_count() -> int:
    """How many pickles were refused in this process (for tests and metrics)."""
    return _refused


def install() -> None:
    """Patch PySyncObj (idempotent) so that every unpickling it does goes through ``SafeUnpickler``.

    ``pysyncobj.pickle.loads``/``load`` are looked up at call time by the connection, serializer and SyncObj
    code; ``pysyncobj.journal`` imported ``loads`` by name, so it is patched too.
    """
    global _installed
    with _lock:
        if _installed:
            return
        import pysyncobj.journal as pjournal
        import pysyncobj.pickle as ppickle

        ppickle.loads = safe_loads
        ppickle.load = safe_load
        pjournal.loads = safe_loads
        ppickle.dumps = fast_dumps
        ppickle.dump = fast_dump
        pjournal.dumps = fast_dumps
        _installed = True


def is_installed() -> bool:
    return _installed

