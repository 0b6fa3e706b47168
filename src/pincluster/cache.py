"""The bounded memo the hot paths share (JSON pieces, parsed IDs, allocation answers, listing entries)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


def cached(cache: dict[K, V], key: K, make: Callable[[K], V], limit: int = 4096) -> V:
    """``cache[key]``, made by ``make`` on a miss; the cache is emptied when full, so it stays bounded.

    Emptying beats an LRU here: the callers' keys repeat in bursts (one listing, one metrics snapshot), and a
    plain dict lookup is the whole cost of a hit."""
    value = cache.get(key)
    if value is None:
        value = make(key)
        if len(cache) >= limit:
            cache.clear()
        cache[key] = value
    return value
