"""``pincluster.aio`` helpers."""

from __future__ import annotations

import asyncio

import pytest

from pincluster.aio import bounded_as_completed


async def test_bounded_as_completed_runs_at_most_limit_and_yields_in_completion_order() -> None:
    running = peak = 0

    async def work(n: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01 * (5 - n))
        running -= 1
        return n

    out = [r async for r in bounded_as_completed(work, range(5), 5)]
    assert out == [4, 3, 2, 1, 0] and peak == 5
    peak = 0
    assert sorted([r async for r in bounded_as_completed(work, range(5), 2)]) == [0, 1, 2, 3, 4]
    assert peak == 2


async def test_bounded_as_completed_cancels_what_is_left_when_the_consumer_stops() -> None:
    cancelled: list[int] = []

    async def work(n: int) -> int:
        try:
            await asyncio.sleep(0 if n == 0 else 10)
        except asyncio.CancelledError:
            cancelled.append(n)
            raise
        return n

    gen = bounded_as_completed(work, range(4), 4)
    assert await anext(gen) == 0
    await gen.aclose()
    assert sorted(cancelled) == [1, 2, 3]


async def test_bounded_as_completed_passes_a_failure_on_and_cancels_the_rest() -> None:
    async def work(n: int) -> int:
        if n == 1:
            raise ValueError("boom")
        await asyncio.sleep(10)
        return n

    with pytest.raises(ValueError, match="boom"):
        async for _ in bounded_as_completed(work, range(3), 3):
            pass
