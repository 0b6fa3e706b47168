"""The fake clock wakes sleepers in deadline order and only when advanced."""

from __future__ import annotations

import asyncio

from pincluster.clock import SYSTEM_CLOCK
from pincluster.testing import FakeClock


async def test_fake_clock_orders_wakeups() -> None:
    clock = FakeClock()
    woke: list[str] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(name)

    start_ns = clock.now_ns()
    tasks = [asyncio.create_task(sleeper("b", 2)), asyncio.create_task(sleeper("a", 1))]
    await asyncio.sleep(0)
    assert clock.sleepers == 2
    await clock.advance(0.5)
    assert woke == []
    await clock.advance(1)
    assert woke == ["a"]
    await clock.advance(1)
    assert woke == ["a", "b"]
    assert clock.now_ns() - start_ns == 2_500_000_000
    await asyncio.gather(*tasks)


async def test_system_clock_moves() -> None:
    before = SYSTEM_CLOCK.monotonic()
    await SYSTEM_CLOCK.sleep(0.01)
    assert SYSTEM_CLOCK.monotonic() > before
