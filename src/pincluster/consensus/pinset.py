"""Typed view of the shared pinset over any byte-level ``Consensus``: pins in, pins out.

Consensus and the state store deal in ``(CID bytes, encoded Pin)``. This wrapper applies a codec, by default
``pincluster.types.codec.pin_to_state`` / ``pin_from_state`` once those exist. So the cluster works with
``Pin`` objects, and the encoding stays in one place.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Callable
from typing import Any, Generic, TypeVar

from pincluster.consensus.interface import Consensus
from pincluster.errors import Unavailable

P = TypeVar("P")


def _default(name: str) -> Callable[..., Any]:
    codec = importlib.import_module("pincluster.types.codec")
    fn = getattr(codec, name, None)
    if fn is None:
        raise Unavailable(f"pincluster.types.codec.{name} is not available; pass encode/decode explicitly")
    return fn  # type: ignore[no-any-return]


class TypedPinset(Generic[P]):
    """``log_pin(pin)``, ``log_unpin(cid)``, ``get(cid)``, ``list()`` over a byte-level ``Consensus``."""

    def __init__(
        self,
        consensus: Consensus,
        *,
        encode: Callable[[P], bytes] | None = None,
        decode: Callable[[bytes], P] | None = None,
        key: Callable[[P], bytes] | None = None,
    ) -> None:
        self.consensus = consensus
        self._encode: Callable[[P], bytes] = encode or _default("pin_to_state")
        self._decode: Callable[[bytes], P] = decode or _default("pin_from_state")
        self._key: Callable[[P], bytes] = key or (lambda pin: bytes(pin.cid.bytes))  # type: ignore[attr-defined]

    async def log_pin(self, pin: P) -> None:
        await self.consensus.log_pin(self._key(pin), self._encode(pin))

    async def log_unpin(self, cid_bytes: bytes) -> None:
        await self.consensus.log_unpin(cid_bytes)

    async def get(self, cid_bytes: bytes) -> P | None:
        raw = await self.consensus.state.get(cid_bytes)
        return None if raw is None else self._decode(raw)

    async def list(self) -> AsyncIterator[P]:
        async for _key, raw in self.consensus.state.list():
            yield self._decode(raw)
