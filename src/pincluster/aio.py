"""Small asyncio helpers shared by the components."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

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
