"""The shared test vectors (``shared/vectors/kubo-cids.json``): files whose CIDs real kubo gave, and the
formula that makes their content. One copy for every test that checks CIDs against kubo's."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

#: ``shared/`` sits beside the project folder.
VECTORS_PATH = Path(__file__).resolve().parents[2] / "shared" / "vectors" / "kubo-cids.json"
VECTORS: dict[str, Any] = json.loads(VECTORS_PATH.read_text())


def gen(n: int) -> bytes:
    """The vectors' content formula: sha256 digests of ``b"ipfs-cid-vector:%d"``, cut to ``n`` bytes."""
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(b"ipfs-cid-vector:%d" % i).digest()
        i += 1
    return bytes(out[:n])


def content(spec: str) -> bytes:
    """A vector's content from its spec: ``gen(N)`` or ``literal b'…'``."""
    if spec.startswith("gen("):
        return gen(int(spec[4:-1]))
    assert spec.startswith("literal b'") and spec.endswith("'"), spec
    return spec[len("literal b'") : -1].encode().decode("unicode_escape").encode("latin-1")
