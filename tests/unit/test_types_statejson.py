"""Listing lines written straight from the state bytes must equal ``to_json`` of the decoded objects.

``state_pin_json`` (``GET /allocations``) against ``to_json(pin_from_state(raw))``; ``global_head_json`` plus
the status-entry pieces against ``to_json`` of the GlobalPinInfo that ``from_pin_infos`` builds. The pins come
from the generators of test_types_fastjson (escapes, metadata, user allocations, expiry, rf -1, every type).
"""

from __future__ import annotations

import random
from datetime import UTC

import pytest
from test_types_fastjson import _ADDRS, _NAMES, _PEERS, _RSA_PEER, _pin, _time

from pincluster.errors import InvalidInput, StateError
from pincluster.types.cid import CID, sha256_multihash
from pincluster.types.codec import (
    blank_head_json,
    cid_multihash,
    cid_text,
    decode_state,
    decode_status_fields,
    global_head_json,
    pin_from_state,
    pin_to_state,
    state_pin_json,
    state_pin_lines,
    status_entry_prefix,
    status_entry_rest,
    to_json,
)
from pincluster.types.gotime import ZERO_TIME, format_time, from_unix_nano
from pincluster.types.models import GlobalPinInfo, PinInfo
from pincluster.types.status import TrackerStatus


def _stored(rnd: random.Random) -> bytes:
    pin = _pin(rnd)
    if rnd.random() < 0.3:  # the common short form: nothing after the allocations
        pin = pin.replace(name="", metadata=None, expire_at=ZERO_TIME, reference=None, pin_update=None,
                          origins=(), shard_size=0)
    if pin.timestamp.year != 1 and rnd.random() < 0.5:
        pin = pin.replace(timestamp=pin.timestamp.astimezone(UTC))
    return pin_to_state(pin)


def test_state_pin_json_matches_to_json() -> None:
    rnd = random.Random(11)
    raws = [_stored(rnd) for _ in range(3000)]
    for raw in raws:
        assert state_pin_json(raw).encode() == to_json(pin_from_state(raw)), pin_from_state(raw)
    assert state_pin_lines(raws[:50]) == b"".join(to_json(pin_from_state(r)) + b"\n" for r in raws[:50])
    assert state_pin_lines([]) == b""


def test_cid_helpers() -> None:
    rnd = random.Random(3)
    for _ in range(200):
        cid = CID(pin_from_state(_stored(rnd)).cid.bytes)
        assert cid_text(cid.bytes) == str(cid)
        assert cid_multihash(cid.bytes) == cid.multihash
    big_codec = CID.v1(0x300001, sha256_multihash(b"x"))
    assert cid_multihash(big_codec.bytes) == big_codec.multihash
    assert cid_text(big_codec.bytes) == str(big_codec)


def test_corrupt_state_is_refused() -> None:
    raw = _stored(random.Random(1))
    with pytest.raises(InvalidInput):
        decode_state(b"\xc1garbage")
    with pytest.raises(StateError):
        decode_state(raw[:1] + b"\x02" + raw[2:])  # format 2: a newer release's state
    with pytest.raises(InvalidInput):
        state_pin_json(b"\x94\x01\xc4\x03abc\x02\xff")  # a CID that is not one


def test_status_fields_are_those_of_the_full_decode() -> None:
    """A peer answering a merged listing decodes only the leading fields; they must be the full decode's,
    for every shape of stored pin (short form included), and the same errors must stop it."""
    rnd = random.Random(5)
    for _ in range(2000):
        raw = _stored(rnd)
        full, part = decode_state(raw), decode_status_fields(raw)
        for name in ("cid", "type", "max_depth", "rf_min", "rf_max", "allocations"):
            assert getattr(part, name) == getattr(full, name), name
    raw = _stored(random.Random(1))
    with pytest.raises(InvalidInput):
        decode_status_fields(b"\xc1garbage")
    with pytest.raises(StateError):
        decode_status_fields(raw[:1] + b"\x02" + raw[2:])


def _entry(info: PinInfo) -> str:
    return status_entry_prefix(info.peer, info.peername, info.ipfs_peer_id, info.ipfs_peer_addresses) + \
        status_entry_rest(info.status, format_time(info.timestamp), info.error, info.attempt_count,
                          info.priority_pin)


def test_merged_line_from_pieces_matches_to_json() -> None:
    """A merged status line assembled from pieces: the pin's head (or the blank head) and one entry per
    peer in peer-ID order, exactly as ``to_json(GlobalPinInfo.from_pin_infos(...))``."""
    rnd = random.Random(5)
    for _ in range(1500):
        raw = _stored(rnd)
        pin = pin_from_state(raw)
        peers = rnd.sample([*_PEERS, _RSA_PEER], rnd.randint(1, 5))
        infos = []
        for p in peers:
            status = rnd.choice([TrackerStatus.PINNED, TrackerStatus.REMOTE, TrackerStatus.PIN_ERROR,
                                 TrackerStatus.UNEXPECTEDLY_UNPINNED, TrackerStatus.PINNING])
            ts = rnd.choice([from_unix_nano(1_700_000_000_123_456_789), _time(rnd).astimezone(UTC)])
            infos.append(PinInfo(
                cid=pin.cid, name=pin.name, peer=p, allocations=pin.allocations, origins=pin.origins,
                created=pin.timestamp, metadata=pin.metadata, peername=rnd.choice(_NAMES),
                ipfs_peer_id=rnd.choice([None, p]), ipfs_peer_addresses=tuple(rnd.sample(_ADDRS, rnd.randint(0, 2))),
                status=status, timestamp=ts, error=rnd.choice(["", "boom <&>"]),
                attempt_count=rnd.choice([0, 3]), priority_pin=rnd.random() < 0.3,
            ))
        entries = ",".join(_entry(i) for i in sorted(infos, key=lambda i: str(i.peer)))
        line = global_head_json(decode_state(raw)) + entries + "}}"
        assert line.encode() == to_json(GlobalPinInfo.from_pin_infos(infos))
        blank = PinInfo(cid=pin.cid, peer=peers[0], status=TrackerStatus.UNPINNING, timestamp=infos[0].timestamp)
        assert (blank_head_json(pin.cid.bytes) + _entry(blank) + "}}").encode() == to_json(blank.to_global())
