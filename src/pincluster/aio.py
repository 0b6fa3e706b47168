"""Small asyncio helpers shared by the components."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger("pincluster.cluster")


async def cancel_and_wait(tasks: Iterable[asyncio.Future[Any] | None]) -> None:
    """Cancel background tasks and wait until each has finished, so that shutdown leaves nothing running.

    A task that had already failed is logged, not raised: shutting down must not stop half-way.
    """
    pending = [t for t in tasks if t is not None]
    for t in pending:
        t.cancel()
    for t in pending:
        try:
            await t
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("a background task had failed before shutdown")


async def bounded_as_completed(fn: Callable[[T], Awaitable[R]], items: Iterable[T], limit: int) -> AsyncIterator[R]:
    """``fn(item)`` for every item, at most ``limit`` at once, yielded in completion order. When the consumer
    stops early or ``fn`` raises, the calls still running are cancelled and awaited: nothing is left behind."""
    sem = asyncio.Semaphore(limit)

    async def one(item: T) -> R:
        async with sem:
            return await fn(item)

    tasks = [asyncio.ensure_future(one(i)) for i in items]
    try:
        for fut in asyncio.as_completed(tasks):
            yield await fut
    finally:
        for t in tasks:
            t.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*tasks, return_exceptions=True)
