"""Injected time.

Monitors, metric TTLs, retries and timeouts take a ``Clock`` so that tests drive time by hand instead of
sleeping (``pincluster.testing.FakeClock``). Production code uses ``SYSTEM_CLOCK``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """Wall time for timestamps, monotonic time for intervals, and an awaitable sleep."""

    def now_ns(self) -> int:
        """Unix time in nanoseconds (metric ``expire``/``received_at`` are in these units)."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin; never goes backwards."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock."""

    def now_ns(self) -> int:
        return time.time_ns()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


SYSTEM_CLOCK: Clock = SystemClock()
