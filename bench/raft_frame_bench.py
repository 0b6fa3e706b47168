"""Micro-bench of one Raft message on the wire: seal + open, today's frames against PySyncObj's own.

PySyncObj's ``TcpConnection`` pickles with protocol 2, compresses with zlib level 3 and seals with Fernet;
``transport.SealedConnection`` pickles with protocol 5 and seals with AES-256-GCM (zlib only for large
messages). Prints µs per message and per entry for append-entries messages of 1, 10 and 100 entries of ~7
pin operations each (the shape seen under the ingest bench).

Usage: python bench/raft_frame_bench.py
"""

from __future__ import annotations

import base64
import os
import pickle
import time
import zlib
from typing import Any

import msgspec
from cryptography.fernet import Fernet

from pincluster.consensus import safe_pickle
from pincluster.consensus.transport import RaftAuthenticator, decode_message, encode_message


def entry(i: int) -> tuple[bytes, int, int]:
    ops = [(1, os.urandom(36), os.urandom(150)) for _ in range(7)]
    command: tuple[int, tuple[bytes], dict[str, Any]] = (0, (msgspec.msgpack.encode(ops),), {})
    return (b"\x00" + pickle.dumps(command, 5), i, 3)


def timed(fn: Any, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1e6


def main() -> None:
    safe_pickle.install()
    fernet = Fernet(base64.urlsafe_b64encode(os.urandom(32)))
    auth = RaftAuthenticator(os.urandom(32))
    for count in (1, 10, 100):
        msg = {"type": "append_entries", "term": 3, "commit_index": 1000, "entries": [entry(i) for i in range(count)],
               "prevLogIdx": 999, "prevLogTerm": 3}
        n = max(20, 2000 // count)

        def old_roundtrip(msg: dict[str, Any] = msg) -> None:
            token = fernet.encrypt_at_time(zlib.compress(pickle.dumps(msg, 2), 3), 5)
            fernet.extract_timestamp(token)
            safe_pickle.safe_loads(zlib.decompress(fernet.decrypt(token)))

        pair = (auth.sealer(), auth.opener())

        def new_roundtrip(msg: dict[str, Any] = msg, pair: tuple[Any, Any] = pair) -> None:
            sealer, opener = pair
            out = bytearray()
            sealer.seal_into(out, encode_message(msg))
            decode_message(opener.open(bytes(out[4:])))

        old = timed(old_roundtrip, n)
        new = timed(new_roundtrip, n)
        print(f"append_entries with {count:3d} entries: PySyncObj frame {old:8.1f} µs ({old / count:6.1f}/entry), "
              f"sealed frame {new:7.1f} µs ({new / count:5.1f}/entry): {old / new:4.1f}x")


if __name__ == "__main__":
    main()
