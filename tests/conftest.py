"""Parallel test workers (pytest-xdist, ``scripts/test`` runs two): each worker's peers take their
``init --randomports`` ports from a range of their own, so that two workers setting up clusters at the same time
cannot be handed the same port (each only checks that a port is free *now*)."""

from __future__ import annotations

import os

from pincluster.cli.service import RANDOMPORTS_RANGE_ENV

#: The span the workers share, below the usual ephemeral range (32768 up), where ``bind(0)`` ports come from.
_LOW, _HIGH = 10000, 32767


def pytest_configure() -> None:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", … in a worker, unset otherwise
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker.startswith("gw") or count < 2 or RANDOMPORTS_RANGE_ENV in os.environ:
        return
    index = int(worker[2:])
    size = (_HIGH - _LOW + 1) // count
    low = _LOW + index * size
    os.environ[RANDOMPORTS_RANGE_ENV] = f"{low}-{low + size - 1}"
