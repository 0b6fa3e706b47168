"""The tracker skips the IPFS unpin of a pin allocated elsewhere that was never allocated here."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from tests.unit.test_pintracker_stateless import Env, settle

from pincluster.types.status import IPFSPinStatus, TrackerStatus


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    e = Env()
    await e.tracker.start()
    yield e
    await e.tracker.shutdown()


async def test_new_remote_pin_costs_no_ipfs_call(env: Env) -> None:
    p = env.pin(1, allocations=(env.other,))
    await env.tracker.track(p, maybe_here=False)
    await settle()
    assert env.ipfs.calls == [] and env.ipfs.started == []
    assert await env.status(1) is TrackerStatus.REMOTE
    assert len(env.tracker._ops) == 0


async def test_remote_pin_that_may_be_here_is_unpinned(env: Env) -> None:
    p = env.pin(2, allocations=(env.other,))
    env.ipfs.pins[p.cid.bytes] = IPFSPinStatus.RECURSIVE  # pinned here while it was allocated here
    await env.tracker.track(p)  # default: maybe here (Go's behaviour)
    await settle()
    assert ("unpin", p.cid) in env.ipfs.calls and p.cid.bytes not in env.ipfs.pins


async def test_pending_pin_is_cancelled_and_unpinned_even_when_never_allocated_here(env: Env) -> None:
    here = env.pin(3, allocations=(env.me,))
    env.ipfs.gates[here.cid.bytes] = asyncio.Event()  # the pin hangs in IPFS
    await env.tracker.track(here)
    await settle()
    assert await env.status(3) is TrackerStatus.PINNING
    # the same CID re-allocated elsewhere before it finished: an operation exists, so unpin anyway
    moved = env.pin(3, allocations=(env.other,))
    env.ipfs.gates[here.cid.bytes].set()
    await env.tracker.track(moved, maybe_here=False)
    await settle()
    assert ("unpin", here.cid) in env.ipfs.started
    assert await env.status(3) is TrackerStatus.REMOTE


async def test_committed_changes_in_stored_form(env: Env) -> None:
    """``track_stored`` (what the cluster's apply loop calls) decides from the stored fields alone when a pin
    needs nothing here, and otherwise does what ``track`` does."""
    from pincluster.types.codec import pin_to_state

    elsewhere = env.pin(4, allocations=(env.other,))
    await env.tracker.track_stored(elsewhere.cid.bytes, pin_to_state(elsewhere), None)  # a new pin elsewhere
    await settle()
    assert env.ipfs.calls == [] and len(env.tracker._ops) == 0
    assert await env.status(4) is TrackerStatus.REMOTE
    here = env.pin(5, allocations=(env.me,))
    await env.tracker.track_stored(here.cid.bytes, pin_to_state(here), None)
    await settle()
    assert await env.status(5) is TrackerStatus.PINNED
    moved = env.pin(5, allocations=(env.other,))  # was allocated here: unpinned
    await env.tracker.track_stored(moved.cid.bytes, pin_to_state(moved), pin_to_state(here))
    await settle()
    assert ("unpin", moved.cid) in env.ipfs.calls
    env.ipfs.pins[elsewhere.cid.bytes] = IPFSPinStatus.RECURSIVE
    # what the key held before is not known: unpin, as Go does
    await env.tracker.track_stored(elsewhere.cid.bytes, pin_to_state(elsewhere), None, before_known=False)
    await settle()
    assert ("unpin", elsewhere.cid) in env.ipfs.calls
    everywhere = env.pin(6)  # replication -1: every peer, allocated to none
    await env.tracker.track_stored(everywhere.cid.bytes, pin_to_state(everywhere), None)
    await settle()
    assert await env.status(6) is TrackerStatus.PINNED
