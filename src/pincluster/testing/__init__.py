"""Test kit shipped with pincluster: a fake clock (and, as components need them, in-memory fakes).

Like trio's test kit: time moves only when the test says so, so TTLs, alerts and retries are tested without
sleeping and without flakiness.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools


class FakeClock:
    """A clock that advances only through :meth:`advance`; sleepers wake in deadline order."""

    def __init__(self, start_ns: int = 1_700_000_000 * 10**9) -> None:
        self._now_ns = start_ns
        self._mono = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now_ns(self) -> int:
        return self._now_ns

    def monotonic(self) -> float:
        return self._mono

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._mono + seconds, next(self._seq), fut))
        await fut

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking every sleeper whose deadline passes, in order, letting each run."""
        target = self._mono + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, fut = heapq.heappop(self._sleepers)
            self._set(deadline)
            if not fut.done():
                fut.set_result(None)
            for _ in range(5):  # let woken tasks run until they block again
                await asyncio.sleep(0)
        self._set(target)
        for _ in range(5):
            await asyncio.sleep(0)

    def _set(self, mono: float) -> None:
        delta = mono - self._mono
        self._mono = mono
        self._now_ns += int(delta * 1e9)

    @property
    def sleepers(self) -> int:
        return sum(1 for _, _, f in self._sleepers if not f.done())
